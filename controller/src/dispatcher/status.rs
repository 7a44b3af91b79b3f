//! Task status reports from agents, written through Raft. Observed states only
//! move forward; a report for a task that is not the node's is ignored.

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object};
use berth_proto::v1::{TaskState, TaskStatusUpdate};
use tonic::Status;
use tracing::warn;

use crate::api::common::{commit, put, store_status};
use crate::raft::RaftHandle;

fn state_of(status: Option<&berth_proto::v1::TaskStatus>) -> TaskState {
    status
        .and_then(|s| TaskState::try_from(s.state).ok())
        .unwrap_or(TaskState::New)
}

pub async fn apply(
    raft: &RaftHandle,
    node_id: &str,
    updates: Vec<TaskStatusUpdate>,
) -> Result<(), Status> {
    // A concurrent write to one of the tasks makes the txn fail: re-read, retry.
    for _ in 0..3 {
        let mut ops = Vec::new();
        for update in &updates {
            let Some(new) = update.status.clone() else {
                continue;
            };
            let Some(object) = raft
                .state()
                .get("task", &update.task_id)
                .map_err(store_status)?
            else {
                continue;
            };
            let Some(Kind::Task(mut task)) = object.kind else {
                continue;
            };
            if task.node_id != node_id {
                warn!(task = %task.id, node = %node_id, "status report from a node the task is not on");
                continue;
            }
            let current = state_of(task.status.as_ref());
            let reported = state_of(Some(&new));
            if reported < current || task.status.as_ref() == Some(&new) {
                continue;
            }
            let version = task.version;
            task.status = Some(new);
            // The orchestrator measures restart delays from here.
            let now = crate::api::common::now_ms();
            match task.timestamps.as_mut() {
                Some(ts) => ts.updated_ms = now,
                None => {
                    task.timestamps = Some(berth_proto::v1::Timestamps {
                        created_ms: now,
                        updated_ms: now,
                    })
                }
            }
            ops.push(put(
                Object {
                    kind: Some(Kind::Task(task)),
                },
                Expect::Version,
                version,
            ));
        }
        if ops.is_empty() {
            return Ok(());
        }
        match commit(raft, ops).await {
            Ok(_) => return Ok(()),
            Err(status) if status.code() == tonic::Code::Aborted => continue,
            Err(status) => return Err(status),
        }
    }
    Err(Status::aborted(
        "task status kept changing concurrently; report again",
    ))
}
