//! Replicated services: slots 1..=replicas each hold exactly one task.

use std::collections::{BTreeMap, HashMap};

use berth_proto::v1::{Node, Service, TaskState};
use tracing::info;

use super::nodes::{self, OnDown};
use super::plan::{Plan, new_task};
use super::slot;

/// Reconciles one replicated service's tasks (`tasks`: indexes into the plan).
pub fn reconcile(
    plan: &mut Plan<'_>,
    service: &Service,
    replicas: u64,
    tasks: &[usize],
    nodes: &HashMap<&str, &Node>,
    new_id: &mut dyn FnMut() -> String,
) {
    nodes::check(plan, tasks, nodes, OnDown::Replace);
    let mut slots: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for &i in tasks {
        slots.entry(plan.task(i).slot).or_default().push(i);
    }
    let mut kept: BTreeMap<u64, usize> = BTreeMap::new();
    for (&number, members) in &slots {
        slot::restart(plan, service, members);
        let occupants = slot::occupants(plan, members);
        if number == 0 || number > replicas {
            for i in occupants {
                info!(task = %plan.task(i).id, service = %service.id, slot = number,
                      "scaled down; stopping task");
                plan.set_desired(i, TaskState::Shutdown);
            }
            continue;
        }
        if let Some(i) = slot::keep_one(plan, service, &occupants) {
            kept.insert(number, i);
        }
    }
    let occupants: Vec<usize> = kept.values().copied().collect();
    let waiting = |plan: &Plan<'_>| -> std::collections::BTreeSet<u64> {
        slots
            .iter()
            .filter(|(_, members)| slot::stopping_for_update(plan, service, members, nodes))
            .map(|(&number, _)| number)
            .collect()
    };
    slot::update(plan, service, &occupants, waiting(plan).len());
    let waiting = if slot::starts_first(service) {
        Default::default()
    } else {
        waiting(plan)
    };
    for number in 1..=replicas {
        let held = kept
            .get(&number)
            .is_some_and(|&i| plan.task(i).desired_state <= TaskState::Complete as i32);
        if !held && !waiting.contains(&number) {
            let task = new_task(service, number, None, new_id(), plan.now_ms);
            info!(task = %task.id, service = %service.id, slot = number, "new task");
            plan.create(task);
        }
    }
}
