//! A node's assignment set as an agent holds it: the complete set from the
//! first message of a session, kept current by the deltas that follow.

use crate::v1::{
    Assignments, AssignmentsDelta, ConfigValue, Endpoint, EndpointTask, Network, Node, SecretValue,
    Task,
};

/// Applies `delta` to `set`: changed objects replace (or join) the ones with
/// the same id, removed ids leave. Lists stay in the order a complete set has
/// (tasks, networks and nodes by id, endpoints by service name).
pub fn apply(set: &mut Assignments, delta: AssignmentsDelta) {
    set.revision = delta.revision.max(set.revision);
    // Both are the session's current values, not maxima: a new leadership
    // numbers its shared part afresh (from its store revision up).
    set.shared_seq = delta.shared_seq;
    set.applied_everywhere = delta.applied_everywhere;
    merge(
        &mut set.tasks,
        delta.tasks,
        &delta.removed_tasks,
        |t: &Task| t.id.clone(),
    );
    merge(
        &mut set.networks,
        delta.networks,
        &delta.removed_networks,
        |n: &Network| n.id.clone(),
    );
    merge(
        &mut set.nodes,
        delta.nodes,
        &delta.removed_nodes,
        |n: &Node| n.id.clone(),
    );
    merge(
        &mut set.endpoints,
        delta.endpoints,
        &delta.removed_endpoints,
        |e: &Endpoint| e.service_id.clone(),
    );
    merge(
        &mut set.secrets,
        delta.secrets,
        &delta.removed_secrets,
        |s: &SecretValue| s.id.clone(),
    );
    merge(
        &mut set.configs,
        delta.configs,
        &delta.removed_configs,
        |c: &ConfigValue| c.id.clone(),
    );
    for change in delta.endpoint_tasks {
        if let Some(endpoint) = set
            .endpoints
            .iter_mut()
            .find(|e| e.service_id == change.service_id)
        {
            merge(
                &mut endpoint.tasks,
                change.tasks,
                &change.removed_tasks,
                |t: &EndpointTask| t.task_id.clone(),
            );
            endpoint.tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        }
    }
    set.tasks.sort_by(|a, b| a.id.cmp(&b.id));
    set.networks.sort_by(|a, b| a.id.cmp(&b.id));
    set.nodes.sort_by(|a, b| a.id.cmp(&b.id));
    set.secrets.sort_by(|a, b| a.id.cmp(&b.id));
    set.configs.sort_by(|a, b| a.id.cmp(&b.id));
    set.endpoints
        .sort_by(|a, b| a.service_name.cmp(&b.service_name));
}

fn merge<T>(list: &mut Vec<T>, changed: Vec<T>, removed: &[String], id: impl Fn(&T) -> String) {
    if removed.is_empty() && changed.is_empty() {
        return;
    }
    let mut index: std::collections::HashMap<String, usize> = list
        .iter()
        .enumerate()
        .map(|(i, item)| (id(item), i))
        .collect();
    for item in changed {
        match index.get(&id(&item)) {
            Some(&i) => list[i] = item,
            None => {
                index.insert(id(&item), list.len());
                list.push(item);
            }
        }
    }
    if !removed.is_empty() {
        list.retain(|item| !removed.contains(&id(item)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, desired: i32) -> Task {
        Task {
            id: id.into(),
            desired_state: desired,
            ..Default::default()
        }
    }

    #[test]
    fn a_delta_changes_adds_and_removes_by_id() {
        let mut set = Assignments {
            tasks: vec![task("a", 1), task("b", 1), task("c", 1)],
            nodes: vec![Node {
                id: "n1".into(),
                ..Default::default()
            }],
            revision: 4,
            ..Default::default()
        };
        apply(
            &mut set,
            AssignmentsDelta {
                revision: 9,
                shared_seq: 7,
                applied_everywhere: 6,
                tasks: vec![task("b", 5), task("0", 1)],
                removed_tasks: vec!["c".into()],
                nodes: vec![Node {
                    id: "n0".into(),
                    ..Default::default()
                }],
                removed_nodes: vec!["n1".into()],
                endpoints: vec![Endpoint {
                    service_id: "s1".into(),
                    service_name: "web".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        let tasks: Vec<(&str, i32)> = set
            .tasks
            .iter()
            .map(|t| (t.id.as_str(), t.desired_state))
            .collect();
        assert_eq!(tasks, [("0", 1), ("a", 1), ("b", 5)]);
        assert_eq!(set.nodes.len(), 1);
        assert_eq!(set.nodes[0].id, "n0");
        assert_eq!(set.endpoints[0].service_id, "s1");
        assert_eq!(set.revision, 9);
        assert_eq!((set.shared_seq, set.applied_everywhere), (7, 6));

        apply(
            &mut set,
            AssignmentsDelta {
                revision: 10,
                removed_endpoints: vec!["s1".into()],
                ..Default::default()
            },
        );
        assert!(set.endpoints.is_empty());
        assert_eq!(set.tasks.len(), 3, "an unrelated removal keeps the tasks");
    }

    #[test]
    fn secrets_and_configs_come_and_go_by_id() {
        let secret = |id: &str| SecretValue {
            id: id.into(),
            data: id.as_bytes().to_vec(),
            ..Default::default()
        };
        let config = |id: &str, version: u64| ConfigValue {
            id: id.into(),
            digest: version.to_string(),
            ..Default::default()
        };
        let mut set = Assignments {
            secrets: vec![secret("s1")],
            configs: vec![config("c1", 1)],
            ..Default::default()
        };
        apply(
            &mut set,
            AssignmentsDelta {
                secrets: vec![secret("s0")],
                removed_secrets: vec!["s1".into()],
                configs: vec![config("c1", 2), config("c2", 1)],
                ..Default::default()
            },
        );
        let secrets: Vec<&str> = set.secrets.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(secrets, ["s0"]);
        let configs: Vec<(&str, &str)> = set
            .configs
            .iter()
            .map(|c| (c.id.as_str(), c.digest.as_str()))
            .collect();
        assert_eq!(configs, [("c1", "2"), ("c2", "1")]);
        apply(
            &mut set,
            AssignmentsDelta {
                removed_configs: vec!["c1".into(), "c2".into()],
                ..Default::default()
            },
        );
        assert!(set.configs.is_empty());
    }

    #[test]
    fn endpoint_task_changes_edit_the_endpoint_in_place() {
        let task = |id: &str, node: &str| EndpointTask {
            task_id: id.into(),
            node_id: node.into(),
            ..Default::default()
        };
        let mut set = Assignments {
            endpoints: vec![Endpoint {
                service_id: "s1".into(),
                service_name: "web".into(),
                tasks: vec![task("a", "n1"), task("c", "n1")],
                ..Default::default()
            }],
            ..Default::default()
        };
        apply(
            &mut set,
            AssignmentsDelta {
                endpoint_tasks: vec![
                    crate::v1::EndpointTasksChange {
                        service_id: "s1".into(),
                        tasks: vec![task("b", "n2"), task("c", "n3")],
                        removed_tasks: vec!["a".into()],
                    },
                    crate::v1::EndpointTasksChange {
                        service_id: "unknown".into(),
                        tasks: vec![task("x", "n1")],
                        removed_tasks: vec![],
                    },
                ],
                ..Default::default()
            },
        );
        let tasks: Vec<(&str, &str)> = set.endpoints[0]
            .tasks
            .iter()
            .map(|t| (t.task_id.as_str(), t.node_id.as_str()))
            .collect();
        assert_eq!(tasks, [("b", "n2"), ("c", "n3")]);
        assert_eq!(
            set.endpoints.len(),
            1,
            "a change to an unknown endpoint adds none"
        );
    }
}
