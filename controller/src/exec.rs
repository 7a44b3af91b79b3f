//! Where `berth exec` and `berth attach` go: the task a user means (TASK,
//! SERVICE.SLOT or SERVICE, as `store::view::resolve_task` reads it), which
//! must be running, and the agent API of the node that runs it.

use berth_proto::v1::{Node, Task, TaskState};

use crate::store::StateMachine;
use crate::store::view::{self, LookupError};

#[derive(Debug, thiserror::Error)]
pub enum ExecTargetError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("task {name} ({id}) is not running: it is {state}")]
    NotRunning {
        name: String,
        id: String,
        state: String,
    },
    #[error("task {name} ({id}) runs on node {node}, which has no agent API address")]
    NoAgentApi {
        name: String,
        id: String,
        node: String,
    },
}

/// A running task and the node that runs it.
#[derive(Clone, Debug)]
pub struct ExecTarget {
    pub task: Task,
    pub node: Node,
}

/// A task as a user names it: `SERVICE.SLOT` (or the service alone for slot 0).
pub fn task_name(task: &Task) -> String {
    if task.slot > 0 {
        format!("{}.{}", task.service_name, task.slot)
    } else {
        task.service_name.clone()
    }
}

/// A task's short id, as listings show it.
fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

/// The lower-case state name ("running", "complete").
pub fn state_name(state: i32) -> String {
    TaskState::try_from(state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("TASK_STATE_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| format!("in state {state}"))
}

/// Resolves `key` to a running task and its node.
pub fn target(sm: &StateMachine, key: &str) -> Result<ExecTarget, ExecTargetError> {
    let task = view::resolve_task(sm, key)?;
    let state = task.status.as_ref().map_or(0, |s| s.state);
    let not_running = |state: String| ExecTargetError::NotRunning {
        name: task_name(&task),
        id: short_id(&task.id),
        state,
    };
    if state != TaskState::Running as i32 {
        return Err(not_running(state_name(state)));
    }
    // Running, but the orchestrator already wants it gone: it is stopping.
    if task.desired_state > TaskState::Running as i32 {
        return Err(not_running("stopping".into()));
    }
    let node = view::read_node(sm, &task.node_id)
        .map_err(LookupError::from)?
        .filter(|n| !n.api_address.is_empty())
        .ok_or_else(|| ExecTargetError::NoAgentApi {
            name: task_name(&task),
            id: short_id(&task.id),
            node: task.node_id.clone(),
        })?;
    Ok(ExecTarget { task, node })
}
