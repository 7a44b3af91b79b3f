//! Raft membership as the API shows and changes it.

use berth_proto::v1::cluster_client::ClusterClient;
use berth_proto::v1::{ClusterStatusResponse, Member, MemberRole, RemoveMemberRequest};
use tonic::Status;

use crate::raft::transport::peer_channel;
use crate::raft::{Membership, RaftHandle, Role};

pub fn status(raft: &RaftHandle) -> ClusterStatusResponse {
    let status = raft.status().get();
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
    }
}

pub async fn remove(raft: &RaftHandle, req: RemoveMemberRequest) -> Result<(), Status> {
    let status = raft.status().get();
    if !status.is_leader() {
        let leader = status
            .leader_address()
            .ok_or_else(|| Status::unavailable("no leader right now; retry"))?
            .to_string();
        let channel = peer_channel(&leader)
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
