//! Tasks on nodes that left, went down or are drained: stopped so their slot is
//! refilled elsewhere (tasks are replaced, never moved).

use std::collections::HashMap;

use berth_proto::v1::{Node, NodeAvailability, NodeStatus, TaskState};
use tracing::info;

use super::plan::Plan;
use super::task::{is_terminal, observed};

/// What to do with tasks on a DOWN node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDown {
    /// Replicated services: stop them (the agent does when it comes back) so
    /// their slots are filled elsewhere.
    Replace,
    /// Global services: the task belongs to the node; leave it.
    Keep,
}

/// Stops the tasks of `slot` that are desired to run on a node that no longer
/// exists (marked ORPHANED: no agent will report them), is drained, or (with
/// `OnDown::Replace`) is down.
pub fn check(plan: &mut Plan<'_>, tasks: &[usize], nodes: &HashMap<&str, &Node>, on_down: OnDown) {
    for &i in tasks {
        let task = plan.task(i);
        if task.node_id.is_empty() || task.desired_state > TaskState::Running as i32 {
            continue;
        }
        let why = match nodes.get(task.node_id.as_str()) {
            None => {
                if !is_terminal(observed(task)) {
                    let now = plan.now_ms;
                    let status = plan.edit(i).status.get_or_insert_with(Default::default);
                    status.state = TaskState::Orphaned as i32;
                    status.message = "its node was removed from the cluster".into();
                    status.timestamp_ms = now;
                }
                "node removed"
            }
            Some(n) if n.availability == NodeAvailability::Drain as i32 => "node drained",
            Some(n) if n.status == NodeStatus::Down as i32 && on_down == OnDown::Replace => {
                "node down"
            }
            Some(_) => continue,
        };
        let task = plan.task(i);
        info!(task = %task.id, service = %task.service_id, node = %task.node_id, why,
              "stopping task so it is replaced");
        plan.set_desired(i, TaskState::Shutdown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{Task, TaskStatus};

    fn task(node: &str) -> Task {
        Task {
            id: format!("t-{node}"),
            node_id: node.into(),
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                state: TaskState::Running as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node(id: &str, status: NodeStatus, availability: NodeAvailability) -> Node {
        Node {
            id: id.into(),
            status: status as i32,
            availability: availability as i32,
            ..Default::default()
        }
    }

    #[test]
    fn removed_drained_and_down_nodes() {
        let nodes = [
            node("ok", NodeStatus::Ready, NodeAvailability::Active),
            node("paused", NodeStatus::Ready, NodeAvailability::Pause),
            node("drained", NodeStatus::Ready, NodeAvailability::Drain),
            node("down", NodeStatus::Down, NodeAvailability::Active),
        ];
        let by_id: HashMap<&str, &Node> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        let tasks = vec![
            task("ok"),
            task("paused"),
            task("drained"),
            task("down"),
            task("gone"),
        ];
        let mut plan = Plan::new(&tasks, 5);
        check(&mut plan, &[0, 1, 2, 3, 4], &by_id, OnDown::Replace);
        let desired: Vec<i32> = (0..5).map(|i| plan.task(i).desired_state).collect();
        let run = TaskState::Running as i32;
        let stop = TaskState::Shutdown as i32;
        assert_eq!(desired, vec![run, run, stop, stop, stop]);
        assert_eq!(observed(plan.task(4)), TaskState::Orphaned as i32);
        assert_eq!(observed(plan.task(3)), TaskState::Running as i32);

        let mut plan = Plan::new(&tasks, 5);
        check(&mut plan, &[3], &by_id, OnDown::Keep);
        assert_eq!(plan.task(3).desired_state, run);
    }
}
