//! One-offs (`berth run`) in the orchestrator's pass, plain functions of the
//! state read like the rest of it:
//! - a one-off's slot is filled once: its task is never replaced, not after
//!   an exit (restart condition none) and not when its node goes down, is
//!   drained or removed (that would run the command a second time, where
//!   Docker's container would just be gone with its host);
//! - `--rm`: a one-off whose task ended is removed, service and task records
//!   in one pass, by the leader (so `run -d --rm` needs no client to stay).

use std::collections::HashMap;

use berth_proto::v1::{Node, Service, TaskState};
use tracing::info;

use super::nodes::{self, OnDown};
use super::plan::Plan;
use super::task::{is_terminal, observed};

/// Takes care of a one-off that has its task (the API writes both at once):
/// a task on a removed or drained node is stopped (orphaned if removed), one
/// on a down node is left to its node, an ended one is marked finished; none
/// is ever created. False for anything else (the replicated walk fills the
/// slot of a one-off without a task, which only a half-restored state has).
pub fn reconcile(
    plan: &mut Plan<'_>,
    service: &Service,
    tasks: &[usize],
    nodes: &HashMap<&str, &Node>,
) -> bool {
    if !service.spec.as_ref().is_some_and(|s| s.one_off) || tasks.is_empty() {
        return false;
    }
    nodes::check(plan, tasks, nodes, OnDown::Keep);
    for &i in tasks {
        if is_terminal(observed(plan.task(i))) {
            plan.set_desired(i, TaskState::Complete);
        }
    }
    true
}

/// Removes `service` and its tasks when it is an auto-removed one-off whose
/// every task ended; true if it did (the pass then leaves the service alone).
/// A one-off without a task yet (the API writes both at once, so only a
/// half-restored state) is left for the replicated walk to fill.
pub fn auto_remove(plan: &mut Plan<'_>, service: &Service, tasks: &[usize]) -> bool {
    let Some(spec) = service.spec.as_ref().filter(|s| s.one_off && s.auto_remove) else {
        return false;
    };
    if tasks.is_empty() || !tasks.iter().all(|&i| is_terminal(observed(plan.task(i)))) {
        return false;
    }
    info!(service = %service.id, name = %spec.name, "one-off ended: removing it (--rm)");
    for &i in tasks {
        plan.delete(i);
    }
    plan.delete_service(service);
    true
}
