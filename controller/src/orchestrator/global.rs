//! Global services: one task per eligible node (ready, active, constraints
//! satisfied), created already assigned to its node, also on nodes that join
//! later. Drained nodes and nodes that no longer satisfy the constraints lose
//! their task; paused and down nodes keep it.

use std::collections::{BTreeMap, HashMap};

use berth_proto::v1::{Node, NodeAvailability, Service};
use tracing::{debug, info};

use super::nodes::{self, OnDown};
use super::plan::{Plan, new_task};
use super::slot::{self, Outcome};
use super::update::Gate;
use crate::scheduler::constraint::{first_unsatisfied, parse_all};
use crate::scheduler::filter::ready_and_active;

pub fn reconcile(
    plan: &mut Plan<'_>,
    service: &Service,
    tasks: &[usize],
    all_nodes: &[Node],
    nodes: &HashMap<&str, &Node>,
    gate: &Gate,
    new_id: &mut dyn FnMut() -> String,
) -> Outcome {
    nodes::check(plan, tasks, nodes, OnDown::Keep);
    let constraints = match service.spec.as_ref().map(parse_all).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(err) => {
            // The API should refuse such specs (scheduler::constraint::parse_all);
            // an old one may still be stored. Logged quietly: this runs every round.
            debug!(service = %service.id, %err, "global service has an invalid constraint; placing nothing");
            return Outcome::default();
        }
    };
    let mut by_node: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &i in tasks {
        by_node
            .entry(plan.original(i).node_id.as_str())
            .or_default()
            .push(i);
    }
    let walked = slot::walk(
        plan,
        service,
        &by_node,
        nodes,
        gate,
        |node_id| match nodes.get(*node_id) {
            None => Err("node removed"),
            Some(n) if n.availability == NodeAvailability::Drain as i32 => Err("node drained"),
            Some(n) if first_unsatisfied(&constraints, n).is_some() => {
                Err("node no longer satisfies the constraints")
            }
            Some(_) => Ok(()),
        },
        // A paused or down node keeps its task as it is: no new one there.
        |node_id| nodes.get(*node_id).is_some_and(|n| ready_and_active(n)),
    );
    let mut created = 0;
    for node in all_nodes {
        if !ready_and_active(node) || first_unsatisfied(&constraints, node).is_some() {
            continue;
        }
        if walked.needs_task(plan, &node.id.as_str()) {
            let task = new_task(service, 0, Some(node), new_id(), plan.now_ms);
            info!(task = %task.id, service = %service.id, node = %node.id, "new global task");
            plan.create(task);
            created += 1;
        }
    }
    walked.outcome(created)
}
