//! Nodes as the API shows and changes them (agents register through the
//! dispatcher).

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object};
use berth_proto::v1::{
    ListNodesResponse, Node, NodeAvailability, NodeStatus, RemoveNodeRequest, UpdateNodeRequest,
};
use tonic::Status;

use crate::clock::now_ms;
use crate::raft::RaftHandle;
use crate::store::commit::commit_one;
use crate::store::view::resolve;
use crate::store::{Table, commit, delete, put_kind};

fn unwrap(object: Object) -> Result<Node, Status> {
    match object.kind {
        Some(Kind::Node(n)) => Ok(n),
        _ => Err(Status::internal("the store returned a non-node object")),
    }
}

pub async fn list(raft: &RaftHandle) -> Result<ListNodesResponse, Status> {
    raft.read_barrier().await?;
    let nodes = raft
        .state()
        .list(Table::Node)?
        .into_iter()
        .map(unwrap)
        .collect::<Result<_, _>>()?;
    Ok(ListNodesResponse { nodes })
}

pub async fn get(raft: &RaftHandle, key: &str) -> Result<Node, Status> {
    raft.read_barrier().await?;
    unwrap(resolve(raft.state(), Table::Node, key)?)
}

/// Read-modify-writes without a version from the caller (`berth node
/// update`) are tried again on a conflict: the node record also changes on its
/// own (status, heartbeats' conditions), and the change asked for still applies
/// to the newer version.
const UPDATE_ATTEMPTS: usize = 5;

pub async fn update(raft: &RaftHandle, req: UpdateNodeRequest) -> Result<Node, Status> {
    let mut attempt = 1;
    loop {
        match update_once(raft, req.clone()).await {
            Err(UpdateFailure::Commit(err))
                if req.version == 0 && err.is_conflict() && attempt < UPDATE_ATTEMPTS =>
            {
                attempt += 1;
            }
            Err(UpdateFailure::Commit(err)) => return Err(err.into()),
            Err(UpdateFailure::Status(status)) => return Err(status),
            Ok(node) => return Ok(node),
        }
    }
}

enum UpdateFailure {
    Commit(crate::store::CommitError),
    Status(Status),
}

impl From<Status> for UpdateFailure {
    fn from(status: Status) -> Self {
        UpdateFailure::Status(status)
    }
}

async fn update_once(raft: &RaftHandle, req: UpdateNodeRequest) -> Result<Node, UpdateFailure> {
    let found = resolve(raft.state(), Table::Node, &req.node).map_err(Status::from)?;
    let mut node = unwrap(found)?;
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
            return Err(
                Status::not_found(format!("node {} has no label {key:?}", node.name)).into(),
            );
        }
    }
    for (key, value) in req.label_add {
        if key.is_empty() {
            return Err(Status::invalid_argument("a label needs a key").into());
        }
        node.labels.insert(key, value);
    }
    if let Some(ts) = node.timestamps.as_mut() {
        ts.updated_ms = now_ms();
    }
    let committed = commit_one(raft, put_kind(Kind::Node(node), Expect::Version, version))
        .await
        .map_err(UpdateFailure::Commit)?;
    Ok(unwrap(committed)?)
}

pub async fn remove(raft: &RaftHandle, req: RemoveNodeRequest) -> Result<(), Status> {
    let node = unwrap(resolve(raft.state(), Table::Node, &req.node)?)?;
    if node.status == NodeStatus::Ready as i32 && !req.force {
        return Err(Status::failed_precondition(format!(
            "node {} is ready; drain and stop it first, or remove it with --force",
            node.name
        )));
    }
    let mut ops = vec![delete(Table::Node, &node.id, Expect::Version, node.version)];
    // Its certificate is refused from now on, until it would expire anyway
    // (unknown expiry: a whole lifetime from now, the longest it can have).
    raft.read_barrier().await?;
    if let Some(mut pki) = crate::ca::record::read(raft.state())? {
        let until = match node.cert_not_after_ms {
            0 => now_ms() + crate::ca::record::lifetime(&pki).as_millis() as i64,
            not_after => not_after,
        };
        let now = now_ms();
        pki.removed.retain(|_, until| *until > now);
        pki.removed.insert(node.id.clone(), until);
        ops.push(crate::ca::record::put(pki));
    }
    commit(raft, ops).await?;
    tracing::info!(node = %node.name, id = %node.id, "removed a node; its certificate is refused from now on");
    Ok(())
}
