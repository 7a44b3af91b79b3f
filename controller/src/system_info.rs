//! What `berth info` counts of the cluster: nodes by status and by
//! availability, tasks by observed state.

use std::collections::BTreeMap;

use berth_proto::v1::{Node, NodeAvailability, NodeStatus, Task, TaskState};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub nodes_by_status: BTreeMap<String, u64>,
    pub nodes_by_availability: BTreeMap<String, u64>,
    pub tasks_by_state: BTreeMap<String, u64>,
}

impl Counts {
    pub fn of(nodes: &[Node], tasks: &[Task]) -> Counts {
        let mut c = Counts::default();
        for node in nodes {
            let status = NodeStatus::try_from(node.status).unwrap_or(NodeStatus::Unknown);
            let availability =
                NodeAvailability::try_from(node.availability).unwrap_or(NodeAvailability::Active);
            *c.nodes_by_status
                .entry(status.short_name().to_string())
                .or_default() += 1;
            *c.nodes_by_availability
                .entry(availability.short_name().to_string())
                .or_default() += 1;
        }
        for task in tasks {
            let state = task
                .status
                .as_ref()
                .and_then(|s| TaskState::try_from(s.state).ok())
                .unwrap_or(TaskState::New);
            *c.tasks_by_state
                .entry(state.short_name().to_string())
                .or_default() += 1;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use berth_proto::v1::TaskStatus;

    use super::*;

    #[test]
    fn nodes_and_tasks_are_counted_by_their_states() {
        let node = |status: NodeStatus, availability: NodeAvailability| Node {
            status: status as i32,
            availability: availability as i32,
            ..Default::default()
        };
        let task = |state: Option<TaskState>| Task {
            status: state.map(|s| TaskStatus {
                state: s as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = Counts::of(
            &[
                node(NodeStatus::Ready, NodeAvailability::Active),
                node(NodeStatus::Ready, NodeAvailability::Drain),
                node(NodeStatus::Down, NodeAvailability::Active),
            ],
            &[
                task(Some(TaskState::Running)),
                task(Some(TaskState::Running)),
                task(Some(TaskState::Failed)),
                task(None),
            ],
        );
        let map = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        assert_eq!(c.nodes_by_status, map(&[("down", 1), ("ready", 2)]));
        assert_eq!(c.nodes_by_availability, map(&[("active", 2), ("drain", 1)]));
        assert_eq!(
            c.tasks_by_state,
            map(&[("failed", 1), ("new", 1), ("running", 2)])
        );
    }
}
