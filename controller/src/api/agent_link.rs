//! Reaching the agent that runs a task: its node's API address, dialled with
//! this controller's certificate (the agent admits only its cluster's
//! controllers).

use std::time::Duration;

use berth_pki::{Role, Security};
use berth_proto::v1::{Node, Task};
use tonic::Status;
use tonic::transport::Channel;

use crate::raft::RaftHandle;
use crate::store::view::read_node;

/// The node `task` is placed on; FailedPrecondition when it has none yet.
pub fn node_of(raft: &RaftHandle, task: &Task) -> Result<Node, Status> {
    if task.node_id.is_empty() {
        return Err(Status::failed_precondition(format!(
            "task {} is not placed on a node yet",
            task.id
        )));
    }
    read_node(raft.state(), &task.node_id)?.ok_or_else(|| {
        Status::failed_precondition(format!(
            "task {}: its node {} is no longer in the cluster",
            task.id, task.node_id
        ))
    })
}

/// A connection to `node`'s agent API.
pub async fn connect(security: &Security, node: &Node) -> Result<Channel, Status> {
    if node.api_address.is_empty() {
        return Err(Status::unavailable(format!(
            "node {} has no agent API address",
            node.name
        )));
    }
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", node.api_address))
        .map_err(|e| {
            Status::internal(format!(
                "node {}: bad agent address {}: {e}",
                node.name, node.api_address
            ))
        })?
        .connect_timeout(Duration::from_secs(2));
    berth_pki::tls::connect(endpoint, security, Role::Agent)
        .await
        .map_err(|e| {
            Status::unavailable(format!(
                "node {} ({}) does not answer: {e}",
                node.name, node.api_address
            ))
        })
}
