//! Declares nodes down when their heartbeats stop, on the leader only.

use std::time::{Duration, Instant};

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object};
use berth_proto::v1::NodeStatus;
use tracing::{info, warn};

use super::Dispatcher;
use crate::api::common::{commit, put};

/// Runs forever; acts only while this member leads.
pub async fn run_liveness(dispatcher: Dispatcher) {
    let mut leader_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if !dispatcher.raft.status().get().is_leader() {
            // Sessions belong to a leadership: agents register with the next one.
            if leader_since.take().is_some() {
                dispatcher.sessions().clear();
            }
            continue;
        }
        // After a leader change every node gets a full down period to find the
        // new leader before anything is declared down.
        let since = *leader_since.get_or_insert_with(Instant::now);
        let nodes = match dispatcher.raft.state().list("node") {
            Ok(nodes) => nodes,
            Err(err) => {
                warn!(%err, "cannot list nodes");
                continue;
            }
        };
        let down_after = dispatcher.settings.down_after;
        let mut ops = Vec::new();
        for object in nodes {
            let Some(Kind::Node(mut node)) = object.kind else {
                continue;
            };
            if node.status == NodeStatus::Down as i32 {
                continue;
            }
            let last = dispatcher
                .sessions()
                .get(&node.id)
                .map(|s| s.last_heartbeat)
                .unwrap_or(since)
                .max(since);
            if last.elapsed() <= down_after {
                continue;
            }
            info!(node = %node.id, name = %node.name, "no heartbeat for {down_after:?}: node down");
            // Its next heartbeat (after a partition heals) is refused, so the
            // agent registers again and the node becomes READY through Raft.
            dispatcher.sessions().remove(&node.id);
            let version = node.version;
            node.status = NodeStatus::Down as i32;
            node.status_message = format!("no heartbeat for {}s", down_after.as_secs());
            ops.push(put(
                Object {
                    kind: Some(Kind::Node(node)),
                },
                Expect::Version,
                version,
            ));
        }
        if !ops.is_empty()
            && let Err(status) = commit(&dispatcher.raft, ops).await
        {
            warn!(%status, "marking nodes down failed; retrying");
        }
    }
}
