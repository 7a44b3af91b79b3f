//! Raft membership as the API shows and changes it.

use berth_pki::Security;
use berth_proto::v1::cluster_client::ClusterClient;
use berth_proto::v1::{ClusterStatusResponse, Member, MemberRole, RemoveMemberRequest};
use tonic::Status;

use crate::raft::transport::peer_channel;
use crate::raft::{Membership, RaftHandle, Role};

/// Certificates expiring within this window are warned about.
const EXPIRY_WARNING_MS: i64 = 30 * 24 * 3600 * 1000;

/// A line for each certificate that expires within 30 days: this controller's
/// own and every node's.
fn certificate_warnings(raft: &RaftHandle, security: &Security) -> Vec<String> {
    let now = crate::clock::now_ms();
    let soon = |not_after: i64| not_after != 0 && not_after - now < EXPIRY_WARNING_MS;
    let when = |not_after: i64| {
        let at = berth_pki::identity::format_ms(not_after);
        if not_after <= now {
            format!("expired at {at}")
        } else {
            format!("expires at {at}")
        }
    };
    let mut lines = Vec::new();
    if let Some(creds) = security.credentials() {
        let info = creds.info();
        if soon(info.not_after_ms) {
            lines.push(format!(
                "the certificate of controller {} {} (it renews itself; check its log)",
                info.identity.node_id,
                when(info.not_after_ms)
            ));
        }
    }
    if let Ok(nodes) = crate::store::view::read_nodes(raft.state()) {
        for node in nodes.iter().filter(|n| soon(n.cert_not_after_ms)) {
            lines.push(format!(
                "the certificate of node {} {} (is its agent running? it renews at 50-80 % \
                 of the lifetime; an expired node rejoins with `berth-agent --token`)",
                node.name,
                when(node.cert_not_after_ms)
            ));
        }
    }
    lines
}

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
        certificate_warnings: certificate_warnings(raft, security),
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
