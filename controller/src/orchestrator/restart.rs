//! Restart policy: whether and when a task that ended on its own is replaced.

use berth_proto::v1::Task;
use berth_proto::v1::{RestartCondition, RestartPolicy, TaskState};

use super::task::{changed_ms, created_ms, observed};

/// Swarm's default when a service sets no policy: any exit restarts, after 5 s
/// (a crash loop must not hammer the cluster).
pub const DEFAULT_POLICY: RestartPolicy = RestartPolicy {
    condition: RestartCondition::Any as i32,
    delay_ms: 5_000,
    max_attempts: 0,
    window_ms: 0,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Replace the task now.
    Now,
    /// Replace it at this time (Unix ms): the restart delay runs.
    At(i64),
    /// Never: the slot stays finished (why, for the log).
    Never(String),
}

/// Decides for `ended`, a task desired RUNNING whose observed state is terminal.
/// `slot` holds the other tasks of its slot (history included).
pub fn decide(
    policy: Option<&RestartPolicy>,
    ended: &Task,
    slot: &[&Task],
    now_ms: i64,
) -> Decision {
    let policy = policy.unwrap_or(&DEFAULT_POLICY);
    let state = observed(ended);
    let exit_code = ended.status.as_ref().and_then(|s| s.exit_code);
    let succeeded = state == TaskState::Complete as i32 || exit_code == Some(0);
    match RestartCondition::try_from(policy.condition).unwrap_or(RestartCondition::Any) {
        RestartCondition::None => return Decision::Never("restart condition is none".into()),
        RestartCondition::OnFailure if succeeded => {
            return Decision::Never("it completed and the restart condition is on-failure".into());
        }
        RestartCondition::OnFailure | RestartCondition::Any => {}
    }
    if policy.max_attempts > 0 {
        let since = if policy.window_ms == 0 {
            i64::MIN
        } else {
            now_ms.saturating_sub(i64::try_from(policy.window_ms).unwrap_or(i64::MAX))
        };
        let earlier = slot
            .iter()
            .filter(|t| t.id != ended.id && ended_on_its_own(t) && created_ms(t) >= since)
            .count() as u64;
        if earlier >= policy.max_attempts {
            return Decision::Never(format!(
                "it was restarted {earlier} times already (max attempts {})",
                policy.max_attempts
            ));
        }
    }
    let at = changed_ms(ended).saturating_add(i64::try_from(policy.delay_ms).unwrap_or(i64::MAX));
    if now_ms < at {
        Decision::At(at)
    } else {
        Decision::Now
    }
}

/// An earlier task of the slot that ended by itself and was replaced (tasks the
/// orchestrator stopped end SHUTDOWN; tasks of a lost node end ORPHANED).
fn ended_on_its_own(task: &Task) -> bool {
    let state = observed(task);
    task.desired_state > TaskState::Complete as i32
        && (state == TaskState::Complete as i32
            || state == TaskState::Failed as i32
            || state == TaskState::Rejected as i32)
}

/// How many finished tasks a slot keeps as history: the cluster's limit
/// (`--task-history-limit`), but never fewer than `decide` needs to count a
/// `max_attempts` policy's restarts.
pub fn history_to_keep(limit: usize, policy: Option<&RestartPolicy>) -> usize {
    match policy.map(|p| p.max_attempts).unwrap_or(0) {
        0 => limit,
        attempts => limit.max(usize::try_from(attempts.saturating_add(1)).unwrap_or(usize::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{TaskStatus, Timestamps};

    fn ended(id: &str, state: TaskState, exit: Option<i32>, at: i64) -> Task {
        Task {
            id: id.into(),
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                state: state as i32,
                exit_code: exit,
                timestamp_ms: at,
                ..Default::default()
            }),
            timestamps: Some(Timestamps {
                created_ms: at - 10,
                updated_ms: at,
            }),
            ..Default::default()
        }
    }

    fn policy(condition: RestartCondition, delay: u64, max: u64, window: u64) -> RestartPolicy {
        RestartPolicy {
            condition: condition as i32,
            delay_ms: delay,
            max_attempts: max,
            window_ms: window,
        }
    }

    #[test]
    fn condition_any_restarts_everything_none_nothing() {
        let p = policy(RestartCondition::Any, 0, 0, 0);
        let done = ended("t", TaskState::Complete, Some(0), 100);
        assert_eq!(decide(Some(&p), &done, &[], 100), Decision::Now);
        let p = policy(RestartCondition::None, 0, 0, 0);
        let failed = ended("t", TaskState::Failed, Some(1), 100);
        assert!(matches!(
            decide(Some(&p), &failed, &[], 100),
            Decision::Never(_)
        ));
    }

    #[test]
    fn on_failure_skips_clean_exits() {
        let p = policy(RestartCondition::OnFailure, 0, 0, 0);
        let failed = ended("t", TaskState::Failed, Some(2), 100);
        assert_eq!(decide(Some(&p), &failed, &[], 100), Decision::Now);
        let done = ended("t", TaskState::Complete, None, 100);
        assert!(matches!(
            decide(Some(&p), &done, &[], 100),
            Decision::Never(_)
        ));
        let zero = ended("t", TaskState::Shutdown, Some(0), 100);
        assert!(matches!(
            decide(Some(&p), &zero, &[], 100),
            Decision::Never(_)
        ));
        // Stopped without being asked, no exit code: a failure.
        let killed = ended("t", TaskState::Shutdown, None, 100);
        assert_eq!(decide(Some(&p), &killed, &[], 100), Decision::Now);
    }

    #[test]
    fn the_delay_runs_from_the_end_of_the_task() {
        let p = policy(RestartCondition::Any, 5_000, 0, 0);
        let failed = ended("t", TaskState::Failed, Some(1), 1_000);
        assert_eq!(decide(Some(&p), &failed, &[], 1_000), Decision::At(6_000));
        assert_eq!(decide(Some(&p), &failed, &[], 5_999), Decision::At(6_000));
        assert_eq!(decide(Some(&p), &failed, &[], 6_000), Decision::Now);
        // No policy: Swarm's default delay of 5 s.
        assert_eq!(decide(None, &failed, &[], 1_000), Decision::At(6_000));
    }

    #[test]
    fn max_attempts_counts_earlier_failures_in_the_window() {
        let p = policy(RestartCondition::Any, 0, 2, 1_000);
        let mut old1 = ended("o1", TaskState::Failed, Some(1), 500);
        old1.desired_state = TaskState::Shutdown as i32;
        let mut old2 = ended("o2", TaskState::Failed, Some(1), 1_500);
        old2.desired_state = TaskState::Shutdown as i32;
        // Stopped by the orchestrator (update, drain): not an attempt.
        let mut stopped = ended("s", TaskState::Shutdown, None, 1_600);
        stopped.desired_state = TaskState::Shutdown as i32;
        let now = ended("t", TaskState::Failed, Some(1), 1_800);
        let slot = [&old1, &old2, &stopped, &now];
        // Window [800, 1800]: only o2 counts.
        assert_eq!(decide(Some(&p), &now, &slot, 1_800), Decision::Now);
        // Window forever: both count, the limit is reached.
        let forever = policy(RestartCondition::Any, 0, 2, 0);
        assert!(matches!(
            decide(Some(&forever), &now, &slot, 1_800),
            Decision::Never(why) if why.contains("restarted 2 times")
        ));
    }

    #[test]
    fn history_covers_max_attempts() {
        assert_eq!(history_to_keep(5, None), 5);
        assert_eq!(history_to_keep(2, None), 2);
        let p = policy(RestartCondition::Any, 0, 9, 0);
        assert_eq!(history_to_keep(5, Some(&p)), 10);
        assert_eq!(history_to_keep(20, Some(&p)), 20);
    }
}
