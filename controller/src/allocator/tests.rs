//! The allocator inside a leader round: addresses, blocks and VIPs arrive with
//! the placement, a task without an address stays PENDING with the reason, and
//! a settled state needs nothing.

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Op, op};
use berth_proto::v1::service_spec::Mode;
use berth_proto::v1::{
    Network, NetworkBlocks, Node, NodeAvailability, NodeStatus, ReplicatedMode, Resources, Service,
    ServiceSpec, Task, TaskState,
};

use super::subnets::{self, DEFAULT_NETWORK};
use crate::planner::plan_round_with;
use crate::store::ClusterView;

fn node(name: &str) -> Node {
    Node {
        id: format!("id-{name}"),
        name: name.into(),
        resources: Some(Resources {
            milli_cpus: 64_000,
            memory_bytes: 64 << 30,
            pids: 0,
        }),
        status: NodeStatus::Ready as i32,
        availability: NodeAvailability::Active as i32,
        version: 1,
        ..Default::default()
    }
}

fn service(id: &str, replicas: u64, networks: &[&str]) -> Service {
    Service {
        id: id.into(),
        spec: Some(ServiceSpec {
            name: id.into(),
            image: "busybox".into(),
            mode: Some(Mode::Replicated(ReplicatedMode { replicas })),
            networks: networks.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        }),
        spec_version: 1,
        version: 1,
        ..Default::default()
    }
}

fn network(name: &str, subnet: &str, vxlan_id: u32) -> Network {
    Network {
        id: format!("net-{name}"),
        name: name.into(),
        subnet: subnet.into(),
        vxlan_id,
        version: 1,
        ..Default::default()
    }
}

/// Applies a round's operations to the view as the store would.
fn apply(view: &mut ClusterView, ops: &[Op]) {
    for o in ops {
        let Some(op::Op::Put(p)) = &o.op else {
            continue;
        };
        match p.object.as_ref().and_then(|o| o.kind.clone()) {
            Some(Kind::Task(t)) => match view.tasks.iter_mut().find(|x| x.id == t.id) {
                Some(slot) => *slot = *t,
                None => view.tasks.push(*t),
            },
            Some(Kind::Node(n)) => {
                if let Some(slot) = view.nodes.iter_mut().find(|x| x.id == n.id) {
                    *slot = n;
                }
            }
            Some(Kind::Service(s)) => {
                if let Some(slot) = view.services.iter_mut().find(|x| x.id == s.id) {
                    *slot = *s;
                }
            }
            _ => {}
        }
    }
}

fn round(view: &mut ClusterView, networks: &[Network], n: &mut u32) -> Vec<Op> {
    let ops = plan_round_with(view, networks, 5, &mut || {
        *n += 1;
        format!("t{:04}", *n)
    });
    apply(view, &ops);
    ops
}

/// "CIDR,CIDR".
fn blocks_text(blocks: &NetworkBlocks) -> String {
    let texts: Vec<String> = blocks.blocks.iter().map(ToString::to_string).collect();
    texts.join(",")
}

fn state(t: &Task) -> i32 {
    t.status.as_ref().map(|s| s.state).unwrap_or(0)
}

#[test]
fn placed_tasks_get_addresses_from_their_nodes_blocks_and_services_a_vip() {
    let networks = vec![
        network(DEFAULT_NETWORK, "10.96.0.0/16", 4096),
        network("back", "10.97.0.0/16", 4097),
    ];
    let mut view: ClusterView = ClusterView {
        settings: Default::default(),
        nodes: vec![node("a"), node("b")],
        services: vec![service("web", 4, &[]), service("db", 2, &["back", "back"])],
        tasks: Vec::new(),
        volumes: Vec::new(),
    };
    let mut n = 0;
    let ops = round(&mut view, &networks, &mut n);
    // Node block lists first, then one op per task, then the services.
    assert!(
        matches!(&ops[0].op, Some(op::Op::Put(p)) if matches!(p.object.as_ref().and_then(|o| o.kind.as_ref()), Some(Kind::Node(_))))
    );
    assert_eq!(ops.len(), 2 + 6 + 2);
    for t in &view.tasks {
        assert_eq!(state(t), TaskState::Assigned as i32, "{t:?}");
        let want = if t.service_id == "web" {
            DEFAULT_NETWORK
        } else {
            "back"
        };
        assert_eq!(t.addresses.keys().collect::<Vec<_>>(), vec![want]);
        let addr = t.addresses[want].to_string();
        assert!(addr.ends_with("/26"), "{addr}");
        let node = view.nodes.iter().find(|x| x.id == t.node_id).expect("node");
        let block = blocks_text(&node.network_blocks[want]);
        let prefix = if want == DEFAULT_NETWORK {
            "10.96.0."
        } else {
            "10.97.0."
        };
        assert!(
            addr.starts_with(prefix) && block.starts_with(prefix),
            "{addr} {block}"
        );
    }
    let mut blocks: Vec<String> = view
        .nodes
        .iter()
        .map(|x| blocks_text(&x.network_blocks[DEFAULT_NETWORK]))
        .collect();
    blocks.sort();
    assert_eq!(blocks, vec!["10.96.0.0/26", "10.96.0.64/26"]);
    let web = view.services.iter().find(|s| s.id == "web").expect("web");
    assert_eq!(
        web.virtual_ips[DEFAULT_NETWORK].to_string(),
        "10.96.240.0/16"
    );
    let db = view.services.iter().find(|s| s.id == "db").expect("db");
    assert_eq!(db.virtual_ips.keys().collect::<Vec<_>>(), vec!["back"]);
    // Settled: nothing more to write.
    let ops = round(&mut view, &networks, &mut n);
    assert!(ops.is_empty(), "{ops:?}");
}

#[test]
fn exhaustion_keeps_tasks_pending_with_the_reason_and_writes_it_once() {
    let networks = vec![network("tiny", "10.1.2.0/24", 4096)];
    let mut view: ClusterView = ClusterView {
        settings: Default::default(),
        nodes: vec![node("a")],
        services: vec![service("big", 190, &["tiny"])],
        tasks: Vec::new(),
        volumes: Vec::new(),
    };
    let mut n = 0;
    round(&mut view, &networks, &mut n);
    let (placed, waiting): (Vec<Task>, Vec<Task>) = view
        .tasks
        .iter()
        .cloned()
        .partition(|t| !t.node_id.is_empty());
    assert_eq!(placed.len(), 3 * 61);
    assert_eq!(waiting.len(), 190 - 3 * 61);
    for t in &waiting {
        let status = t.status.as_ref().expect("status");
        assert_eq!(status.state, TaskState::Pending as i32);
        assert_eq!(
            status.message,
            "network tiny has no free address: 10.1.2.0/24 is exhausted (3 blocks of /26 in use)"
        );
        assert!(t.addresses.is_empty());
    }
    let ops = round(&mut view, &networks, &mut n);
    assert!(
        ops.is_empty(),
        "an unchanged reason is not written again: {ops:?}"
    );
    // One task ends: its address is free and a waiting task is placed with it.
    let freed = placed[0].id.clone();
    let freed_addr = placed[0].addresses["tiny"];
    let t = view.tasks.iter_mut().find(|t| t.id == freed).expect("task");
    t.status.as_mut().expect("status").state = TaskState::Failed as i32;
    t.desired_state = TaskState::Shutdown as i32;
    round(&mut view, &networks, &mut n);
    let live_with = view
        .tasks
        .iter()
        .filter(|t| {
            state(t) < TaskState::Complete as i32 && t.addresses.get("tiny") == Some(&freed_addr)
        })
        .count();
    assert_eq!(live_with, 1, "the freed address is reused once");
}

#[test]
fn unknown_networks_and_a_cluster_without_networks() {
    let mut view: ClusterView = ClusterView {
        settings: Default::default(),
        nodes: vec![node("a")],
        services: vec![service("lost", 1, &["nowhere"]), service("plain", 1, &[])],
        tasks: Vec::new(),
        volumes: Vec::new(),
    };
    let mut n = 0;
    round(&mut view, &[], &mut n);
    let lost = view
        .tasks
        .iter()
        .find(|t| t.service_id == "lost")
        .expect("lost");
    assert!(lost.node_id.is_empty());
    assert_eq!(
        lost.status.as_ref().map(|s| s.message.as_str()),
        Some("network nowhere does not exist")
    );
    let plain = view
        .tasks
        .iter()
        .find(|t| t.service_id == "plain")
        .expect("plain");
    assert_eq!(state(plain), TaskState::Assigned as i32);
    assert!(plain.addresses.is_empty(), "no default network: no address");
}

#[test]
fn blocks_of_removed_networks_are_dropped_and_new_cluster_setup_is_deterministic() {
    let mut a = node("a");
    a.network_blocks.insert(
        "gone".into(),
        NetworkBlocks {
            blocks: vec!["10.99.0.0/26".parse().expect("block")],
        },
    );
    let view: ClusterView = ClusterView {
        settings: Default::default(),
        nodes: vec![a],
        services: Vec::new(),
        tasks: Vec::new(),
        volumes: Vec::new(),
    };
    let ops = plan_round_with(&view, &[], 1, &mut || "x".into());
    assert_eq!(ops.len(), 1);
    let Some(op::Op::Put(p)) = &ops[0].op else {
        panic!("a put: {ops:?}");
    };
    assert_eq!(p.expect, Expect::Version as i32);
    let Some(Kind::Node(n)) = p.object.as_ref().and_then(|o| o.kind.clone()) else {
        panic!("a node: {p:?}");
    };
    assert!(n.network_blocks.is_empty());
    let first = subnets::prepare(&[], &subnets::NewClusterNetwork::default(), 1, &mut || {
        "x".into()
    });
    let again = subnets::prepare(&[], &subnets::NewClusterNetwork::default(), 1, &mut || {
        "x".into()
    });
    assert_eq!(first, again);
}

#[test]
fn a_service_without_a_vip_keeps_its_tasks_pending_with_the_reason() {
    let networks = vec![network("tiny", "10.1.2.0/24", 4096)];
    let mut view: ClusterView = ClusterView {
        settings: Default::default(),
        nodes: vec![node("a")],
        services: (0..16)
            .map(|i| service(&format!("s{i:02}"), 1, &["tiny"]))
            .collect(),
        tasks: Vec::new(),
        volumes: Vec::new(),
    };
    let mut n = 0;
    round(&mut view, &networks, &mut n);
    let last = view
        .tasks
        .iter()
        .find(|t| t.service_id == "s15")
        .expect("task");
    assert!(last.node_id.is_empty());
    assert_eq!(
        last.status.as_ref().map(|s| s.message.as_str()),
        Some("network tiny has no free VIP: its range 10.1.2.240/28 is exhausted")
    );
    let placed = view.tasks.iter().filter(|t| !t.node_id.is_empty()).count();
    assert_eq!(placed, 15);
}

/// The leader loop on a real one-member Raft cluster: the first round creates
/// the default network, and the tasks it places arrive with addresses from
/// blocks recorded on their nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_loop_creates_the_default_network_and_addresses_tasks() {
    use crate::planner::{PlannerSettings, run};
    use crate::store::put;
    use crate::store::{read_networks, read_view};
    use berth_proto::store::{Object, Txn};
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("tempdir");
    let raft = crate::server::test_leader(dir.path()).await;
    let wrap = |kind| Object { kind: Some(kind) };
    let mut web = service("web", 3, &[]);
    web.version = 0;
    let mut ops: Vec<Op> = ["a", "b"]
        .iter()
        .map(|n| {
            let mut n = node(n);
            n.version = 0;
            put(wrap(Kind::Node(n)), Expect::Absent, 0)
        })
        .collect();
    ops.push(put(wrap(Kind::Service(Box::new(web))), Expect::Absent, 0));
    let result = raft.propose(Txn { ops }).await.expect("propose");
    assert!(result.error.is_empty(), "{}", result.error);
    let driver = tokio::spawn(run(
        raft.clone(),
        PlannerSettings {
            tick: Duration::from_millis(100),
            ..Default::default()
        },
        crate::clock::system(),
    ));
    let mut done = None;
    for _ in 0..600 {
        let view = read_view(raft.state()).expect("read");
        let placed = view
            .tasks
            .iter()
            .filter(|t| !t.node_id.is_empty() && t.addresses.contains_key(DEFAULT_NETWORK))
            .count();
        let vip = view
            .services
            .iter()
            .any(|s| s.virtual_ips.contains_key(DEFAULT_NETWORK));
        if placed == 3 && vip {
            done = Some(view);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    driver.abort();
    let view = done.expect("three tasks addressed and a VIP within 30 s");
    let networks = read_networks(raft.state()).expect("networks");
    assert_eq!(networks.len(), 1);
    assert_eq!(networks[0].name, DEFAULT_NETWORK);
    assert_eq!(networks[0].subnet, "10.96.0.0/16");
    for task in &view.tasks {
        let node = view
            .nodes
            .iter()
            .find(|n| n.id == task.node_id)
            .expect("node");
        let blocks = blocks_text(&node.network_blocks[DEFAULT_NETWORK]);
        let addr = task.addresses[DEFAULT_NETWORK].addr();
        let inside = node
            .blocks_in(DEFAULT_NETWORK)
            .any(|b| b.is_ok_and(|b| b.contains(addr)));
        assert!(
            inside,
            "{} outside {blocks}",
            task.addresses[DEFAULT_NETWORK]
        );
    }
}
