//! Short lower-case names of the API's enums, as the CLI prints and parses them.

use crate::v1::update_status::State as UpdateState;
use crate::v1::{NodeAvailability, NodeStatus, TaskHealth, TaskState};

impl TaskState {
    /// "running", "pending", ...
    pub fn short_name(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Preparing => "preparing",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Orphaned => "orphaned",
        }
    }

    /// True once the task can no longer run (complete, shutdown, failed, ...).
    pub fn is_terminal(self) -> bool {
        self >= TaskState::Complete
    }
}

impl NodeAvailability {
    pub fn short_name(self) -> &'static str {
        match self {
            NodeAvailability::Active => "active",
            NodeAvailability::Pause => "pause",
            NodeAvailability::Drain => "drain",
        }
    }

    /// Parses "active", "pause" or "drain".
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(NodeAvailability::Active),
            "pause" => Some(NodeAvailability::Pause),
            "drain" => Some(NodeAvailability::Drain),
            _ => None,
        }
    }
}

impl TaskHealth {
    /// "healthy", "unhealthy", "starting", or "" for a task without a check.
    pub fn short_name(self) -> &'static str {
        match self {
            TaskHealth::None => "",
            TaskHealth::Starting => "starting",
            TaskHealth::Healthy => "healthy",
            TaskHealth::Unhealthy => "unhealthy",
        }
    }
}

impl NodeStatus {
    pub fn short_name(self) -> &'static str {
        match self {
            NodeStatus::Unknown => "unknown",
            NodeStatus::Ready => "ready",
            NodeStatus::Down => "down",
        }
    }
}

impl UpdateState {
    /// "updating", "paused", "completed", "rollback_started", ...
    pub fn short_name(self) -> &'static str {
        match self {
            UpdateState::None => "",
            UpdateState::Updating => "updating",
            UpdateState::Paused => "paused",
            UpdateState::Completed => "completed",
            UpdateState::RollbackStarted => "rollback_started",
            UpdateState::RollbackCompleted => "rollback_completed",
            UpdateState::RollbackPaused => "rollback_paused",
        }
    }

    /// True while tasks are being replaced (not paused, not ended).
    pub fn is_rolling(self) -> bool {
        matches!(self, UpdateState::Updating | UpdateState::RollbackStarted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_are_the_end_of_the_order() {
        assert!(!TaskState::Running.is_terminal());
        assert!(TaskState::Complete.is_terminal());
        assert!(TaskState::Orphaned.is_terminal());
        assert_eq!(TaskState::Failed.short_name(), "failed");
    }

    #[test]
    fn availability_round_trips() {
        for a in [
            NodeAvailability::Active,
            NodeAvailability::Pause,
            NodeAvailability::Drain,
        ] {
            assert_eq!(NodeAvailability::parse(a.short_name()), Some(a));
        }
        assert_eq!(NodeAvailability::parse("gone"), None);
    }
}
