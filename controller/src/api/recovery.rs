//! The `Recovery` service: `Backup` streams a backup file (see
//! `crate::recovery`). A follower passes the call to the leader, which reads
//! after a read barrier, so a backup holds everything committed when it began.

use std::pin::Pin;

use berth_pki::Security;
use berth_proto::v1::recovery_client::RecoveryClient;
use berth_proto::v1::recovery_server::Recovery;
use berth_proto::v1::{BackupChunk, BackupRequest};
use futures_util::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

use crate::keyring::Keyring;
use crate::raft::RaftHandle;
use crate::raft::transport::peer_channel;
use crate::recovery::{backup, format};

/// Size of the pieces a backup file is streamed in.
const CHUNK_BYTES: usize = 1024 * 1024;

pub struct RecoveryApi {
    raft: RaftHandle,
    security: Security,
    /// Its file goes into the backup as it is on disk.
    keys: Keyring,
}

impl RecoveryApi {
    pub fn new(raft: RaftHandle, security: Security, keys: Keyring) -> Self {
        RecoveryApi {
            raft,
            security,
            keys,
        }
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<BackupChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Recovery for RecoveryApi {
    type BackupStream = ChunkStream;

    async fn backup(
        &self,
        request: Request<BackupRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let status = self.raft.status().get();
        if !status.is_leader() {
            let leader = status
                .leader_address()
                .ok_or_else(|| Status::unavailable("no leader right now; retry"))?
                .to_string();
            let channel = peer_channel(&leader, &self.security)
                .map_err(|e| Status::internal(format!("bad leader address {leader}: {e}")))?;
            let stream = RecoveryClient::new(channel)
                .max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES)
                .backup(request.into_inner())
                .await?
                .into_inner();
            return Ok(Response::new(Box::pin(stream)));
        }
        self.raft.read_barrier().await.map_err(Status::from)?;
        let taken = backup::take(self.raft.state(), &self.keys)
            .map_err(|e| Status::internal(format!("cannot take a backup: {e}")))?;
        let bytes = format::encode(&taken);
        let summary = backup::summary(&taken, bytes.len());
        let mut chunks: Vec<BackupChunk> = bytes
            .chunks(CHUNK_BYTES)
            .map(|data| BackupChunk {
                data: data.to_vec(),
                summary: None,
            })
            .collect();
        if let Some(first) = chunks.first_mut() {
            first.summary = Some(summary);
        }
        let stream = futures_util::stream::iter(chunks).map(Ok);
        Ok(Response::new(Box::pin(stream)))
    }
}
