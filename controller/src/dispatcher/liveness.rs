//! Node liveness on the leader: a node whose session shows no sign of life for
//! the down period is declared DOWN (the orchestrator then replaces its tasks).
//! After a leader change every node gets a full down period to find the new
//! leader first.

use std::time::{Duration, Instant};

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Op};
use berth_proto::v1::{Node, NodeStatus};

use super::sessions::Sessions;
use crate::store::put_kind;

/// The nodes to declare down now, and the writes that do it. `leading_since`
/// is when this leadership began: no node is older than that to it.
pub fn expired<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    sessions: &Sessions,
    leading_since: Instant,
    now: Instant,
    down_after: Duration,
) -> Vec<(String, Op)> {
    let mut out = Vec::new();
    for node in nodes {
        if node.status == NodeStatus::Down as i32 {
            continue;
        }
        let last = sessions
            .last_heartbeat(&node.id)
            .unwrap_or(leading_since)
            .max(leading_since);
        if now.saturating_duration_since(last) <= down_after {
            continue;
        }
        let mut down = node.clone();
        down.status = NodeStatus::Down as i32;
        down.status_message = format!("no heartbeat for {}s", down_after.as_secs());
        let version = node.version;
        out.push((
            node.id.clone(),
            put_kind(Kind::Node(down), Expect::Version, version),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, status: NodeStatus) -> Node {
        Node {
            id: id.into(),
            status: status as i32,
            version: 1,
            ..Default::default()
        }
    }

    #[test]
    fn silent_nodes_go_down_after_the_period_and_a_new_leader_waits_a_period() {
        let t0 = Instant::now();
        let down_after = Duration::from_secs(8);
        let nodes = [
            node("quiet", NodeStatus::Ready),
            node("alive", NodeStatus::Ready),
            node("never", NodeStatus::Ready),
            node("already", NodeStatus::Down),
        ];
        let mut sessions = Sessions::default();
        sessions.open("quiet", "s", t0);
        sessions.open("alive", "s", t0);
        sessions.touch("alive", "s", t0 + Duration::from_secs(5));

        let at = |secs| t0 + Duration::from_secs(secs);
        assert!(expired(&nodes, &sessions, t0, at(8), down_after).is_empty());
        let ids: Vec<String> = expired(&nodes, &sessions, t0, at(9), down_after)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["quiet", "never"]);
        // A leadership that began at 4 s gives everyone until 12 s.
        assert!(expired(&nodes, &sessions, at(4), at(12), down_after).is_empty());
        let ids: Vec<String> = expired(&nodes, &sessions, at(4), at(14), down_after)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["quiet", "alive", "never"]);
    }
}
