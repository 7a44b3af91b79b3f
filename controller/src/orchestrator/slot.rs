//! One slot's tasks (a replica number, or a node for global services): restarts
//! of tasks that ended, the one task that occupies the slot, spec updates
//! (stop-first: the old task ends before its slot is refilled; start-first:
//! the old task runs until its replacement is ready).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;

use berth_proto::v1::{Node, Service, TaskState};
use tracing::info;

use super::plan::Plan;
use super::restart::{Decision, decide};
use super::task::{created_ms, is_terminal, observed, wants_running};
use super::update::{Gate, budget, outdated};

/// A service's slots after a walk.
pub struct Slots<K> {
    /// The task kept in each slot.
    pub kept: BTreeMap<K, usize>,
    /// Slots that wait for an outdated task to stop before they are refilled.
    pub waiting: BTreeSet<K>,
    /// Slots that get a replacement beside the outdated task they keep
    /// (start-first).
    pub surge: BTreeSet<K>,
    /// How many slots began a replacement in this pass (a batch started).
    pub replaced: usize,
    /// How many slots the update has not finished with: an outdated task, a
    /// replacement not ready yet, a slot waiting or about to be refilled.
    pub unsettled: usize,
    /// Create nothing in this pass (see `Gate::hold`).
    pub hold: bool,
}

impl<K: Ord> Slots<K> {
    /// Whether slot `key` needs a new task now: it is empty (and not waiting
    /// for an outdated task to stop), or its outdated task is replaced
    /// start-first.
    pub fn needs_task(&self, plan: &Plan<'_>, key: &K) -> bool {
        if self.hold {
            return false;
        }
        if self.surge.contains(key) {
            return true;
        }
        let held = self.waiting.contains(key)
            || self
                .kept
                .get(key)
                .is_some_and(|&i| plan.task(i).desired_state <= TaskState::Complete as i32);
        !held
    }
}

/// What a service's reconciliation tells its rollout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Slots whose replacement began in this pass.
    pub replaced: usize,
    /// Every slot holds one ready task of the current spec (or one finished
    /// for good), nothing waits, nothing new was created.
    pub settled: bool,
}

impl<K> Slots<K> {
    /// The outcome, given how many tasks the caller created after the walk.
    pub fn outcome(&self, created: usize) -> Outcome {
        Outcome {
            replaced: self.replaced,
            settled: self.unsettled == 0 && created == 0,
        }
    }
}

/// Walks a service's slots: restarts, then either stops a slot's tasks (when
/// `stays` says why the slot is gone) or keeps one task in it; then replaces
/// outdated tasks as `gate` allows, in slots `refillable` says can get a new
/// task (a global service's paused node cannot).
pub fn walk<K: Ord + Clone + Debug>(
    plan: &mut Plan<'_>,
    service: &Service,
    slots: &BTreeMap<K, Vec<usize>>,
    nodes: &HashMap<&str, &Node>,
    gate: &Gate,
    stays: impl Fn(&K) -> Result<(), &'static str>,
    refillable: impl Fn(&K) -> bool,
) -> Slots<K> {
    let mut kept = BTreeMap::new();
    let mut staying = Vec::new();
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
        if refillable(key) {
            staying.push(key);
        }
        if let Some(i) = keep_one(plan, service, &occupants, gate.keep_outgoing) {
            kept.insert(key.clone(), i);
        }
    }
    // A slot waits while its outdated task stops and nothing else holds it.
    let waiting = |plan: &Plan<'_>| -> BTreeSet<K> {
        slots
            .iter()
            .filter(|(_, members)| {
                stopping_for_update(plan, service, members, nodes)
                    && occupants(plan, members).is_empty()
            })
            .map(|(key, _)| key.clone())
            .collect()
    };
    let candidates: Vec<(K, usize)> = kept
        .iter()
        .filter(|(key, _)| refillable(key))
        .map(|(key, &i)| (key.clone(), i))
        .collect();
    // Slots without a task meant to run (an old task stopping, or stopped and
    // not refilled yet) are unavailable: work in flight.
    let empty = staying
        .iter()
        .filter(|key| occupants(plan, &slots[**key]).is_empty())
        .count();
    let started = update(plan, service, &candidates, empty, gate);
    let waiting = waiting(plan);
    let surge: BTreeSet<K> = started.surge.into_iter().collect();
    let unsettled = staying
        .into_iter()
        .filter(|key| {
            if waiting.contains(*key) || surge.contains(*key) {
                return true;
            }
            let occupants = occupants(plan, &slots[*key]);
            match occupants.as_slice() {
                [i] => {
                    let t = plan.task(*i);
                    t.desired_state != TaskState::Complete as i32
                        && (outdated(service, t) || !t.is_ready())
                }
                // Empty (refilled below) or a replacement beside its old task.
                _ => true,
            }
        })
        .count();
    Slots {
        kept,
        waiting,
        surge,
        replaced: started.count,
        unsettled,
        hold: gate.hold,
    }
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
/// the others, except the outdated task a start-first replacement replaces: it
/// runs until the replacement is ready. Returns the one kept.
pub fn keep_one(
    plan: &mut Plan<'_>,
    service: &Service,
    occupants: &[usize],
    keep_outgoing: bool,
) -> Option<usize> {
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
    let replacement = plan.task(best);
    let outgoing = if !outdated(service, replacement)
        && wants_running(replacement)
        && (keep_outgoing || !replacement.is_ready())
    {
        occupants
            .iter()
            .copied()
            .filter(|&i| {
                let t = plan.task(i);
                i != best
                    && outdated(service, t)
                    && wants_running(t)
                    && observed(t) == TaskState::Running as i32
            })
            .max_by_key(|&i| (created_ms(plan.task(i)), plan.task(i).id.clone()))
    } else {
        None
    };
    for &i in occupants {
        if i == best || Some(i) == outgoing {
            continue;
        }
        let t = plan.task(i);
        if outdated(service, t) && plan.task(best).is_ready() {
            info!(task = %t.id, service = %service.id, slot = t.slot, node = %t.node_id,
                  replacement = %plan.task(best).id, "updating task: its replacement is ready, stopping the old one");
        } else {
            info!(task = %t.id, service = %service.id, slot = t.slot,
                  "second task in one slot; stopping it");
        }
        plan.set_desired(i, TaskState::Shutdown);
    }
    Some(best)
}

/// The slots whose replacement began.
pub struct Started<K> {
    pub count: usize,
    /// Those replaced start-first: each gets a new task beside its old one.
    pub surge: Vec<K>,
}

/// Replaces as many outdated occupants (`kept`: the task kept in each slot) as
/// the gate and its update settings allow (tasks that are not ready first,
/// then by slot): stop-first stops them (their slots are refilled once they
/// ended), start-first leaves a running one running and asks for a
/// replacement beside it. `empty` is how many slots hold no task meant to run
/// (an outdated task on its way down, a slot not refilled yet): work in
/// flight, like replacements not ready yet. An outdated task that is not ready
/// is down already: replacing it takes nothing more down, so it goes at once,
/// and it counts as down against the parallelism (a second update while the
/// first one's replacement still started took another slot down beside it).
pub fn update<K: Clone>(
    plan: &mut Plan<'_>,
    service: &Service,
    kept: &[(K, usize)],
    empty: usize,
    gate: &Gate,
) -> Started<K> {
    let mut started = Started {
        count: 0,
        surge: Vec::new(),
    };
    let mut stale: Vec<&(K, usize)> = kept
        .iter()
        .filter(|(_, i)| outdated(service, plan.task(*i)))
        .collect();
    if stale.is_empty() {
        return started;
    }
    let current: Vec<&berth_proto::v1::Task> = kept.iter().map(|(_, i)| plan.task(*i)).collect();
    let budget = budget(&gate.config, service, &current, plan.now_ms);
    if let Some(at) = budget.due_ms {
        plan.due_at(at);
    }
    let down = stale
        .iter()
        .filter(|(_, i)| !plan.task(*i).is_ready())
        .count();
    let allowed = (budget.allowed.saturating_sub(empty).saturating_sub(down) + down)
        .min(gate.limit.unwrap_or(usize::MAX));
    stale.sort_by_key(|(_, i)| {
        let t = plan.task(*i);
        (
            t.is_ready(),
            observed(t) == TaskState::Running as i32,
            t.slot,
            t.node_id.clone(),
        )
    });
    for (key, i) in stale.into_iter().take(allowed) {
        let t = plan.task(*i);
        let keep_running = gate.start_first && observed(t) == TaskState::Running as i32;
        info!(task = %t.id, service = %service.id, slot = t.slot, node = %t.node_id,
              from = t.spec_version, to = service.spec_version, start_first = keep_running,
              "updating task");
        if keep_running {
            started.surge.push(key.clone());
        } else {
            plan.set_desired(*i, TaskState::Shutdown);
        }
        started.count += 1;
    }
    started
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
    fn a_start_first_replacement_keeps_the_old_task_until_it_is_ready() {
        let s = service(RestartCondition::Any);
        let mut old = task("old", TaskState::Running, TaskState::Running, 1);
        old.spec_version = 0;
        old.spec = Some(ServiceSpec {
            image: "old".into(),
            ..Default::default()
        });
        let mut new = task("new", TaskState::Running, TaskState::Starting, 2);
        new.spec = s.spec.clone();
        let tasks = vec![old, new];
        let mut plan = Plan::new(&tasks, 10);
        assert_eq!(keep_one(&mut plan, &s, &[0, 1], false), Some(1));
        assert_eq!(plan.task(0).desired_state, TaskState::Running as i32);
        // Ready: the old one stops.
        let mut tasks = tasks;
        if let Some(st) = tasks[1].status.as_mut() {
            st.state = TaskState::Running as i32;
        }
        let mut plan = Plan::new(&tasks, 10);
        assert_eq!(keep_one(&mut plan, &s, &[0, 1], false), Some(1));
        assert_eq!(plan.task(0).desired_state, TaskState::Shutdown as i32);
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
        assert_eq!(keep_one(&mut plan, &s, &[0, 1, 2], false), Some(1));
        assert_eq!(plan.task(0).desired_state, TaskState::Shutdown as i32);
        assert_eq!(plan.task(2).desired_state, TaskState::Shutdown as i32);
        assert_eq!(plan.task(1).desired_state, TaskState::Running as i32);
    }
}
