//! A node's assignment set as an agent holds it: the complete set from the
//! first message of a session, kept current by the deltas that follow.

use std::collections::BTreeMap;

use crate::v1::{
    Assignments, AssignmentsDelta, ConfigValue, Endpoint, EndpointTask, EndpointTasksChange,
    HeldSet, Network, Node, SecretValue, Task,
};

/// A stable fingerprint of an object: FNV-1a 64 over its protobuf encoding
/// (deterministic: maps are ordered). Agents and controllers of different
/// builds compute the same value.
pub fn fingerprint<M: prost::Message>(object: &M) -> u64 {
    object
        .encode_to_vec()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// What an agent tells a new session it holds (see `SessionRequest.held`).
pub fn held_set(set: &Assignments) -> HeldSet {
    fn prints<T: prost::Message>(items: &[T], id: impl Fn(&T) -> &str) -> BTreeMap<String, u64> {
        items
            .iter()
            .map(|item| (id(item).to_string(), fingerprint(item)))
            .collect()
    }
    HeldSet {
        tasks: prints(&set.tasks, |t| &t.id),
        networks: prints(&set.networks, |n| &n.id),
        nodes: prints(&set.nodes, |n| &n.id),
        endpoints: prints(&set.endpoints, |e| &e.service_id),
        secrets: prints(&set.secrets, |s| &s.id),
        configs: prints(&set.configs, |c| &c.id),
        followed: set.followed.clone(),
    }
}

/// Whether every node follows `endpoint` (gets its serving tasks): a service
/// with published ports (the routing mesh takes connections for it on any
/// node), and one without a VIP (dnsrr: its name answers the tasks'
/// addresses, and only they tell which networks it is on).
pub fn followed_by_all(endpoint: &Endpoint) -> bool {
    !endpoint.ports.is_empty() || endpoint.virtual_ips.is_empty()
}

/// Whether a set with `Assignments.followed` = `set_followed` (sorted)
/// carries the serving tasks of `endpoint`.
pub fn follows(set_followed: &[String], endpoint: &Endpoint) -> bool {
    followed_by_all(endpoint) || set_followed.binary_search(&endpoint.service_id).is_ok()
}

/// The delta that turns a set with fingerprints `held` into `complete`:
/// every object whose fingerprint differs or is missing, and the ids `held`
/// has that `complete` does not. Applied with [`apply`] to the held set, it
/// gives `complete` (the lists in a complete set's order).
pub fn delta_from(held: &HeldSet, complete: &Assignments) -> AssignmentsDelta {
    fn changed<T: prost::Message + Clone>(
        held: &BTreeMap<String, u64>,
        now: &[T],
        id: impl Fn(&T) -> &str,
    ) -> (Vec<T>, Vec<String>) {
        let changed = now
            .iter()
            .filter(|item| held.get(id(item)) != Some(&fingerprint(*item)))
            .cloned()
            .collect();
        let removed = held
            .keys()
            .filter(|key| !now.iter().any(|item| id(item) == key.as_str()))
            .cloned()
            .collect();
        (changed, removed)
    }
    let (tasks, removed_tasks) = changed(&held.tasks, &complete.tasks, |t| &t.id);
    let (networks, removed_networks) = changed(&held.networks, &complete.networks, |n| &n.id);
    let (nodes, removed_nodes) = changed(&held.nodes, &complete.nodes, |n| &n.id);
    let (endpoints, removed_endpoints) =
        changed(&held.endpoints, &complete.endpoints, |e| &e.service_id);
    let (secrets, removed_secrets) = changed(&held.secrets, &complete.secrets, |s| &s.id);
    let (configs, removed_configs) = changed(&held.configs, &complete.configs, |c| &c.id);
    let followed = complete
        .followed
        .iter()
        .filter(|id| !held.followed.contains(id))
        .cloned()
        .collect();
    let unfollowed = held
        .followed
        .iter()
        .filter(|id| !complete.followed.contains(id))
        .cloned()
        .collect();
    AssignmentsDelta {
        revision: complete.revision,
        tasks,
        removed_tasks,
        networks,
        removed_networks,
        nodes,
        removed_nodes,
        endpoints,
        removed_endpoints,
        endpoint_tasks: Vec::new(),
        secrets,
        removed_secrets,
        configs,
        removed_configs,
        shared_seq: complete.shared_seq,
        applied_everywhere: complete.applied_everywhere,
        shared_changes: Vec::new(),
        followed,
        unfollowed,
        answered_names: complete.answered_names.clone(),
        heads_on_demand: complete.heads_on_demand,
    }
}

/// Merges a complete set's shared part (`Assignments.shared`, encoded once on
/// the leader for every session) into its lists. A set without one is left
/// as it is.
pub fn unpack(set: &mut Assignments) -> Result<(), prost::DecodeError> {
    if set.shared.is_empty() {
        return Ok(());
    }
    let shared = std::mem::take(&mut set.shared);
    // Repeated fields append: the shared lists join the set's own (empty).
    prost::Message::merge(&mut *set, shared)?;
    let followed = std::mem::take(&mut set.followed_tasks);
    put_tasks(set, followed);
    // A set whose leader sends endpoints on demand carries the followed ones
    // itself, beside the shared part's.
    set.endpoints
        .sort_by(|a, b| a.service_name.cmp(&b.service_name));
    Ok(())
}

/// Applies `delta` to `set`: first its shared changes, in order, then the
/// rest. Changed objects replace (or join) the ones with the same id, removed
/// ids leave. Lists stay in the order a complete set has (tasks, networks and
/// nodes by id, endpoints by service name). An undecodable shared change
/// leaves `set` unchanged.
pub fn apply(set: &mut Assignments, mut delta: AssignmentsDelta) -> Result<(), prost::DecodeError> {
    let pieces = std::mem::take(&mut delta.shared_changes)
        .into_iter()
        .map(<AssignmentsDelta as prost::Message>::decode)
        .collect::<Result<Vec<_>, _>>()?;
    set.revision = delta.revision.max(set.revision);
    // Both are the session's current values, not maxima: a new leadership
    // numbers its shared part afresh (from its store revision up).
    set.shared_seq = delta.shared_seq;
    set.applied_everywhere = delta.applied_everywhere;
    // An endpoint removed is no longer followed, even when a later piece
    // creates it again: the leader follows it anew (`delta.followed`), with
    // its tasks, or not at all.
    let mut dropped: std::collections::HashSet<String> = pieces
        .iter()
        .chain(std::iter::once(&delta))
        .flat_map(|piece| piece.removed_endpoints.iter().cloned())
        .collect();
    dropped.extend(std::mem::take(&mut delta.unfollowed));
    for piece in pieces {
        apply_changes(set, piece);
    }
    set.followed.retain(|f| !dropped.contains(f));
    set.followed.append(&mut delta.followed);
    set.followed.sort();
    set.followed.dedup();
    set.answered_names.append(&mut delta.answered_names);
    set.answered_names.sort();
    set.answered_names.dedup();
    set.heads_on_demand = delta.heads_on_demand;
    apply_changes(set, delta);
    set.tasks.sort_by(|a, b| a.id.cmp(&b.id));
    set.networks.sort_by(|a, b| a.id.cmp(&b.id));
    set.nodes.sort_by(|a, b| a.id.cmp(&b.id));
    set.secrets.sort_by(|a, b| a.id.cmp(&b.id));
    set.configs.sort_by(|a, b| a.id.cmp(&b.id));
    set.endpoints
        .sort_by(|a, b| a.service_name.cmp(&b.service_name));
    Ok(())
}

/// The object changes of one delta (or one shared change), lists unsorted.
fn apply_changes(set: &mut Assignments, delta: AssignmentsDelta) {
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
    put_tasks(set, delta.endpoint_tasks);
}

/// Applies endpoint task changes to the endpoints they name.
fn put_tasks(set: &mut Assignments, changes: Vec<EndpointTasksChange>) {
    for change in changes {
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
    use prost::Message;

    use super::*;

    fn apply_ok(set: &mut Assignments, delta: AssignmentsDelta) {
        apply(set, delta).expect("the delta applies");
    }

    fn endpoint(service: &str, tasks: &[&str]) -> Endpoint {
        Endpoint {
            service_id: service.into(),
            service_name: service.into(),
            tasks: tasks
                .iter()
                .map(|id| EndpointTask {
                    task_id: id.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn served(set: &Assignments) -> Vec<(String, Vec<String>)> {
        set.endpoints
            .iter()
            .map(|e| {
                let tasks = e.tasks.iter().map(|t| t.task_id.clone()).collect();
                (e.service_id.clone(), tasks)
            })
            .collect()
    }

    #[test]
    fn shared_changes_apply_in_their_order_before_the_rest() {
        let piece = |delta: AssignmentsDelta| prost::bytes::Bytes::from(delta.encode_to_vec());
        let mut set = Assignments {
            endpoints: vec![endpoint("s1", &["a"])],
            ..Default::default()
        };
        // Removed, then back with other tasks: merged into one message's
        // lists this would read as "s1 with b, removed"; in order it is back.
        let delta = AssignmentsDelta {
            shared_seq: 12,
            shared_changes: vec![
                piece(AssignmentsDelta {
                    removed_endpoints: vec!["s1".into()],
                    ..Default::default()
                }),
                piece(AssignmentsDelta {
                    endpoints: vec![endpoint("s1", &["b"]), endpoint("s2", &[])],
                    ..Default::default()
                }),
                piece(AssignmentsDelta {
                    endpoint_tasks: vec![crate::v1::EndpointTasksChange {
                        service_id: "s2".into(),
                        tasks: vec![EndpointTask {
                            task_id: "c".into(),
                            ..Default::default()
                        }],
                        removed_tasks: vec![],
                    }],
                    ..Default::default()
                }),
            ],
            tasks: vec![task("t1", 1)],
            ..Default::default()
        };
        apply_ok(&mut set, delta);
        assert_eq!(
            served(&set),
            [
                ("s1".to_string(), vec!["b".to_string()]),
                ("s2".to_string(), vec!["c".to_string()])
            ]
        );
        assert_eq!(set.tasks.len(), 1);
        assert_eq!(set.shared_seq, 12);

        let before = set.clone();
        let broken = AssignmentsDelta {
            shared_seq: 13,
            tasks: vec![task("t2", 1)],
            shared_changes: vec![prost::bytes::Bytes::from_static(&[0xff, 0xff])],
            ..Default::default()
        };
        assert!(apply(&mut set, broken).is_err());
        assert_eq!(set, before, "an undecodable change changes nothing");
    }

    #[test]
    fn a_complete_sets_shared_part_unpacks_into_its_lists() {
        let shared = Assignments {
            nodes: vec![Node {
                id: "n1".into(),
                ..Default::default()
            }],
            endpoints: vec![endpoint("s1", &["a"])],
            ..Default::default()
        };
        let mut set = Assignments {
            tasks: vec![task("t1", 1)],
            revision: 7,
            shared: shared.encode_to_vec().into(),
            ..Default::default()
        };
        unpack(&mut set).expect("unpacks");
        assert!(set.shared.is_empty());
        assert_eq!(set.nodes, shared.nodes);
        assert_eq!(set.endpoints, shared.endpoints);
        assert_eq!((set.tasks.len(), set.revision), (1, 7));
        // Unpacking again (nothing left) changes nothing.
        let once = set.clone();
        unpack(&mut set).expect("unpacks");
        assert_eq!(set, once);
    }

    fn task(id: &str, desired: i32) -> Task {
        Task {
            id: id.into(),
            desired_state: desired,
            ..Default::default()
        }
    }

    #[test]
    fn a_held_set_plus_the_delta_from_it_is_the_complete_set() {
        let node = |id: &str, name: &str| Node {
            id: id.into(),
            name: name.into(),
            ..Default::default()
        };
        let endpoint = |service: &str, name: &str| Endpoint {
            service_id: service.into(),
            service_name: name.into(),
            ..Default::default()
        };
        let secret = |id: &str, data: &[u8]| SecretValue {
            id: id.into(),
            name: id.into(),
            data: data.to_vec(),
        };
        let held = Assignments {
            node_id: "n1".into(),
            tasks: vec![task("a", 1), task("b", 1)],
            nodes: vec![node("n1", "one"), node("n2", "two"), node("n3", "three")],
            endpoints: vec![endpoint("s1", "api"), endpoint("s2", "web")],
            secrets: vec![secret("k1", b"old")],
            revision: 10,
            shared_seq: 40,
            ..Default::default()
        };
        let complete = Assignments {
            node_id: "n1".into(),
            tasks: vec![task("a", 1), task("b", 5), task("c", 1)],
            nodes: vec![node("n1", "one"), node("n2", "renamed")],
            endpoints: vec![endpoint("s2", "web"), endpoint("s3", "zz")],
            secrets: vec![secret("k1", b"new")],
            revision: 90,
            shared_seq: 91,
            applied_everywhere: 88,
            ..Default::default()
        };
        let delta = delta_from(&held_set(&held), &complete);
        // Only what differs travels.
        let ids = |tasks: &[Task]| tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&delta.tasks), ["b", "c"]);
        assert_eq!(delta.nodes.len(), 1);
        assert_eq!(delta.removed_nodes, ["n3"]);
        assert_eq!(delta.removed_endpoints, ["s1"]);
        assert_eq!(delta.endpoints.len(), 1);
        assert_eq!(delta.secrets.len(), 1);
        let mut resumed = held.clone();
        apply_ok(&mut resumed, delta);
        assert_eq!(resumed, complete);
        // Nothing changed: an empty delta that still carries the sequences.
        let same = delta_from(&held_set(&complete), &complete);
        assert!(same.tasks.is_empty() && same.nodes.is_empty() && same.removed_nodes.is_empty());
        assert_eq!((same.shared_seq, same.applied_everywhere), (91, 88));
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
        apply_ok(
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

        apply_ok(
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
        apply_ok(
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
        apply_ok(
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
        apply_ok(
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

    #[test]
    fn followed_tasks_unpack_into_their_endpoints_and_leave_with_them() {
        let shared = Assignments {
            endpoints: vec![with_vip(endpoint("s1", &[])), with_vip(endpoint("s2", &[]))],
            ..Default::default()
        };
        let mut set = Assignments {
            shared: shared.encode_to_vec().into(),
            followed: vec!["s1".into()],
            followed_tasks: vec![EndpointTasksChange {
                service_id: "s1".into(),
                tasks: endpoint("s1", &["a", "b"]).tasks,
                removed_tasks: vec![],
            }],
            ..Default::default()
        };
        unpack(&mut set).expect("unpacks");
        assert!(set.followed_tasks.is_empty());
        assert_eq!(
            served(&set),
            [
                ("s1".to_string(), vec!["a".to_string(), "b".to_string()]),
                ("s2".to_string(), vec![])
            ]
        );
        assert!(follows(&set.followed, &set.endpoints[0]));
        assert!(!follows(&set.followed, &set.endpoints[1]));
        // s2 followed from now on, s1 gone: it is no longer followed.
        apply_ok(
            &mut set,
            AssignmentsDelta {
                removed_endpoints: vec!["s1".into()],
                followed: vec!["s2".into()],
                endpoint_tasks: vec![EndpointTasksChange {
                    service_id: "s2".into(),
                    tasks: endpoint("s2", &["c"]).tasks,
                    removed_tasks: vec![],
                }],
                ..Default::default()
            },
        );
        assert_eq!(set.followed, ["s2"]);
        assert_eq!(served(&set), [("s2".to_string(), vec!["c".to_string()])]);
    }

    #[test]
    fn a_resumed_set_follows_what_the_complete_set_follows() {
        let before = Assignments {
            endpoints: vec![
                with_vip(endpoint("s1", &["a"])),
                with_vip(endpoint("s2", &[])),
            ],
            followed: vec!["s1".into()],
            ..Default::default()
        };
        let complete = Assignments {
            endpoints: vec![
                with_vip(endpoint("s1", &[])),
                with_vip(endpoint("s2", &["c"])),
            ],
            followed: vec!["s2".into()],
            ..Default::default()
        };
        let held = held_set(&before);
        assert_eq!(held.followed, ["s1"]);
        let delta = delta_from(&held, &complete);
        assert_eq!(delta.followed, ["s2"]);
        assert_eq!(delta.unfollowed, ["s1"]);
        let mut set = before;
        apply_ok(&mut set, delta);
        assert_eq!(set.followed, complete.followed);
        assert_eq!(set.endpoints, complete.endpoints);
    }

    #[test]
    fn every_node_follows_published_ports_and_services_without_a_vip() {
        let mut ported = with_vip(endpoint("s1", &[]));
        assert!(!followed_by_all(&ported));
        ported.ports.push(crate::v1::PortConfig::default());
        assert!(followed_by_all(&ported));
        assert!(followed_by_all(&endpoint("dnsrr", &[])), "no VIP");
        assert!(follows(&[], &ported));
    }

    #[test]
    fn an_endpoint_removed_and_created_again_is_followed_only_if_followed_anew() {
        let piece = |delta: AssignmentsDelta| prost::bytes::Bytes::from(delta.encode_to_vec());
        let mut set = Assignments {
            endpoints: vec![with_vip(endpoint("s1", &["a"]))],
            followed: vec!["s1".into()],
            ..Default::default()
        };
        let gone_and_back = vec![
            piece(AssignmentsDelta {
                removed_endpoints: vec!["s1".into()],
                ..Default::default()
            }),
            piece(AssignmentsDelta {
                endpoints: vec![with_vip(endpoint("s1", &[]))],
                ..Default::default()
            }),
        ];
        apply_ok(
            &mut set,
            AssignmentsDelta {
                shared_changes: gone_and_back.clone(),
                ..Default::default()
            },
        );
        assert!(set.followed.is_empty(), "its head only: not followed");
        apply_ok(
            &mut set,
            AssignmentsDelta {
                shared_changes: gone_and_back,
                followed: vec!["s1".into()],
                endpoint_tasks: vec![EndpointTasksChange {
                    service_id: "s1".into(),
                    tasks: endpoint("s1", &["b"]).tasks,
                    removed_tasks: vec![],
                }],
                ..Default::default()
            },
        );
        assert_eq!(set.followed, ["s1"], "followed anew, with its tasks");
        assert_eq!(served(&set), [("s1".to_string(), vec!["b".to_string()])]);
    }

    fn with_vip(mut e: Endpoint) -> Endpoint {
        e.virtual_ips
            .insert("berth".into(), "10.96.240.2/16".parse().expect("a prefix"));
        e
    }
}
