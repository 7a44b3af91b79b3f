//! Global services: one task per eligible node (ready, active, constraints
//! satisfied), created already assigned to its node, also on nodes that join
//! later. Drained nodes and nodes that no longer satisfy the constraints lose
//! their task; paused and down nodes keep it.

use std::collections::{BTreeMap, HashMap};

use berth_proto::v1::{Node, NodeAvailability, Service, TaskState};
use tracing::{info, warn};

use super::nodes::{self, OnDown};
use super::plan::{Plan, new_task};
use super::slot;
use crate::scheduler::constraint::{first_unsatisfied, parse_all};
use crate::scheduler::filter::ready_and_active;

pub fn reconcile(
    plan: &mut Plan<'_>,
    service: &Service,
    tasks: &[usize],
    all_nodes: &[Node],
    nodes: &HashMap<&str, &Node>,
    new_id: &mut dyn FnMut() -> String,
) {
    nodes::check(plan, tasks, nodes, OnDown::Keep);
    let constraints = match service.spec.as_ref().map(parse_all).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(err) => {
            // The API validates specs; an old or hand-made one may still slip through.
            warn!(service = %service.id, %err, "global service has an invalid constraint; placing nothing");
            return;
        }
    };
    let mut by_node: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &i in tasks {
        by_node
            .entry(plan.original(i).node_id.as_str())
            .or_default()
            .push(i);
    }
    let mut kept: BTreeMap<&str, usize> = BTreeMap::new();
    for (&node_id, members) in &by_node {
        slot::restart(plan, service, members);
        let occupants = slot::occupants(plan, members);
        let stays = nodes.get(node_id).is_some_and(|n| {
            n.availability != NodeAvailability::Drain as i32
                && first_unsatisfied(&constraints, n).is_none()
        });
        if !stays {
            for i in occupants {
                info!(task = %plan.task(i).id, service = %service.id, node = node_id,
                      "node no longer takes this global service; stopping task");
                plan.set_desired(i, TaskState::Shutdown);
            }
            continue;
        }
        if let Some(i) = slot::keep_one(plan, service, &occupants) {
            kept.insert(node_id, i);
        }
    }
    let occupants: Vec<usize> = kept.values().copied().collect();
    let waiting = |plan: &Plan<'_>| -> std::collections::BTreeSet<&str> {
        by_node
            .iter()
            .filter(|(_, members)| slot::stopping_for_update(plan, service, members, nodes))
            .map(|(&node, _)| node)
            .collect()
    };
    slot::update(plan, service, &occupants, waiting(plan).len());
    let waiting = if slot::starts_first(service) {
        Default::default()
    } else {
        waiting(plan)
    };
    for node in all_nodes {
        if !ready_and_active(node)
            || first_unsatisfied(&constraints, node).is_some()
            || waiting.contains(&node.id.as_str())
        {
            continue;
        }
        let held = kept
            .get(node.id.as_str())
            .is_some_and(|&i| plan.task(i).desired_state <= TaskState::Complete as i32);
        if !held {
            let task = new_task(service, 0, Some(node), new_id(), plan.now_ms);
            info!(task = %task.id, service = %service.id, node = %node.id, "new global task");
            plan.create(task);
        }
    }
}
