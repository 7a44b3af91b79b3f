//! The `ClusterSettingsService` (`berth cluster update`, `cluster inspect`):
//! the cluster-wide settings record of `crate::cluster_settings`.

use berth_proto::store::Expect;
use berth_proto::store::object::Kind;
use berth_proto::v1::cluster_settings_service_server::ClusterSettingsService;
use berth_proto::v1::{ClusterSettings, GetClusterSettingsRequest, UpdateClusterSettingsRequest};
use tonic::{Request, Response, Status};

use crate::cluster_settings::{read, updated};
use crate::raft::RaftHandle;
use crate::store::commit::commit_one;
use crate::store::{CommitError, Refusal, put_kind};

/// Someone else wrote the record between our read and our write (or created
/// it first): read again.
fn raced(e: &CommitError) -> bool {
    e.is_conflict()
        || matches!(
            e,
            CommitError::Refused {
                refusal: Refusal::Exists,
                ..
            }
        )
}

/// Read-modify-write attempts before a busy record is reported.
const ATTEMPTS: usize = 5;

pub struct ClusterSettingsApi {
    raft: RaftHandle,
}

impl ClusterSettingsApi {
    pub fn new(raft: RaftHandle) -> ClusterSettingsApi {
        ClusterSettingsApi { raft }
    }
}

#[tonic::async_trait]
impl ClusterSettingsService for ClusterSettingsApi {
    async fn get_cluster_settings(
        &self,
        _: Request<GetClusterSettingsRequest>,
    ) -> Result<Response<ClusterSettings>, Status> {
        Ok(Response::new(read(self.raft.state())?))
    }

    async fn update_cluster_settings(
        &self,
        request: Request<UpdateClusterSettingsRequest>,
    ) -> Result<Response<ClusterSettings>, Status> {
        let update = request.into_inner();
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let current = read(self.raft.state())?;
            let (expect, version) = match current.version {
                0 => (Expect::Absent, 0),
                v => (Expect::Version, v),
            };
            let next = updated(current, &update, crate::clock::now_ms());
            match commit_one(
                &self.raft,
                put_kind(Kind::ClusterSettings(next), expect, version),
            )
            .await
            {
                Ok(written) => match written.kind {
                    Some(Kind::ClusterSettings(s)) => return Ok(Response::new(s)),
                    _ => return Err(Status::internal("the store returned no cluster settings")),
                },
                Err(e) if raced(&e) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last
            .map(Status::from)
            .unwrap_or_else(|| Status::aborted("the cluster settings kept changing; try again")))
    }
}
