//! `berth run --rm`: a one-off whose task ended is removed, service and task
//! records in one pass, by the leader (so `run -d --rm` needs no client to
//! stay). A plain function of the state read, like the rest of the pass.

use berth_proto::v1::Service;
use tracing::info;

use super::plan::Plan;
use super::task::{is_terminal, observed};

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
