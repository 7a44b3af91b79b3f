//! A rollout's view of a service's tasks: which are its new tasks, which of
//! them failed and why, and, when it makes no progress, what they wait for.

use std::collections::{BTreeMap, BTreeSet};

use berth_proto::v1::{Service, Task, TaskHealth, TaskState};

use crate::orchestrator::task::{is_terminal, observed, unhealthy, wants_running};
use crate::orchestrator::update::outdated;

/// A task the rollout started: of its target version or later (a scale during
/// the rollout writes a later one) and of the current spec. A rollback's tasks
/// have the rollback's version.
pub fn is_new(service: &Service, to_version: u64, task: &Task) -> bool {
    task.spec_version >= to_version && !outdated(service, task)
}

/// The slot a task fills: its replica number, or its node for a global task.
pub fn slot_key(task: &Task) -> (u64, &str) {
    if task.slot == 0 {
        (0, task.node_id.as_str())
    } else {
        (task.slot, "")
    }
}

/// How many slots the tasks fill.
pub fn slots<'a>(tasks: impl IntoIterator<Item = &'a Task>) -> usize {
    tasks
        .into_iter()
        .map(slot_key)
        .collect::<BTreeSet<_>>()
        .len()
}

/// Why a new task counts as a failure, if it does: it failed or was rejected,
/// failed its health check, or ended while meant to run. A task whose node was
/// lost (ORPHANED) did nothing wrong.
pub fn failure(task: &Task) -> Option<String> {
    let status = task.status.as_ref()?;
    let state = observed(task);
    let ended_unasked = wants_running(task)
        && (state == TaskState::Complete as i32 || state == TaskState::Shutdown as i32);
    let counts = state == TaskState::Failed as i32
        || state == TaskState::Rejected as i32
        || (state == TaskState::Running as i32 && unhealthy(task))
        || ended_unasked;
    if !counts {
        return None;
    }
    let unhealthy_now = state == TaskState::Running as i32;
    let what = if unhealthy_now {
        let m = status.message.as_str();
        m.strip_prefix("running, unhealthy: ")
            .unwrap_or(m)
            .to_string()
    } else if !status.error.is_empty() {
        status.error.clone()
    } else if let Some(code) = status.exit_code {
        format!("exited with code {code}")
    } else if !status.message.is_empty() {
        status.message.clone()
    } else {
        String::new()
    };
    let state_name = if unhealthy_now {
        "turned unhealthy"
    } else {
        TaskState::try_from(state).map_or("failed", |s| s.short_name())
    };
    let node = if task.node_id.is_empty() {
        String::new()
    } else {
        format!(" on node {}", task.node_id)
    };
    Some(if what.is_empty() {
        format!("task {}{node} {state_name}", task.id)
    } else {
        format!("task {}{node} {state_name}: {what}", task.id)
    })
}

/// Whether a failing task failed within the monitor window of its start: it
/// never ran, or it ended (or turned unhealthy) at most `monitor_ms` after it
/// was first reported running. A task that ran longer and then failed is the
/// restart policy's business, not the rollout's (as in Swarm).
pub fn within_monitor(task: &Task, monitor_ms: u64) -> bool {
    if task.running_since_ms == 0 {
        return true;
    }
    // The leader's clock on both sides: the dispatcher stamps `updated_ms`
    // when it stores the report of the failure (or of the health turning).
    let failed_at = task.timestamps.as_ref().map_or(0, |t| t.updated_ms);
    failed_at.saturating_sub(task.running_since_ms) <= i64::try_from(monitor_ms).unwrap_or(i64::MAX)
}

/// "2 of 4 new tasks failed (max failure ratio 0.25): task a on node n failed:
/// exited with code 1; task b ..." (at most three named).
pub fn failures_text(failed: usize, updated: usize, ratio: f32, reasons: &[String]) -> String {
    let mut text = format!(
        "{failed} of {} new {} failed (max failure ratio {ratio})",
        updated.max(failed),
        plural(updated.max(failed), "task", "tasks")
    );
    if !reasons.is_empty() {
        text.push_str(": ");
        text.push_str(
            &reasons
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        );
        if reasons.len() > 3 {
            text.push_str(&format!("; and {} more", reasons.len() - 3));
        }
    }
    text
}

/// What keeps a rollout from progressing, from the tasks of the service:
/// "2 tasks pending: no node has 4 GiB of memory free: 3 nodes checked; 1 task
/// running, not healthy yet" (the largest groups first, at most three). None
/// when nothing does: every task meant to run is new and ready.
pub fn stuck(service: &Service, to_version: u64, tasks: &[&Task]) -> Option<String> {
    let mut groups: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks.iter().filter(|t| wants_running(t)) {
        let state = observed(task);
        let message = task
            .status
            .as_ref()
            .map(|s| {
                if s.error.is_empty() {
                    &s.message
                } else {
                    &s.error
                }
            })
            .filter(|m| !m.is_empty());
        let name = TaskState::try_from(state).map_or("unknown", |s| s.short_name());
        let what = if !is_new(service, to_version, task) {
            format!("still at version {}", task.spec_version)
        } else if task.is_ready() {
            continue;
        } else if state == TaskState::Running as i32 {
            let health = task.status.as_ref().map_or(0, |s| s.health);
            if health == TaskHealth::Unhealthy as i32 {
                "running, unhealthy".to_string()
            } else {
                "running, not healthy yet".to_string()
            }
        } else if is_terminal(state) {
            match message {
                Some(m) => format!("{name}, waiting to restart: {m}"),
                None => format!("{name}, waiting to restart"),
            }
        } else {
            match message {
                Some(m) => format!("{name}: {m}"),
                None => name.to_string(),
            }
        };
        *groups.entry(what).or_default() += 1;
    }
    if groups.is_empty() {
        return None;
    }
    let mut sorted: Vec<(String, usize)> = groups.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let text = sorted
        .into_iter()
        .take(3)
        .map(|(what, n)| format!("{n} {} {what}", plural(n, "task", "tasks")))
        .collect::<Vec<_>>()
        .join("; ");
    Some(text)
}

fn plural(n: usize, one: &'static str, more: &'static str) -> &'static str {
    if n == 1 { one } else { more }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{ServiceSpec, TaskStatus};

    #[test]
    fn a_failure_counts_within_the_monitor_window_of_the_tasks_start() {
        let failed_at = |running_since_ms: i64, at: i64| Task {
            running_since_ms,
            timestamps: Some(berth_proto::v1::Timestamps {
                created_ms: 0,
                updated_ms: at,
            }),
            ..Default::default()
        };
        // Never ran: a failure to start always counts.
        assert!(within_monitor(&failed_at(0, 60_000), 1_000));
        assert!(within_monitor(&failed_at(10_000, 10_800), 1_000));
        assert!(within_monitor(&failed_at(10_000, 11_000), 1_000));
        // Ran longer than the window, then crashed: the restart policy's.
        assert!(!within_monitor(&failed_at(10_000, 11_001), 1_000));
    }

    fn task(id: &str, version: u64, image: &str, desired: TaskState, status: TaskStatus) -> Task {
        Task {
            id: id.into(),
            slot: 1,
            node_id: "n1".into(),
            spec_version: version,
            spec: Some(ServiceSpec {
                image: image.into(),
                ..Default::default()
            }),
            desired_state: desired as i32,
            status: Some(status),
            ..Default::default()
        }
    }

    fn status(state: TaskState, message: &str, error: &str) -> TaskStatus {
        TaskStatus {
            state: state as i32,
            message: message.into(),
            error: error.into(),
            ..Default::default()
        }
    }

    #[test]
    fn what_counts_as_a_failure() {
        use TaskState::*;
        let failed = task(
            "a",
            2,
            "x:2",
            Running,
            status(Failed, "failed", "exited with code 3"),
        );
        assert_eq!(
            failure(&failed).as_deref(),
            Some("task a on node n1 failed: exited with code 3")
        );
        let mut sick = task(
            "b",
            2,
            "x:2",
            Running,
            status(Running, "running, unhealthy: 503", ""),
        );
        assert_eq!(failure(&sick), None, "running, health not reported");
        if let Some(s) = sick.status.as_mut() {
            s.health = TaskHealth::Unhealthy as i32;
        }
        assert_eq!(
            failure(&sick).as_deref(),
            Some("task b on node n1 turned unhealthy: 503")
        );
        let exited = task(
            "c",
            2,
            "x:2",
            Running,
            status(Complete, "exited with code 0", ""),
        );
        assert!(failure(&exited).is_some(), "a service task is meant to run");
        let stopped = task("d", 2, "x:2", Shutdown, status(Shutdown, "stopped", ""));
        assert_eq!(failure(&stopped), None, "stopped on purpose");
        let lost = task("e", 2, "x:2", Running, status(Orphaned, "node removed", ""));
        assert_eq!(failure(&lost), None);
    }

    #[test]
    fn a_stuck_rollout_says_what_its_tasks_wait_for() {
        use TaskState::*;
        let service = Service {
            spec: Some(ServiceSpec {
                image: "x:2".into(),
                ..Default::default()
            }),
            spec_version: 2,
            ..Default::default()
        };
        let no_room = "no node has 4 GiB of memory free: 3 nodes checked";
        let tasks = [
            task("a", 2, "x:2", Running, status(Pending, no_room, "")),
            task("b", 2, "x:2", Running, status(Pending, no_room, "")),
            task("c", 2, "x:2", Running, status(Running, "running", "")),
            task("d", 1, "x:1", Running, status(Running, "running", "")),
            task("e", 1, "x:1", Shutdown, status(Running, "running", "")),
        ];
        let refs: Vec<&Task> = tasks.iter().collect();
        assert_eq!(
            stuck(&service, 2, &refs),
            Some(format!(
                "2 tasks pending: {no_room}; 1 task still at version 1"
            ))
        );
        assert_eq!(
            stuck(&service, 2, &refs[2..3]),
            None,
            "only ready new tasks"
        );
        assert_eq!(
            failures_text(1, 4, 0.0, &["task a failed".into()]),
            "1 of 4 new tasks failed (max failure ratio 0): task a failed"
        );
    }
}
