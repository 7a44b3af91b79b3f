//! Properties of placement on random clusters: never over-commit, never violate
//! a constraint or a host port, leave a task pending only when nothing fits, and
//! spread evenly when resources allow.

use std::collections::{HashMap, HashSet};

use berth_proto::store::object::Kind;
use berth_proto::store::op;
use berth_proto::v1::{
    Node, NodeAvailability, NodeStatus, Placement, PlacementPreference, PortConfig, PublishMode,
    ResourceRequirements, Resources, ServiceSpec, Task, TaskState, TaskStatus,
};
use proptest::prelude::*;

use super::constraint::{first_unsatisfied, parse_all};
use super::filter::{Request, explain, ready_and_active};
use super::resources::{Demand, NodeLoad, host_ports};
use super::schedule;

fn arb_node(i: usize) -> impl Strategy<Value = Node> {
    (
        0u64..8,
        0u64..8,
        prop::option::of(prop::sample::select(vec!["a", "b", "c"])),
        prop::sample::select(vec![
            (NodeStatus::Ready, NodeAvailability::Active),
            (NodeStatus::Ready, NodeAvailability::Active),
            (NodeStatus::Ready, NodeAvailability::Active),
            (NodeStatus::Ready, NodeAvailability::Pause),
            (NodeStatus::Ready, NodeAvailability::Drain),
            (NodeStatus::Down, NodeAvailability::Active),
            (NodeStatus::Unknown, NodeAvailability::Active),
        ]),
    )
        .prop_map(move |(cpus, gib, zone, (status, availability))| Node {
            id: format!("node-{i:02}"),
            name: format!("n{i}"),
            labels: zone
                .map(|z| [("zone".to_string(), z.to_string())].into())
                .unwrap_or_default(),
            resources: Some(Resources {
                milli_cpus: cpus * 500,
                memory_bytes: gib << 30,
                pids: 0,
            }),
            status: status as i32,
            availability: availability as i32,
            ..Default::default()
        })
}

fn arb_nodes() -> impl Strategy<Value = Vec<Node>> {
    (1usize..12).prop_flat_map(|n| (0..n).map(arb_node).collect::<Vec<_>>())
}

fn arb_constraint() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        prop::sample::select(vec!["a", "b", "c"]).prop_map(|z| format!("node.labels.zone=={z}")),
        prop::sample::select(vec!["a", "b", "c"]).prop_map(|z| format!("node.labels.zone!={z}")),
        (0usize..12).prop_map(|i| format!("node.name!=n{i}")),
        (0usize..12).prop_map(|i| format!("node.id==node-{i:02}")),
    ])
}

fn arb_spec() -> impl Strategy<Value = ServiceSpec> {
    (
        0u64..4,
        0u64..6,
        arb_constraint(),
        prop::option::of(prop::sample::select(vec![80u32, 443])),
        (0u64..4, any::<bool>()),
    )
        .prop_map(
            |(cpu, mem, constraint, port, (max_per_node, spread))| ServiceSpec {
                name: "svc".into(),
                resources: Some(ResourceRequirements {
                    reservations: Some(Resources {
                        milli_cpus: cpu * 250,
                        memory_bytes: mem << 29,
                        pids: 0,
                    }),
                    limits: None,
                }),
                placement: Some(Placement {
                    constraints: constraint.into_iter().collect(),
                    preferences: spread
                        .then(|| PlacementPreference {
                            spread: "node.labels.zone".into(),
                        })
                        .into_iter()
                        .collect(),
                    max_replicas_per_node: max_per_node,
                }),
                ports: port
                    .map(|p| PortConfig {
                        target_port: 80,
                        published_port: p,
                        protocol: 0,
                        publish_mode: PublishMode::Host as i32,
                    })
                    .into_iter()
                    .collect(),
                ..Default::default()
            },
        )
}

/// Services as (spec, pending tasks, tasks already running on some node).
fn arb_workload() -> impl Strategy<Value = Vec<(ServiceSpec, usize, Vec<usize>)>> {
    prop::collection::vec(
        (
            arb_spec(),
            0usize..25,
            prop::collection::vec(0usize..12, 0..4),
        ),
        1..5,
    )
}

fn task(id: String, service: usize, slot: u64, spec: &ServiceSpec, state: TaskState) -> Task {
    Task {
        id,
        service_id: format!("svc-{service}"),
        slot,
        spec: Some(spec.clone()),
        spec_version: 1,
        desired_state: TaskState::Running as i32,
        status: Some(TaskStatus {
            state: state as i32,
            ..Default::default()
        }),
        version: 1,
        ..Default::default()
    }
}

fn build(nodes: &[Node], workload: &[(ServiceSpec, usize, Vec<usize>)]) -> Vec<Task> {
    let mut tasks = Vec::new();
    for (s, (spec, pending, running)) in workload.iter().enumerate() {
        for i in 0..*pending {
            tasks.push(task(
                format!("p-{s}-{i}"),
                s,
                i as u64 + 1,
                spec,
                TaskState::Pending,
            ));
        }
        // Existing tasks sit where the test says, without checks: the
        // scheduler must account for them, not judge them. Specs with host
        // ports are left out so the existing state has no port collision.
        if spec.ports.is_empty() {
            for (i, n) in running.iter().enumerate() {
                if let Some(node) = nodes.get(*n) {
                    let mut t = task(
                        format!("r-{s}-{i}"),
                        s,
                        100 + i as u64,
                        spec,
                        TaskState::Running,
                    );
                    t.node_id = node.id.clone();
                    tasks.push(t);
                }
            }
        }
    }
    tasks
}

/// The tasks after applying the scheduler's puts.
fn apply(tasks: &[Task], ops: &[berth_proto::store::Op]) -> Vec<Task> {
    let mut by_id: HashMap<String, Task> =
        tasks.iter().map(|t| (t.id.clone(), t.clone())).collect();
    for o in ops {
        if let Some(op::Op::Put(p)) = &o.op
            && let Some(Kind::Task(t)) = p.object.as_ref().and_then(|o| o.kind.clone())
        {
            assert_eq!(p.version, by_id[&t.id].version, "put at the version read");
            by_id.insert(t.id.clone(), *t);
        } else {
            panic!("the scheduler only puts tasks: {o:?}");
        }
    }
    let mut out: Vec<Task> = by_id.into_values().collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

fn max_per_node(t: &Task) -> u64 {
    t.spec
        .as_ref()
        .and_then(|s| s.placement.as_ref())
        .map_or(0, |p| p.max_replicas_per_node)
}

/// Nodes with plenty of everything, each in zone a, b, c or none.
fn roomy(zones: &[Option<&'static str>]) -> Vec<Node> {
    zones
        .iter()
        .enumerate()
        .map(|(i, zone)| Node {
            id: format!("node-{i:02}"),
            status: NodeStatus::Ready as i32,
            availability: NodeAvailability::Active as i32,
            resources: Some(Resources {
                milli_cpus: 1_000_000,
                memory_bytes: 1 << 40,
                pids: 0,
            }),
            labels: zone
                .map(|z| [("zone".to_string(), z.to_string())].into())
                .unwrap_or_default(),
            ..Default::default()
        })
        .collect()
}

fn capacity_of(node: &Node) -> Demand {
    NodeLoad::new(node).capacity
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn placements_respect_filters_and_pending_means_nothing_fits(
        nodes in arb_nodes(),
        workload in arb_workload(),
    ) {
        let tasks = build(&nodes, &workload);
        let ops = schedule(&nodes, &tasks, 1_000);
        let after = apply(&tasks, &ops);
        let by_node: HashMap<&str, &Node> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        let newly: HashSet<&str> = tasks
            .iter()
            .filter(|t| t.node_id.is_empty())
            .map(|t| t.id.as_str())
            .collect();

        let mut used: HashMap<&str, Demand> = HashMap::new();
        let mut ports: HashMap<&str, HashSet<(i32, u32)>> = HashMap::new();
        for t in after.iter().filter(|t| !t.node_id.is_empty()) {
            let node = by_node[t.node_id.as_str()];
            let d = Demand::of(t.spec.as_ref());
            let u = used.entry(node.id.as_str()).or_default();
            u.milli_cpus += d.milli_cpus;
            u.memory_bytes += d.memory_bytes;
            if newly.contains(t.id.as_str()) {
                prop_assert_eq!(t.status.as_ref().map(|s| s.state), Some(TaskState::Assigned as i32));
                prop_assert!(ready_and_active(node), "placed on {} which is not ready+active", node.id);
                let cs = parse_all(t.spec.as_ref().expect("spec")).expect("valid");
                prop_assert!(first_unsatisfied(&cs, node).is_none(), "constraint broken on {}", node.id);
            }
            for p in host_ports(t.spec.as_ref()) {
                prop_assert!(ports.entry(node.id.as_str()).or_default().insert(p), "port {p:?} twice on {}", node.id);
            }
        }
        // No node gets a task of a service beyond its limit per node (tasks
        // already there are not judged).
        let mut per_node: HashMap<(&str, &str), (u64, bool)> = HashMap::new();
        for t in after.iter().filter(|t| !t.node_id.is_empty()) {
            let entry = per_node.entry((t.node_id.as_str(), t.service_id.as_str())).or_default();
            entry.0 += 1;
            entry.1 |= newly.contains(t.id.as_str());
        }
        for t in after.iter().filter(|t| newly.contains(t.id.as_str()) && !t.node_id.is_empty()) {
            let max = max_per_node(t);
            let (count, _) = per_node[&(t.node_id.as_str(), t.service_id.as_str())];
            let before = tasks
                .iter()
                .filter(|b| b.node_id == t.node_id && b.service_id == t.service_id)
                .count() as u64;
            prop_assert!(max == 0 || count <= max.max(before), "{} over max {max} on {}", t.service_id, t.node_id);
        }
        // Never over-committed beyond what the tasks already there reserved.
        let mut before: HashMap<&str, Demand> = HashMap::new();
        for t in tasks.iter().filter(|t| !t.node_id.is_empty()) {
            let d = Demand::of(t.spec.as_ref());
            let b = before.entry(t.node_id.as_str()).or_default();
            b.milli_cpus += d.milli_cpus;
            b.memory_bytes += d.memory_bytes;
        }
        for (id, u) in &used {
            let cap = capacity_of(by_node[id]);
            let b = before.get(id).copied().unwrap_or_default();
            if u != &b {
                prop_assert!(u.milli_cpus <= cap.milli_cpus.max(b.milli_cpus), "cpu over-committed on {id}");
                prop_assert!(u.memory_bytes <= cap.memory_bytes.max(b.memory_bytes), "memory over-committed on {id}");
            }
        }
        // A task left pending has a reason, and no node could take it now.
        let mut loads: Vec<NodeLoad> = nodes.iter().map(NodeLoad::new).collect();
        for t in after.iter().filter(|t| !t.node_id.is_empty()) {
            if let Some(i) = nodes.iter().position(|n| n.id == t.node_id) {
                loads[i].add(&t.service_id, Demand::of(t.spec.as_ref()), &host_ports(t.spec.as_ref()));
            }
        }
        for t in after.iter().filter(|t| t.node_id.is_empty()) {
            let status = t.status.as_ref().expect("status");
            prop_assert_eq!(status.state, TaskState::Pending as i32);
            prop_assert!(!status.message.is_empty(), "pending {} without a reason", t.id);
            let spec = t.spec.as_ref();
            let cs = parse_all(spec.expect("spec")).expect("valid");
            let ports = host_ports(spec);
            let req = Request {
                constraints: &cs,
                demand: Demand::of(spec),
                ports: &ports,
                service_id: &t.service_id,
                max_per_node: max_per_node(t),
            };
            prop_assert!(explain(&nodes, &loads, &req).is_some(), "{} left pending though a node fits", t.id);
        }
    }

    #[test]
    fn spreads_evenly_when_resources_allow(
        node_count in 1usize..20,
        task_count in 0usize..200,
        existing in prop::collection::vec(0usize..20, 0..10),
    ) {
        let nodes: Vec<Node> = (0..node_count)
            .map(|i| Node {
                id: format!("node-{i:02}"),
                status: NodeStatus::Ready as i32,
                availability: NodeAvailability::Active as i32,
                resources: Some(Resources { milli_cpus: 1_000_000, memory_bytes: 1 << 40, pids: 0 }),
                ..Default::default()
            })
            .collect();
        let spec = ServiceSpec {
            resources: Some(ResourceRequirements {
                reservations: Some(Resources { milli_cpus: 10, memory_bytes: 1 << 20, pids: 0 }),
                limits: None,
            }),
            ..Default::default()
        };
        let mut tasks: Vec<Task> = (0..task_count)
            .map(|i| task(format!("p{i}"), 0, i as u64 + 1, &spec, TaskState::Pending))
            .collect();
        // Another service's tasks do not disturb this one's spread.
        for (i, n) in existing.iter().enumerate() {
            let mut t = task(format!("x{i}"), 1, i as u64 + 1, &spec, TaskState::Running);
            t.node_id = format!("node-{:02}", n % node_count);
            tasks.push(t);
        }
        let after = apply(&tasks, &schedule(&nodes, &tasks, 1));
        let mut counts = vec![0usize; node_count];
        for t in after.iter().filter(|t| t.service_id == "svc-0") {
            let i = nodes.iter().position(|n| n.id == t.node_id).expect("placed");
            counts[i] += 1;
        }
        let max = counts.iter().max().copied().unwrap_or(0);
        let min = counts.iter().min().copied().unwrap_or(0);
        prop_assert!(max - min <= 1, "uneven spread {counts:?}");
        prop_assert_eq!(counts.iter().sum::<usize>(), task_count);
    }

    #[test]
    fn spread_preferences_even_out_the_label_values(
        zones in prop::collection::vec(
            prop::option::of(prop::sample::select(vec!["a", "b", "c"])), 1..12),
        task_count in 0usize..60,
        existing in prop::collection::vec(0usize..12, 0..6),
    ) {
        let nodes = roomy(&zones);
        let spec = ServiceSpec {
            placement: Some(Placement {
                preferences: vec![PlacementPreference { spread: "node.labels.zone".into() }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut tasks: Vec<Task> = (0..task_count)
            .map(|i| task(format!("p{i}"), 0, i as u64 + 1, &spec, TaskState::Pending))
            .collect();
        // Tasks of the service already running count for their zone.
        for (i, n) in existing.iter().enumerate() {
            let mut t = task(format!("r{i}"), 0, 1000 + i as u64, &spec, TaskState::Running);
            t.node_id = format!("node-{:02}", n % nodes.len());
            tasks.push(t);
        }
        let after = apply(&tasks, &schedule(&nodes, &tasks, 1));
        let zone_of = |id: &str| nodes.iter().find(|n| n.id == id).map(|n| n.labels.get("zone").cloned());
        let mut before: HashMap<Option<String>, usize> = HashMap::new();
        let mut counts: HashMap<Option<String>, usize> = HashMap::new();
        for z in &zones {
            before.insert(z.map(str::to_string), 0);
            counts.insert(z.map(str::to_string), 0);
        }
        for t in &tasks {
            if let Some(z) = zone_of(&t.node_id) {
                *before.entry(z).or_default() += 1;
            }
        }
        for t in &after {
            let z = zone_of(&t.node_id).expect("every task placed");
            *counts.entry(z).or_default() += 1;
        }
        // Each new task went to a zone with the fewest: a zone that got one
        // ends at most one above the emptiest zone.
        let min = counts.values().min().copied().unwrap_or(0);
        for (zone, n) in &counts {
            if *n > before[zone] {
                prop_assert!(*n <= min + 1, "zone {zone:?} got tasks up to {n}, min {min}: {counts:?} (before {before:?})");
            }
        }
        prop_assert_eq!(after.len(), tasks.len());
    }

    #[test]
    fn the_limit_per_node_places_exactly_what_fits(
        node_count in 1usize..8,
        max in 1u64..4,
        task_count in 0usize..30,
    ) {
        let nodes = roomy(&vec![None; node_count]);
        let spec = ServiceSpec {
            placement: Some(Placement { max_replicas_per_node: max, ..Default::default() }),
            ..Default::default()
        };
        let tasks: Vec<Task> = (0..task_count)
            .map(|i| task(format!("p{i}"), 0, i as u64 + 1, &spec, TaskState::Pending))
            .collect();
        let after = apply(&tasks, &schedule(&nodes, &tasks, 1));
        let room = node_count * max as usize;
        let placed = after.iter().filter(|t| !t.node_id.is_empty()).count();
        prop_assert_eq!(placed, task_count.min(room));
        let word = if max == 1 { "replica" } else { "replicas" };
        let nodes_word = if node_count == 1 { "node" } else { "nodes" };
        let why = format!("max {max} {word} per node reached on {node_count} {nodes_word}");
        for t in after.iter().filter(|t| t.node_id.is_empty()) {
            prop_assert_eq!(t.status.as_ref().map(|s| s.message.as_str()), Some(why.as_str()));
        }
    }
}
