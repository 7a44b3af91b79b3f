//! Task status reports from agents. Observed states only move forward; a report
//! for a task that is not on the reporting node is ignored.

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Op};
use berth_proto::v1::{Task, TaskState, TaskStatus, TaskStatusUpdate, Timestamps};
use tracing::warn;

use crate::store::put_kind;

fn state_of(status: Option<&TaskStatus>) -> TaskState {
    status
        .and_then(|s| TaskState::try_from(s.state).ok())
        .unwrap_or(TaskState::New)
}

/// The writes `updates` from `node_id` make, given the tasks as stored
/// (`lookup`). Each put expects the version read.
pub fn status_ops(
    lookup: impl Fn(&str) -> Option<Task>,
    node_id: &str,
    updates: &[TaskStatusUpdate],
    now_ms: i64,
) -> Vec<Op> {
    let mut ops = Vec::new();
    for update in updates {
        let Some(new) = update.status.clone() else {
            continue;
        };
        let Some(mut task) = lookup(&update.task_id) else {
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
        if reported == TaskState::Running && task.running_since_ms == 0 {
            // A rollout's monitor window counts from here.
            task.running_since_ms = now_ms;
        }
        // The orchestrator measures restart delays from here.
        match task.timestamps.as_mut() {
            Some(ts) => ts.updated_ms = now_ms,
            None => {
                task.timestamps = Some(Timestamps {
                    created_ms: now_ms,
                    updated_ms: now_ms,
                })
            }
        }
        ops.push(put_kind(
            Kind::Task(Box::new(task)),
            Expect::Version,
            version,
        ));
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::store::op;

    fn task(id: &str, node: &str, state: TaskState) -> Task {
        Task {
            id: id.into(),
            node_id: node.into(),
            version: 3,
            status: Some(TaskStatus {
                state: state as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn update(id: &str, state: TaskState) -> TaskStatusUpdate {
        TaskStatusUpdate {
            task_id: id.into(),
            status: Some(TaskStatus {
                state: state as i32,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn states_move_forward_only_and_only_from_the_tasks_node() {
        let stored = [
            task("t1", "n1", TaskState::Starting),
            task("t2", "n1", TaskState::Running),
            task("t3", "n2", TaskState::Starting),
        ];
        let lookup = |id: &str| stored.iter().find(|t| t.id == id).cloned();
        let ops = status_ops(
            lookup,
            "n1",
            &[
                update("t1", TaskState::Running),
                update("t2", TaskState::Starting),
                update("t2", TaskState::Running),
                update("t3", TaskState::Running),
                update("gone", TaskState::Running),
            ],
            5_000,
        );
        assert_eq!(ops.len(), 1, "{ops:?}");
        let Some(op::Op::Put(put)) = &ops[0].op else {
            panic!("not a put")
        };
        assert_eq!((put.expect, put.version), (Expect::Version as i32, 3));
        let Some(Kind::Task(t)) = put.object.as_ref().and_then(|o| o.kind.clone()) else {
            panic!("not a task")
        };
        assert_eq!(t.id, "t1");
        assert_eq!(t.status.unwrap().state, TaskState::Running as i32);
        assert_eq!(t.timestamps.unwrap().updated_ms, 5_000);
        assert_eq!(t.running_since_ms, 5_000, "first reported running");
    }
}
