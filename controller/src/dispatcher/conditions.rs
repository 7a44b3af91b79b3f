//! Node conditions that agents report with their heartbeats (today: what keeps
//! the node's data plane from working). Written to the node only when they
//! change, so a steady cluster's heartbeats write nothing.

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Op};
use berth_proto::v1::Node;

use crate::store::put_kind;

/// The write that records `reported` on `node`, if it differs from what the
/// node has.
pub fn conflict_op(node: &Node, reported: &str) -> Option<Op> {
    if node.dataplane_conflict == reported {
        return None;
    }
    let mut changed = node.clone();
    changed.dataplane_conflict = reported.to_string();
    Some(put_kind(Kind::Node(changed), Expect::Version, node.version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::store::op;

    #[test]
    fn only_a_change_is_written() {
        let node = Node {
            id: "n1".into(),
            version: 4,
            ..Default::default()
        };
        assert!(conflict_op(&node, "").is_none());
        let op = conflict_op(&node, "UDP 4789 VNI 4096 is used by another VXLAN device")
            .expect("a change");
        let Some(op::Op::Put(put)) = op.op else {
            panic!("a put: {op:?}");
        };
        assert_eq!(put.version, 4);
        let Some(Kind::Node(written)) = put.object.and_then(|o| o.kind) else {
            panic!("a node");
        };
        assert_eq!(
            written.dataplane_conflict,
            "UDP 4789 VNI 4096 is used by another VXLAN device"
        );
        let mut recorded = node.clone();
        recorded.dataplane_conflict = written.dataplane_conflict.clone();
        assert!(conflict_op(&recorded, &written.dataplane_conflict).is_none());
        assert!(
            conflict_op(&recorded, "").is_some(),
            "a cleared conflict is written"
        );
    }
}
