//! The `RaftPeer` gRPC service: incoming raft streams and snapshots, and joins.

use berth_pki::Security;
use berth_proto::store::MemberChange;
use berth_proto::v1::raft_peer_server::RaftPeer;
use berth_proto::v1::{JoinRequest, JoinResponse, RaftAck, RaftEnvelope, SnapshotChunk};
use protobuf::Message as _;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use super::handle::RaftHandle;
use super::mailbox::Membership;
use super::transport::{peer_channel, peer_client};
use crate::keyring::Keyring;

pub struct PeerService {
    handle: RaftHandle,
    /// How a follower passes a join on to the leader.
    security: Security,
    /// Given to controllers that join (secrets are sealed with it).
    keys: Keyring,
}

impl PeerService {
    pub fn new(handle: RaftHandle, security: Security, keys: Keyring) -> Self {
        PeerService {
            handle,
            security,
            keys,
        }
    }

    fn check_cluster(&self, cluster_id: &str) -> Result<(), Status> {
        // Runs for every raft message: compare in place, copy only to complain.
        let ours = self.handle.status().with(|s| {
            (!s.cluster_id.is_empty() && cluster_id != s.cluster_id).then(|| s.cluster_id.clone())
        });
        if let Some(ours) = ours {
            return Err(Status::permission_denied(format!(
                "message from cluster {cluster_id}, this member belongs to cluster {ours}"
            )));
        }
        Ok(())
    }

    /// The leader tells a member it removed that it is no longer one.
    fn check_member(&self, from: u64) -> Result<(), Status> {
        if self.handle.status().removed_sender(from) {
            let mut answer = Status::not_found(format!(
                "member {from} is not (or no longer) in this cluster"
            ));
            if let Ok(value) = from.to_string().parse() {
                answer.metadata_mut().insert(REMOVED_METADATA, value);
            }
            return Err(answer);
        }
        Ok(())
    }
}

/// gRPC metadata naming the member a leader no longer knows.
pub const REMOVED_METADATA: &str = "berth-removed-member";

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn messages(
        &self,
        request: Request<Streaming<RaftEnvelope>>,
    ) -> Result<Response<RaftAck>, Status> {
        let mut stream = request.into_inner();
        while let Some(envelope) = stream.message().await? {
            self.check_cluster(&envelope.cluster_id)?;
            self.check_member(envelope.from)?;
            match raft::eraftpb::Message::parse_from_bytes(&envelope.message) {
                Ok(msg) => self.handle.deliver(msg),
                Err(err) => warn!(from = envelope.from, %err, "undecodable raft message"),
            }
        }
        Ok(Response::new(RaftAck {}))
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftAck>, Status> {
        let mut stream = request.into_inner();
        let mut header = None;
        let mut data = Vec::new();
        while let Some(chunk) = stream.message().await? {
            self.check_cluster(&chunk.cluster_id)?;
            if header.is_none() {
                let msg = raft::eraftpb::Message::parse_from_bytes(&chunk.message)
                    .map_err(|e| Status::invalid_argument(format!("bad snapshot header: {e}")))?;
                header = Some(msg);
            }
            data.extend_from_slice(&chunk.data);
            if chunk.last {
                break;
            }
        }
        let mut msg = header.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        info!(
            from = msg.from,
            index = msg.get_snapshot().get_metadata().index,
            bytes = data.len(),
            "received a snapshot"
        );
        msg.mut_snapshot().set_data(data.into());
        self.handle.deliver(msg);
        Ok(Response::new(RaftAck {}))
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        // A controller that joined with a token got its member id in its
        // certificate: it joins under that id (a follower passing the join on
        // has put it in the request).
        let caller_id = crate::ca::gate::caller(&request).map(|c| c.node_id.clone());
        let mut req = request.into_inner();
        if req.member_id == 0
            && let Some(id) = caller_id
        {
            req.member_id = id.parse().map_err(|_| {
                Status::invalid_argument(format!(
                    "member id {id:?} in the certificate is not a number"
                ))
            })?;
        }
        let status = self.handle.status().get();
        if !status.is_leader() {
            // Any member takes a join; only the leader can carry it out.
            let leader = status
                .leader_address()
                .ok_or_else(|| Status::unavailable("no leader right now; retry the join"))?
                .to_string();
            let channel = peer_channel(&leader, &self.security)
                .map_err(|e| Status::internal(format!("bad leader address {leader}: {e}")))?;
            return peer_client(channel).join(req).await;
        }
        if req.address.parse::<std::net::SocketAddr>().is_err() {
            return Err(Status::invalid_argument(format!(
                "join address {:?} is not IP:PORT",
                req.address
            )));
        }
        if let Some((id, _)) = status.addresses.iter().find(|(_, a)| **a == req.address) {
            return Err(Status::already_exists(format!(
                "address {} already belongs to member {id}; remove it first with \
                 `berth cluster remove {id}` (a wiped member rejoins under a new id)",
                req.address
            )));
        }
        if req.member_id != 0 && status.addresses.contains_key(&req.member_id) {
            return Err(Status::already_exists(format!(
                "member id {} already exists in the cluster",
                req.member_id
            )));
        }
        let id = match req.member_id {
            0 => loop {
                let candidate = rand::random::<u64>() >> 12;
                if candidate != 0 && !status.addresses.contains_key(&candidate) {
                    break candidate;
                }
            },
            id => id,
        };
        info!(member = id, address = %req.address, "adding a learner");
        self.handle
            .change_membership(Membership::AddLearner(MemberChange {
                id,
                address: req.address.clone(),
            }))
            .await
            .map_err(Status::from)?;
        let mut members = self
            .handle
            .state()
            .members()
            .map_err(|e| Status::internal(e.to_string()))?;
        members.insert(id, req.address);
        Ok(Response::new(JoinResponse {
            member_id: id,
            cluster_id: status.cluster_id,
            members,
            secrets_key: self.keys.export(),
        }))
    }
}
