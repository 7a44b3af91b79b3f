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

/// Heartbeats a second the leader is asked to answer at most: past this, a
/// larger cluster heartbeats less often. Each heartbeat is a unary call (TLS,
/// HTTP/2, a session lookup): ~100 µs of the leader's CPU on the 2-core
/// development VM, so 1,000 nodes at 1 s cost ~10 % of a core doing nothing.
pub const HEARTBEATS_PER_SECOND: u32 = 300;

/// The period agents are told to heartbeat at with `nodes` sessions open:
/// `base`, longer when that would exceed [`HEARTBEATS_PER_SECOND`], but never
/// past a third of `down_after`, so a node misses three beats before it is
/// declared down (Swarm likewise spreads heartbeats as a cluster grows).
pub fn heartbeat_period(base: Duration, down_after: Duration, nodes: usize) -> Duration {
    let spread = Duration::from_secs_f64(nodes as f64 / f64::from(HEARTBEATS_PER_SECOND));
    base.max(spread.min(down_after / 3))
}

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

    #[test]
    fn the_heartbeat_period_grows_with_the_cluster_up_to_a_third_of_the_down_period() {
        let base = Duration::from_secs(1);
        let down = Duration::from_secs(8);
        assert_eq!(heartbeat_period(base, down, 0), base);
        assert_eq!(heartbeat_period(base, down, 300), base);
        assert_eq!(heartbeat_period(base, down, 600), Duration::from_secs(2));
        assert_eq!(heartbeat_period(base, down, 1_000), down / 3);
        assert_eq!(heartbeat_period(base, down, 100_000), down / 3);
        // A short down period (tests) never brings the period below its base.
        let short = Duration::from_millis(1_500);
        assert_eq!(heartbeat_period(base, short, 1_000), base);
    }

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
