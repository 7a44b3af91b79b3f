//! Raft membership as the API shows and changes it.

use berth_pki::Security;
use berth_proto::v1::cluster_client::ClusterClient;
use berth_proto::v1::{ClusterStatusResponse, Member, MemberRole, RemoveMemberRequest};
use tonic::Status;

use crate::raft::transport::peer_channel;
use crate::raft::{Membership, RaftHandle, Role};

pub fn status(raft: &RaftHandle, security: &Security) -> ClusterStatusResponse {
    let status = raft.status().get();
    let record = crate::ca::record::read(raft.state()).ok().flatten();
    let nodes = crate::store::view::read_nodes(raft.state()).unwrap_or_default();
    ClusterStatusResponse {
        members: status
            .members
            .iter()
            .map(|m| Member {
                id: m.id,
                address: m.address.clone(),
                role: match m.role {
                    Role::Leader => MemberRole::Leader,
                    Role::Follower => MemberRole::Follower,
                    Role::Learner => MemberRole::Learner,
                    Role::Candidate => MemberRole::Candidate,
                } as i32,
            })
            .collect(),
        leader_id: status.leader_id,
        term: status.term,
        commit_index: status.commit_index,
        applied_index: status.applied_index,
        member_id: status.id,
        certificate_warnings: crate::ca::expiry::warnings(
            security.credentials().map(|c| c.info()).as_ref(),
            &nodes,
            crate::clock::now_ms(),
        ),
        ca_digest: record
            .as_ref()
            .map(|r| berth_pki::bundle::ca_digest(&r.ca_pem))
            .unwrap_or_default(),
        ca_rotation: record
            .as_ref()
            .and_then(|r| crate::ca::rotation::progress(r, &nodes))
            .map(|(renewed, ready)| format!("{renewed} of {ready} ready nodes on the new root"))
            .unwrap_or_default(),
    }
}

pub async fn remove(
    raft: &RaftHandle,
    security: &Security,
    req: RemoveMemberRequest,
) -> Result<(), Status> {
    let status = raft.status().get();
    if !status.is_leader() {
        let leader = status
            .leader_address()
            .ok_or_else(|| Status::unavailable("no leader right now; retry"))?
            .to_string();
        let channel = peer_channel(&leader, security)
            .map_err(|e| Status::internal(format!("bad leader address {leader}: {e}")))?;
        ClusterClient::new(channel).remove_member(req).await?;
        return Ok(());
    }
    let member = status
        .members
        .iter()
        .find(|m| m.id == req.id)
        .ok_or_else(|| Status::not_found(format!("member {} is not in the cluster", req.id)))?;
    let voters = status
        .members
        .iter()
        .filter(|m| m.role != Role::Learner)
        .count();
    if member.role != Role::Learner && voters == 1 {
        return Err(Status::failed_precondition(
            "cannot remove the last voting member of the cluster",
        ));
    }
    raft.change_membership(Membership::Remove(req.id))
        .await
        .map_err(Status::from)
}
