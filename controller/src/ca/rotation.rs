//! The leader's CA loop: it logs certificates close to expiry, and ends root
//! rotations. A root rotation's end: once every ready node has a certificate of the new
//! root, the leader drops the old root from the trust bundle. Nodes that are
//! down then rejoin with a token (whose digest changed with the bundle).

use std::time::Duration;

use berth_proto::store::ClusterPki;
use berth_proto::v1::{Node, NodeStatus};
use tracing::{info, warn};

use super::record;
use crate::raft::RaftHandle;
use crate::store::commit::commit;
use crate::store::view::read_nodes;

/// How often the leader looks.
const CHECK: Duration = Duration::from_secs(1);

/// (ready nodes on the new root, ready nodes) during a rotation.
pub fn progress(record: &ClusterPki, nodes: &[Node]) -> Option<(usize, usize)> {
    if !record::rotating(record) {
        return None;
    }
    let new_root = record::authority(record).ok()?.key_id().ok()?;
    let ready: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Ready as i32)
        .collect();
    let renewed = ready
        .iter()
        .filter(|n| n.cert_authority_key_id == new_root)
        .count();
    Some((renewed, ready.len()))
}

/// The record to write next: the rotation finished, when every ready node is
/// on the new root.
pub fn next(record: &ClusterPki, nodes: &[Node]) -> Option<ClusterPki> {
    match progress(record, nodes)? {
        (renewed, ready) if renewed == ready => Some(record::finish_rotation(record)),
        _ => None,
    }
}

/// How often the leader logs certificates close to expiry.
const EXPIRY_LOG: Duration = Duration::from_secs(600);

/// Finishes rotations while this member leads, and logs certificates that
/// expire within 30 days every ten minutes.
pub async fn run(raft: RaftHandle) {
    let mut last_log: Option<std::time::Instant> = None;
    loop {
        tokio::time::sleep(CHECK).await;
        if !raft.status().get().is_leader() {
            continue;
        }
        let sm = raft.state();
        let (Ok(Some(pki)), Ok(nodes)) = (record::read(sm), read_nodes(sm)) else {
            continue;
        };
        if last_log.is_none_or(|at| at.elapsed() >= EXPIRY_LOG) {
            last_log = Some(std::time::Instant::now());
            for line in super::expiry::warnings(None, &nodes, crate::clock::now_ms()) {
                warn!("{line}");
            }
        }
        let Some(finished) = next(&pki, &nodes) else {
            continue;
        };
        match commit(&raft, vec![record::put(finished)]).await {
            Ok(_) => info!(
                "CA rotation complete: every ready node has a certificate of the new root; the old root is no longer trusted"
            ),
            Err(err) => warn!(%err, "cannot finish the CA rotation; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(status: NodeStatus, key_id: &[u8]) -> Node {
        Node {
            status: status as i32,
            cert_authority_key_id: key_id.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn the_old_root_goes_once_every_ready_node_has_the_new_one() {
        let ca = berth_pki::Authority::create("c", 0).unwrap();
        let old_key = ca.key_id().unwrap();
        let first = record::initial(&ca, Duration::from_secs(3600));
        assert_eq!(next(&first, &[]), None, "no rotation, nothing to finish");
        let rotating = record::begin_rotation(&first, "c", 0).unwrap();
        let new_key = record::authority(&rotating).unwrap().key_id().unwrap();
        let mut nodes = vec![
            node(NodeStatus::Ready, &new_key),
            node(NodeStatus::Ready, &old_key),
            node(NodeStatus::Down, &old_key),
        ];
        assert_eq!(progress(&rotating, &nodes), Some((1, 2)));
        assert_eq!(next(&rotating, &nodes), None);
        nodes[1].cert_authority_key_id = new_key.clone();
        let done = next(&rotating, &nodes).expect("finished");
        assert_eq!(done.ca_pem, rotating.signer_pem);
        assert!(done.chain_pem.is_empty() && done.signer_pem.is_empty());
        assert_eq!(record::authority(&done).unwrap().key_id().unwrap(), new_key);
    }
}
