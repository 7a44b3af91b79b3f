//! Spec updates: which tasks run an outdated spec, and how many of them may be
//! replaced now (the rollout's parallelism and delay: `update_config`, or
//! `rollback_config` during a rollback; see `rollout::settings`).

use berth_proto::service_history::replaces_tasks;
#[cfg(test)]
use berth_proto::v1::ServiceSpec;
use berth_proto::v1::{Service, Task, TaskState, UpdateConfig};

use super::task::changed_ms;

/// Whether `task` runs an older spec than `service` in a way that matters (a
/// scale bumps the spec version but changes nothing a task runs).
pub fn outdated(service: &Service, task: &Task) -> bool {
    if task.spec_version >= service.spec_version {
        return false;
    }
    match (service.spec.as_ref(), task.spec.as_ref()) {
        (Some(want), Some(have)) => replaces_tasks(have, want),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// How a service's slot walk may replace outdated tasks in this pass: the
/// rollout's decision (see `rollout::begin`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Gate {
    /// The settings the replacements follow (parallelism, delay, order).
    pub config: UpdateConfig,
    /// At most this many more slots start a replacement in this pass: 0 while
    /// the rollout is paused or waits for promotion, the canaries still to
    /// start while it starts them; `None`: as the parallelism allows.
    pub limit: Option<usize>,
    /// The old task stops only once its replacement is ready (start-first
    /// order, and always for canaries).
    pub start_first: bool,
    /// No task is created in this pass: an automatic rollback replaces the
    /// spec, and a new task would run the one left behind (the next pass
    /// refills the slots with the restored spec).
    pub hold: bool,
    /// Canaries before promotion run beside the old tasks: an old task is
    /// kept even once its replacement is ready (promotion stops it).
    pub keep_outgoing: bool,
}

impl Gate {
    /// Replacements as `config` says, without a rollout's limits.
    pub fn open(config: UpdateConfig) -> Self {
        let start_first = config.order == berth_proto::v1::UpdateOrder::StartFirst as i32;
        Gate {
            config,
            limit: None,
            start_first,
            hold: false,
            keep_outgoing: false,
        }
    }

    /// No replacement at all in this pass.
    pub fn closed(config: UpdateConfig) -> Self {
        Gate {
            limit: Some(0),
            ..Gate::open(config)
        }
    }
}

/// How many outdated tasks may be replaced now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub allowed: usize,
    /// When the update delay runs out (it holds `allowed` at 0 until then).
    pub due_ms: Option<i64>,
}

/// How many outdated tasks may be replaced now under `config`, given the
/// service's current tasks (`occupants`: one per slot, desired to run or
/// finished).
pub fn budget(
    config: &UpdateConfig,
    service: &Service,
    occupants: &[&Task],
    now_ms: i64,
) -> Budget {
    let parallelism = Some(config.parallelism)
        .filter(|p| *p > 0)
        .map(|p| usize::try_from(p).unwrap_or(usize::MAX))
        .unwrap_or(usize::MAX);
    let current: Vec<&&Task> = occupants.iter().filter(|t| !outdated(service, t)).collect();
    // Replacements not ready yet (not running, or not healthy yet) are the
    // update's work in flight: their slots are unavailable.
    let in_flight = current
        .iter()
        .filter(|t| t.desired_state <= TaskState::Running as i32 && !t.is_ready())
        .count();
    let delay = config.delay_ms;
    if delay > 0 {
        if in_flight > 0 {
            return Budget {
                allowed: 0,
                due_ms: None,
            };
        }
        // The delay runs from the moment the last updated task was ready.
        let last = current
            .iter()
            .filter(|t| t.is_ready())
            .map(|t| changed_ms(t))
            .max();
        if let Some(last) = last {
            let until = last.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX));
            if now_ms < until {
                return Budget {
                    allowed: 0,
                    due_ms: Some(until),
                };
            }
        }
    }
    Budget {
        allowed: parallelism.saturating_sub(in_flight),
        due_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::service_spec::Mode;
    use berth_proto::v1::{ReplicatedMode, TaskStatus, Timestamps, UpdateConfig};

    fn config(s: &Service) -> UpdateConfig {
        s.spec
            .as_ref()
            .and_then(|s| s.update_config)
            .unwrap_or_default()
    }

    fn service(image: &str, replicas: u64, version: u64, update: Option<UpdateConfig>) -> Service {
        Service {
            id: "s".into(),
            spec: Some(ServiceSpec {
                name: "web".into(),
                image: image.into(),
                mode: Some(Mode::Replicated(ReplicatedMode { replicas })),
                update_config: update,
                ..Default::default()
            }),
            spec_version: version,
            ..Default::default()
        }
    }

    fn task_of(s: &Service, state: TaskState, at: i64) -> Task {
        Task {
            spec: s.spec.clone(),
            spec_version: s.spec_version,
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                state: state as i32,
                timestamp_ms: at,
                ..Default::default()
            }),
            timestamps: Some(Timestamps {
                created_ms: at,
                updated_ms: at,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_scale_is_not_an_update_an_image_change_is() {
        let v1 = service("a:1", 3, 1, None);
        let t = task_of(&v1, TaskState::Running, 0);
        assert!(!outdated(&v1, &t));
        let scaled = service("a:1", 5, 2, None);
        assert!(!outdated(&scaled, &t));
        let new_image = service("a:2", 5, 3, None);
        assert!(outdated(&new_image, &t));
    }

    #[test]
    fn parallelism_limits_the_tasks_in_flight() {
        let cfg = UpdateConfig {
            parallelism: 2,
            ..Default::default()
        };
        let v2 = service("a:2", 4, 2, Some(cfg));
        let v1 = service("a:1", 4, 1, None);
        let old = task_of(&v1, TaskState::Running, 0);
        let starting = task_of(&v2, TaskState::Pending, 0);
        let running = task_of(&v2, TaskState::Running, 0);
        assert_eq!(
            budget(&config(&v2), &v2, &[&old, &old, &old, &old], 0).allowed,
            2
        );
        assert_eq!(
            budget(&config(&v2), &v2, &[&starting, &old, &old, &old], 0).allowed,
            1
        );
        assert_eq!(
            budget(&config(&v2), &v2, &[&starting, &starting, &old, &old], 0).allowed,
            0
        );
        assert_eq!(
            budget(&config(&v2), &v2, &[&running, &running, &old, &old], 0).allowed,
            2
        );
        // Parallelism 0: everything at once.
        let all = service("a:2", 4, 2, None);
        assert_eq!(
            budget(&config(&all), &all, &[&old, &old], 0).allowed,
            usize::MAX
        );
    }

    #[test]
    fn the_delay_waits_after_the_last_batch_runs() {
        let cfg = UpdateConfig {
            parallelism: 1,
            delay_ms: 1_000,
            ..Default::default()
        };
        let v2 = service("a:2", 2, 2, Some(cfg));
        let v1 = service("a:1", 2, 1, None);
        let old = task_of(&v1, TaskState::Running, 0);
        assert_eq!(budget(&config(&v2), &v2, &[&old, &old], 50).allowed, 1);
        let ran = task_of(&v2, TaskState::Running, 5_000);
        assert_eq!(budget(&config(&v2), &v2, &[&ran, &old], 5_500).allowed, 0);
        assert_eq!(
            budget(&config(&v2), &v2, &[&ran, &old], 5_500).due_ms,
            Some(6_000),
            "the planner must pass again when the delay runs out"
        );
        assert_eq!(budget(&config(&v2), &v2, &[&ran, &old], 6_000).allowed, 1);
    }
}
