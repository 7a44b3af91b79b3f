//! "How many tasks": turns services into tasks. A plain function of the cluster
//! state (and a clock value and an id generator passed in) to store operations.
//!
//! Replicated services keep one task per slot 1..=replicas, global services one
//! per eligible node. Tasks that end are replaced by new ones in the same slot
//! under the restart policy; tasks of lost, down or drained nodes are replaced
//! elsewhere; outdated tasks are replaced when the spec changes; tasks of
//! removed services are stopped and reaped, and each slot keeps a short history.
//! Each service's rollout (update or rollback) is a state machine kept in its
//! `update_status` (see [`rollout`]): it decides how many outdated tasks the
//! pass replaces, and the pass writes the status as the rollout moves.

pub mod global;
pub mod nodes;
pub mod one_off;
pub mod plan;
pub mod reaper;
pub mod replicated;
pub mod restart;
pub mod rollout;
pub mod slot;
pub mod task;
pub mod update;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod rollout_tests;
#[cfg(test)]
mod tests;

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};

use berth_proto::store::Op;
use berth_proto::v1::service_spec::Mode;
use berth_proto::v1::{Node, Service, Task};

use plan::Plan;

pub use crate::store::ClusterView;

/// One reconciliation pass over every service. `now_ms` is the clock (restart
/// and update delays are measured against it); `new_id` names new tasks.
/// Returns puts at the version read (Expect::Version), creates (Expect::Absent)
/// and deletes (Expect::Version): a concurrent change fails the commit and the
/// pass is simply computed again.
pub fn orchestrate<T: Borrow<Task>>(
    view: &ClusterView<T>,
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<Op> {
    orchestrate_timed(view, now_ms, new_id).0
}

/// [`orchestrate`], and the earliest time a waiting decision (a restart or
/// update delay, a rollout's monitor window, progress deadline or
/// auto-promotion) falls due: nothing else needs a pass before then.
pub fn orchestrate_timed<T: Borrow<Task>>(
    view: &ClusterView<T>,
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> (Vec<Op>, Option<i64>) {
    let mut plan = Plan::new(view.tasks.iter().map(Borrow::borrow), now_ms);
    let nodes: HashMap<&str, &Node> = view.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut by_service: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, task) in view.tasks.iter().map(Borrow::borrow).enumerate() {
        by_service
            .entry(task.service_id.as_str())
            .or_default()
            .push(i);
    }
    let services: HashMap<&str, &Service> =
        view.services.iter().map(|s| (s.id.as_str(), s)).collect();
    for (service_id, tasks) in &by_service {
        if !services.contains_key(service_id) {
            nodes::check(&mut plan, tasks, &nodes, nodes::OnDown::Keep);
            reaper::removed_service(&mut plan, tasks);
        }
    }
    let empty = Vec::new();
    let history_limit = crate::cluster_settings::task_history_limit(&view.settings);
    for service in &view.services {
        let tasks = by_service.get(service.id.as_str()).unwrap_or(&empty);
        let spec = service.spec.as_ref();
        let keep =
            restart::history_to_keep(history_limit, spec.and_then(|s| s.restart_policy.as_ref()));
        let mode = spec.and_then(|s| s.mode.as_ref());
        // The API gives every service a mode; one without is left alone.
        if mode.is_none() {
            continue;
        }
        if one_off::auto_remove(&mut plan, service, tasks)
            || one_off::reconcile(&mut plan, service, tasks, &nodes)
        {
            continue;
        }
        let (rollout, gate) = rollout::begin(&mut plan, service, tasks);
        let outcome = match mode {
            Some(Mode::Global(_)) => {
                let outcome = global::reconcile(
                    &mut plan,
                    service,
                    tasks,
                    &view.nodes,
                    &nodes,
                    &gate,
                    new_id,
                );
                reaper::trim_history(&mut plan, tasks, keep, |t| t.node_id.clone());
                outcome
            }
            Some(Mode::Replicated(r)) => {
                let outcome = replicated::reconcile(
                    &mut plan, service, r.replicas, tasks, &nodes, &gate, new_id,
                );
                reaper::trim_history(&mut plan, tasks, keep, |t| t.slot);
                outcome
            }
            None => continue,
        };
        rollout.end(&mut plan, tasks, outcome);
    }
    reaper::never_placed(&mut plan);
    let due = plan.due_ms;
    (plan.into_ops(), due)
}
