//! What a task's status says, read the same way by the orchestrator (a
//! replacement is ready), the dispatcher (a task serves) and the CLI (a slot
//! is done).

use crate::v1::{Task, TaskHealth, TaskState};

impl Task {
    /// Running, and healthy if it has a health check (the agent reports
    /// STARTING until the first check passes, NONE when there is no check):
    /// the task serves, a start-first update may stop the task it replaces, a
    /// rollout counts it done.
    pub fn is_ready(&self) -> bool {
        self.status.as_ref().is_some_and(|s| {
            s.state == TaskState::Running as i32
                && (s.health == TaskHealth::None as i32 || s.health == TaskHealth::Healthy as i32)
        })
    }

    /// The name people see for the task (`ps`, `volume ls`): a one-off's
    /// is its own name, a replicated task's `service.slot`, a global task's
    /// `service.NODE` (`node`: its node's name).
    pub fn display_name(&self, node: &str) -> String {
        if self.spec.as_ref().is_some_and(|s| s.one_off) {
            self.service_name.clone()
        } else if self.slot == 0 {
            format!("{}.{node}", self.service_name)
        } else {
            format!("{}.{}", self.service_name, self.slot)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::v1::{Task, TaskHealth, TaskState, TaskStatus};

    fn task(state: TaskState, health: TaskHealth) -> Task {
        Task {
            status: Some(TaskStatus {
                state: state as i32,
                health: health as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ready_is_running_and_not_failing_a_check() {
        assert!(task(TaskState::Running, TaskHealth::None).is_ready());
        assert!(task(TaskState::Running, TaskHealth::Healthy).is_ready());
        assert!(!task(TaskState::Running, TaskHealth::Starting).is_ready());
        assert!(!task(TaskState::Running, TaskHealth::Unhealthy).is_ready());
        assert!(!task(TaskState::Starting, TaskHealth::None).is_ready());
        assert!(!Task::default().is_ready());
    }
}
