//! An agent registers: a new node is created READY, a known one (by the id it
//! kept, else by its name) is updated and READY again. Plain functions of what
//! the store holds, the request, the time and an id generator.

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Op};
use berth_proto::v1::{Node, NodeAvailability, NodeStatus, RegisterRequest, Timestamps};

use super::DispatchError;
use crate::store::view::read_node;
use crate::store::{StateMachine, StoreError, Table, put_kind};

/// The node an agent registers as: by the id it kept, else by its name.
pub fn find_node(sm: &StateMachine, req: &RegisterRequest) -> Result<Option<Node>, StoreError> {
    if !req.node_id.is_empty()
        && let Some(node) = read_node(sm, &req.node_id)?
    {
        return Ok(Some(node));
    }
    match sm.id_by_name(Table::Node, &req.name)? {
        Some(id) => read_node(sm, &id),
        None => Ok(None),
    }
}

/// The verified certificate an agent registered with: what the node records
/// (its expiry for `node ls`, its key for a later rejoin).
#[derive(Clone, Debug)]
pub struct NodeCertificate {
    pub not_after_ms: i64,
    pub key_sha256: Vec<u8>,
    /// The key id of the root that signed it.
    pub authority_key_id: Vec<u8>,
}

/// What a registration writes.
#[derive(Debug)]
pub struct Registration {
    pub node_id: String,
    pub op: Op,
}

/// The node as it is after `req`: `existing` updated (address, labels,
/// resources, READY), or a new node.
pub fn register(
    existing: Option<Node>,
    req: &RegisterRequest,
    cert: Option<&NodeCertificate>,
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Result<Registration, DispatchError> {
    if req.name.is_empty() {
        return Err(DispatchError::NoName);
    }
    let (node, expect, version) = match existing {
        Some(mut node) => {
            if !req.node_id.is_empty() && node.id != req.node_id {
                return Err(DispatchError::NameTaken {
                    name: req.name.clone(),
                    holder: node.id,
                });
            }
            let version = node.version;
            node.address = req.address.clone();
            node.api_address = req.api_address.clone();
            node.labels.extend(req.labels.clone());
            node.resources = req.resources;
            node.status = NodeStatus::Ready as i32;
            node.status_message = String::new();
            if let Some(ts) = node.timestamps.as_mut() {
                ts.updated_ms = now_ms;
            }
            (node, Expect::Version, version)
        }
        None => (
            Node {
                id: if req.node_id.is_empty() {
                    new_id()
                } else {
                    req.node_id.clone()
                },
                name: req.name.clone(),
                address: req.address.clone(),
                api_address: req.api_address.clone(),
                labels: req.labels.clone(),
                resources: req.resources,
                availability: NodeAvailability::Active as i32,
                status: NodeStatus::Ready as i32,
                timestamps: Some(Timestamps {
                    created_ms: now_ms,
                    updated_ms: now_ms,
                }),
                ..Default::default()
            },
            Expect::Absent,
            0,
        ),
    };
    let mut node = node;
    if let Some(cert) = cert {
        node.cert_not_after_ms = cert.not_after_ms;
        node.cert_key_sha256 = cert.key_sha256.clone();
        node.cert_authority_key_id = cert.authority_key_id.clone();
    }
    Ok(Registration {
        node_id: node.id.clone(),
        op: put_kind(Kind::Node(node), expect, version),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::store::op;

    fn request(node_id: &str, name: &str) -> RegisterRequest {
        RegisterRequest {
            node_id: node_id.into(),
            name: name.into(),
            address: "198.18.0.2".into(),
            ..Default::default()
        }
    }

    fn written(op: &Op) -> (Node, i32, u64) {
        match &op.op {
            Some(op::Op::Put(p)) => match p.object.as_ref().and_then(|o| o.kind.clone()) {
                Some(Kind::Node(n)) => (n, p.expect, p.version),
                other => panic!("not a node: {other:?}"),
            },
            other => panic!("not a put: {other:?}"),
        }
    }

    #[test]
    fn a_new_agent_becomes_a_ready_node_with_a_new_id() {
        let r = register(None, &request("", "h1"), None, 1_000, &mut || "id1".into()).unwrap();
        let (node, expect, _) = written(&r.op);
        assert_eq!(r.node_id, "id1");
        assert_eq!(node.name, "h1");
        assert_eq!(node.status, NodeStatus::Ready as i32);
        assert_eq!(node.availability, NodeAvailability::Active as i32);
        assert_eq!(expect, Expect::Absent as i32);
    }

    #[test]
    fn a_known_node_comes_back_ready_at_the_version_read() {
        let down = Node {
            id: "id1".into(),
            name: "h1".into(),
            status: NodeStatus::Down as i32,
            status_message: "no heartbeat for 8s".into(),
            availability: NodeAvailability::Drain as i32,
            version: 7,
            ..Default::default()
        };
        let r = register(Some(down), &request("id1", "h1"), None, 2_000, &mut || {
            unreachable!("a known node keeps its id")
        })
        .unwrap();
        let (node, expect, version) = written(&r.op);
        assert_eq!(node.status, NodeStatus::Ready as i32);
        assert!(node.status_message.is_empty());
        assert_eq!(
            node.availability,
            NodeAvailability::Drain as i32,
            "a drain outlives a re-registration"
        );
        assert_eq!((expect, version), (Expect::Version as i32, 7));
    }

    #[test]
    fn a_name_held_by_another_node_is_refused() {
        let other = Node {
            id: "id1".into(),
            name: "h1".into(),
            ..Default::default()
        };
        let err = register(Some(other), &request("id2", "h1"), None, 0, &mut || {
            "x".into()
        })
        .unwrap_err();
        assert!(err.to_string().contains("taken by node id1"), "{err}");
        let err = register(None, &request("", ""), None, 0, &mut || "x".into()).unwrap_err();
        assert!(matches!(err, DispatchError::NoName));
    }
}
