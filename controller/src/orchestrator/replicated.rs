//! Replicated services: slots 1..=replicas each hold exactly one task.

use std::collections::{BTreeMap, HashMap};

use berth_proto::v1::{Node, Service};
use tracing::{debug, info};

use super::nodes::{self, OnDown};
use super::plan::{Plan, new_task};
use super::slot::{self, Outcome};
use super::update::Gate;

/// Reconciles one replicated service's tasks (`tasks`: indexes into the plan),
/// replacing outdated ones as `gate` allows.
pub fn reconcile(
    plan: &mut Plan<'_>,
    service: &Service,
    replicas: u64,
    tasks: &[usize],
    nodes: &HashMap<&str, &Node>,
    gate: &Gate,
    new_id: &mut dyn FnMut() -> String,
) -> Outcome {
    nodes::check(plan, tasks, nodes, OnDown::Replace);
    let mut slots: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for &i in tasks {
        slots.entry(plan.task(i).slot).or_default().push(i);
    }
    let walked = slot::walk(
        plan,
        service,
        &slots,
        nodes,
        gate,
        |&number| {
            if number == 0 || number > replicas {
                Err("scaled down")
            } else {
                Ok(())
            }
        },
        |_| true,
    );
    let mut created = 0;
    for number in 1..=replicas {
        if walked.needs_task(plan, &number) {
            let task = new_task(service, number, None, new_id(), plan.now_ms);
            debug!(task = %task.id, service = %service.id, slot = number, "new task");
            plan.create(task);
            created += 1;
        }
    }
    // One line per service and pass, not per task: a cluster creating
    // 20,000 tasks wrote 20,000 lines.
    if created > 0 {
        info!(service = %service.id, created, "new tasks");
    }
    walked.outcome(created)
}
