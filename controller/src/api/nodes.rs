//! Nodes as the API shows and changes them (agents register through the
//! dispatcher).

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object};
use berth_proto::v1::{
    ListNodesResponse, Node, NodeAvailability, NodeStatus, RemoveNodeRequest, UpdateNodeRequest,
};
use tonic::Status;

use super::common::{barrier, commit, delete, now_ms, put_one, resolve, store_status};
use crate::raft::RaftHandle;

fn unwrap(object: Object) -> Result<Node, Status> {
    match object.kind {
        Some(Kind::Node(n)) => Ok(n),
        _ => Err(Status::internal("the store returned a non-node object")),
    }
}

pub async fn list(raft: &RaftHandle) -> Result<ListNodesResponse, Status> {
    barrier(raft).await?;
    let nodes = raft
        .state()
        .list("node")
        .map_err(store_status)?
        .into_iter()
        .map(unwrap)
        .collect::<Result<_, _>>()?;
    Ok(ListNodesResponse { nodes })
}

pub async fn get(raft: &RaftHandle, key: &str) -> Result<Node, Status> {
    barrier(raft).await?;
    unwrap(resolve(raft, "node", key)?)
}

pub async fn update(raft: &RaftHandle, req: UpdateNodeRequest) -> Result<Node, Status> {
    let mut node = unwrap(resolve(raft, "node", &req.node)?)?;
    let version = if req.version == 0 {
        node.version
    } else {
        req.version
    };
    if let Some(availability) = req.availability {
        NodeAvailability::try_from(availability).map_err(|_| {
            Status::invalid_argument(format!("unknown availability {availability}"))
        })?;
        node.availability = availability;
    }
    for key in &req.label_rm {
        if node.labels.remove(key).is_none() {
            return Err(Status::not_found(format!(
                "node {} has no label {key:?}",
                node.name
            )));
        }
    }
    for (key, value) in req.label_add {
        if key.is_empty() {
            return Err(Status::invalid_argument("a label needs a key"));
        }
        node.labels.insert(key, value);
    }
    if let Some(ts) = node.timestamps.as_mut() {
        ts.updated_ms = now_ms();
    }
    unwrap(
        put_one(
            raft,
            Object {
                kind: Some(Kind::Node(node)),
            },
            Expect::Version,
            version,
        )
        .await?,
    )
}

pub async fn remove(raft: &RaftHandle, req: RemoveNodeRequest) -> Result<(), Status> {
    let node = unwrap(resolve(raft, "node", &req.node)?)?;
    if node.status == NodeStatus::Ready as i32 && !req.force {
        return Err(Status::failed_precondition(format!(
            "node {} is ready; drain and stop it first, or remove it with --force",
            node.name
        )));
    }
    commit(
        raft,
        vec![delete("node", &node.id, Expect::Version, node.version)],
    )
    .await?;
    Ok(())
}
