//! Drain before stop, the leader's half: which shared sequence every live
//! node has put into its kernel. A task told to stop in a set of shared
//! sequence S has left every VIP, DNS answer and published port once this
//! watermark reaches S; its agent waits for that (at most about a second)
//! before the stop signal. See dispatcher.md, "Drain before stop".

use berth_proto::v1::{Node, NodeStatus};

/// The shared sequence every node that is not down has acknowledged, at most
/// `current` (the newest one published). A node without a session of this
/// leadership counts as having acknowledged nothing: its agent may still send
/// connections anywhere, so a stop waits for it until the agent's bound.
pub fn applied_everywhere<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    acked: impl Fn(&str) -> u64,
    current: u64,
) -> u64 {
    nodes
        .into_iter()
        .filter(|n| n.status != NodeStatus::Down as i32)
        .map(|n| acked(&n.id))
        .fold(current, u64::min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatcher::endpoints::tests::node;

    #[test]
    fn the_slowest_live_node_holds_the_watermark() {
        let nodes = [
            node("n1", NodeStatus::Ready),
            node("n2", NodeStatus::Ready),
            node("n3", NodeStatus::Down),
        ];
        let acks = |id: &str| match id {
            "n1" => 9,
            "n2" => 7,
            _ => 1,
        };
        assert_eq!(applied_everywhere(&nodes, acks, 9), 7);
        assert_eq!(
            applied_everywhere(&nodes, |_| 12, 9),
            9,
            "never beyond what was published"
        );
        assert_eq!(
            applied_everywhere(&nodes[..2], |id| u64::from(id == "n1") * 9, 9),
            0,
            "a node without a session acknowledged nothing"
        );
        assert_eq!(
            applied_everywhere(&nodes[2..], acks, 9),
            9,
            "down nodes do not count"
        );
    }
}
