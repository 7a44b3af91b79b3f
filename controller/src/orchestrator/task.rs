//! Small readings of a task's state shared by the orchestrator and the scheduler.

use berth_proto::store::Object;
use berth_proto::store::object::Kind;
use berth_proto::v1::{Task, TaskHealth, TaskState};

/// The observed state (NEW when the task has no status yet).
pub fn observed(task: &Task) -> i32 {
    task.status.as_ref().map(|s| s.state).unwrap_or(0)
}

/// COMPLETE, SHUTDOWN, FAILED, REJECTED, ORPHANED: the task will not run again.
pub fn is_terminal(state: i32) -> bool {
    state >= TaskState::Complete as i32
}

/// Desired RUNNING (or earlier): the task is meant to run.
pub fn wants_running(task: &Task) -> bool {
    task.desired_state <= TaskState::Running as i32
}

/// Running but failed its health check (the agent stops it and reports it
/// FAILED next).
pub fn unhealthy(task: &Task) -> bool {
    task.status
        .as_ref()
        .is_some_and(|s| s.health == TaskHealth::Unhealthy as i32)
}

/// When the task last changed: the later of the store's update time and the
/// status time the agent reported.
pub fn changed_ms(task: &Task) -> i64 {
    let updated = task.timestamps.as_ref().map(|t| t.updated_ms).unwrap_or(0);
    let reported = task.status.as_ref().map(|s| s.timestamp_ms).unwrap_or(0);
    updated.max(reported)
}

pub fn created_ms(task: &Task) -> i64 {
    task.timestamps.as_ref().map(|t| t.created_ms).unwrap_or(0)
}

pub fn wrap(task: Task) -> Object {
    Object {
        kind: Some(Kind::Task(Box::new(task))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{TaskStatus, Timestamps};

    #[test]
    fn terminal_states_are_the_last_five() {
        let terminal: Vec<i32> = (0..=10).filter(|s| is_terminal(*s)).collect();
        assert_eq!(terminal, vec![6, 7, 8, 9, 10]);
    }

    #[test]
    fn ready_means_running_and_healthy_or_unchecked() {
        let with = |state: TaskState, health: TaskHealth| Task {
            status: Some(TaskStatus {
                state: state as i32,
                health: health as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(with(TaskState::Running, TaskHealth::None).is_ready());
        assert!(with(TaskState::Running, TaskHealth::Healthy).is_ready());
        assert!(!with(TaskState::Running, TaskHealth::Starting).is_ready());
        assert!(!with(TaskState::Running, TaskHealth::Unhealthy).is_ready());
        assert!(!with(TaskState::Starting, TaskHealth::None).is_ready());
        assert!(unhealthy(&with(TaskState::Failed, TaskHealth::Unhealthy)));
        assert!(!unhealthy(&with(TaskState::Running, TaskHealth::Starting)));
    }

    #[test]
    fn change_time_is_the_later_of_store_and_agent() {
        let mut t = Task {
            status: Some(TaskStatus {
                timestamp_ms: 7,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(changed_ms(&t), 7);
        t.timestamps = Some(Timestamps {
            created_ms: 1,
            updated_ms: 9,
        });
        assert_eq!(changed_ms(&t), 9);
        t.status.as_mut().expect("status").timestamp_ms = 11;
        assert_eq!(changed_ms(&t), 11);
        assert_eq!(created_ms(&t), 1);
        assert_eq!(observed(&Task::default()), TaskState::New as i32);
        assert!(wants_running(&Task::default()));
    }
}
