//! One slot's tasks (a replica number, or a node for global services): restarts
//! of tasks that ended, the one task that occupies the slot, spec updates.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;

use berth_proto::v1::{Node, Service, TaskState};
use tracing::info;

use super::plan::Plan;
use super::restart::{Decision, decide};
use super::task::{created_ms, is_terminal, observed, wants_running};
use super::update::{budget, outdated};

/// A service's slots after a walk: the task kept in each, and the slots that
/// wait for an outdated task to stop before they are refilled.
pub struct Slots<K> {
    pub kept: BTreeMap<K, usize>,
    pub waiting: BTreeSet<K>,
}

impl<K: Ord> Slots<K> {
    /// Whether slot `key` needs no new task now.
    pub fn held(&self, plan: &Plan<'_>, key: &K) -> bool {
        self.waiting.contains(key)
            || self
                .kept
                .get(key)
                .is_some_and(|&i| plan.task(i).desired_state <= TaskState::Complete as i32)
    }
}

/// Walks a service's slots: restarts, then either stops a slot's tasks (when
/// `stays` says why the slot is gone) or keeps one task in it; then replaces
/// outdated tasks as the update settings allow.
pub fn walk<K: Ord + Clone + Debug>(
    plan: &mut Plan<'_>,
    service: &Service,
    slots: &BTreeMap<K, Vec<usize>>,
    nodes: &HashMap<&str, &Node>,
    stays: impl Fn(&K) -> Result<(), &'static str>,
) -> Slots<K> {
    let mut kept = BTreeMap::new();
    for (key, members) in slots {
        restart(plan, service, members);
        let occupants = occupants(plan, members);
        if let Err(why) = stays(key) {
            for i in occupants {
                info!(task = %plan.task(i).id, service = %service.id, slot = ?key, why,
                      "stopping task");
                plan.set_desired(i, TaskState::Shutdown);
            }
            continue;
        }
        if let Some(i) = keep_one(plan, service, &occupants) {
            kept.insert(key.clone(), i);
        }
    }
    let waiting = |plan: &Plan<'_>| -> BTreeSet<K> {
        slots
            .iter()
            .filter(|(_, members)| stopping_for_update(plan, service, members, nodes))
            .map(|(key, _)| key.clone())
            .collect()
    };
    let current: Vec<usize> = kept.values().copied().collect();
    update(plan, service, &current, waiting(plan).len());
    let waiting = if starts_first(service) {
        BTreeSet::new()
    } else {
        waiting(plan)
    };
    Slots { kept, waiting }
}

/// Applies the restart policy to the slot's tasks that ended while desired to
/// run: replaced now (desired SHUTDOWN, the slot empties and is refilled), later
/// (left as is until the delay passed) or never (desired COMPLETE: the slot
/// stays finished).
pub fn restart(plan: &mut Plan<'_>, service: &Service, slot: &[usize]) {
    let policy = service
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_ref());
    for &i in slot {
        let task = plan.task(i);
        if !wants_running(task) || !is_terminal(observed(task)) {
            continue;
        }
        let history: Vec<&berth_proto::v1::Task> = slot.iter().map(|&j| plan.task(j)).collect();
        match decide(policy, task, &history, plan.now_ms) {
            Decision::Now => {
                info!(task = %task.id, service = %service.id, slot = task.slot, node = %task.node_id,
                      state = observed(task), "task ended; replacing it");
                plan.set_desired(i, TaskState::Shutdown);
            }
            Decision::At(at) => plan.due_at(at),
            Decision::Never(why) => {
                info!(task = %task.id, service = %service.id, slot = task.slot, %why,
                      "task ended; not restarting it");
                plan.set_desired(i, TaskState::Complete);
            }
        }
    }
}

/// The tasks that hold the slot: desired to run, or finished for good.
pub fn occupants(plan: &Plan<'_>, slot: &[usize]) -> Vec<usize> {
    slot.iter()
        .copied()
        .filter(|&i| plan.task(i).desired_state <= TaskState::Complete as i32)
        .collect()
}

/// Keeps one occupant (current spec first, then running, then newest) and stops
/// the others. Returns the one kept.
pub fn keep_one(plan: &mut Plan<'_>, service: &Service, occupants: &[usize]) -> Option<usize> {
    let best = occupants.iter().copied().max_by_key(|&i| {
        let t = plan.task(i);
        (
            !outdated(service, t),
            wants_running(t),
            !is_terminal(observed(t)),
            observed(t),
            created_ms(t),
            t.id.clone(),
        )
    })?;
    for &i in occupants {
        if i != best {
            info!(task = %plan.task(i).id, service = %service.id, slot = plan.task(i).slot,
                  "second task in one slot; stopping it");
            plan.set_desired(i, TaskState::Shutdown);
        }
    }
    Some(best)
}

/// Stops as many outdated occupants as the update settings allow (tasks that do
/// not run first, then by slot); their slots are refilled with the new spec.
/// `stopping` is how many outdated tasks are still on their way down (work in
/// flight, like replacements not running yet).
pub fn update(plan: &mut Plan<'_>, service: &Service, occupants: &[usize], stopping: usize) {
    let mut stale: Vec<usize> = occupants
        .iter()
        .copied()
        .filter(|&i| outdated(service, plan.task(i)))
        .collect();
    if stale.is_empty() {
        return;
    }
    let current: Vec<&berth_proto::v1::Task> = occupants.iter().map(|&i| plan.task(i)).collect();
    let budget = budget(service, &current, plan.now_ms);
    if let Some(at) = budget.due_ms {
        plan.due_at(at);
    }
    let allowed = budget.allowed.saturating_sub(stopping);
    stale.sort_by_key(|&i| {
        let t = plan.task(i);
        (
            observed(t) == TaskState::Running as i32,
            t.slot,
            t.node_id.clone(),
        )
    });
    for &i in stale.iter().take(allowed) {
        let t = plan.task(i);
        info!(task = %t.id, service = %service.id, slot = t.slot, node = %t.node_id,
              from = t.spec_version, to = service.spec_version, "updating task: stopping the old one");
        plan.set_desired(i, TaskState::Shutdown);
    }
}

/// Whether the slot must wait before it is refilled: with stop-first updates
/// (the default), an outdated task stopped for the update must have ended first,
/// as long as its node is there to stop it (a lost node never reports).
pub fn stopping_for_update(
    plan: &Plan<'_>,
    service: &Service,
    slot: &[usize],
    nodes: &HashMap<&str, &Node>,
) -> bool {
    slot.iter().any(|&i| {
        let t = plan.task(i);
        t.desired_state > TaskState::Complete as i32
            && !is_terminal(observed(t))
            && outdated(service, t)
            && nodes.get(t.node_id.as_str()).is_some_and(|n| {
                n.status == berth_proto::v1::NodeStatus::Ready as i32
                    && n.availability != berth_proto::v1::NodeAvailability::Drain as i32
            })
    })
}

/// Start-first updates create the replacement without waiting for the old task.
pub fn starts_first(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.update_config.as_ref())
        .is_some_and(|c| c.order == berth_proto::v1::UpdateOrder::StartFirst as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{RestartCondition, RestartPolicy, ServiceSpec, Task, TaskStatus};

    fn service(condition: RestartCondition) -> Service {
        Service {
            id: "s".into(),
            spec_version: 1,
            spec: Some(ServiceSpec {
                restart_policy: Some(RestartPolicy {
                    condition: condition as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn task(id: &str, desired: TaskState, state: TaskState, created: i64) -> Task {
        Task {
            id: id.into(),
            slot: 1,
            spec_version: 1,
            desired_state: desired as i32,
            status: Some(TaskStatus {
                state: state as i32,
                ..Default::default()
            }),
            timestamps: Some(berth_proto::v1::Timestamps {
                created_ms: created,
                updated_ms: created,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_ended_task_is_stopped_for_replacement_or_finished() {
        let s = service(RestartCondition::Any);
        let tasks = vec![task("a", TaskState::Running, TaskState::Failed, 0)];
        let mut plan = Plan::new(&tasks, 10);
        restart(&mut plan, &s, &[0]);
        assert_eq!(plan.task(0).desired_state, TaskState::Shutdown as i32);
        assert!(occupants(&plan, &[0]).is_empty());

        let s = service(RestartCondition::None);
        let mut plan = Plan::new(&tasks, 10);
        restart(&mut plan, &s, &[0]);
        assert_eq!(plan.task(0).desired_state, TaskState::Complete as i32);
        assert_eq!(occupants(&plan, &[0]), vec![0]);
    }

    #[test]
    fn keeps_the_running_newest_task_of_a_slot() {
        let s = service(RestartCondition::Any);
        let tasks = vec![
            task("old", TaskState::Running, TaskState::Running, 1),
            task("new", TaskState::Running, TaskState::Running, 2),
            task("pending", TaskState::Running, TaskState::Pending, 3),
        ];
        let mut plan = Plan::new(&tasks, 10);
        assert_eq!(keep_one(&mut plan, &s, &[0, 1, 2]), Some(1));
        assert_eq!(plan.task(0).desired_state, TaskState::Shutdown as i32);
        assert_eq!(plan.task(2).desired_state, TaskState::Shutdown as i32);
        assert_eq!(plan.task(1).desired_state, TaskState::Running as i32);
    }
}
