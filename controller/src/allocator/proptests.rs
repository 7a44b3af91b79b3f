//! Random histories through whole leader rounds (orchestrator, scheduler,
//! allocator): services come, scale and go, tasks fail, nodes leave. After
//! every round: no two live tasks share an address, no two nodes share a
//! block, a live task's address is in a block of its node, VIPs are unique
//! and outside every block, a task that waits says why, and every block
//! reaches the agents as the range and gateway the allocator handed out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use berth_proto::net::{Block, parse_subnet};
use berth_proto::store::object::Kind;
use berth_proto::store::{Op, op};
use berth_proto::v1::service_spec::Mode;
use berth_proto::v1::{
    Assignments, Network, Node, NodeAvailability, NodeStatus, ReplicatedMode, Resources,
    RestartCondition, RestartPolicy, Service, ServiceSpec, TaskState,
};
use proptest::prelude::*;
use prost::Message as _;

use super::blocks::{Layout, Pool};
use crate::leader::plan_round_with;
use crate::orchestrator::ClusterView;
use crate::orchestrator::task::{is_terminal, observed};

#[derive(Clone, Debug)]
enum Event {
    Create { replicas: u64, networks: u8 },
    Scale { service: usize, replicas: u64 },
    RemoveService(usize),
    FailTask(usize),
    RemoveNode(usize),
    AddNode,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => (1u64..80, 0u8..4).prop_map(|(replicas, networks)| Event::Create { replicas, networks }),
        2 => (0usize..8, 0u64..120).prop_map(|(service, replicas)| Event::Scale { service, replicas }),
        1 => (0usize..8).prop_map(Event::RemoveService),
        3 => (0usize..400).prop_map(Event::FailTask),
        1 => (0usize..6).prop_map(Event::RemoveNode),
        1 => Just(Event::AddNode),
    ]
}

fn node(i: usize) -> Node {
    Node {
        id: format!("node-{i:02}"),
        name: format!("n{i}"),
        resources: Some(Resources {
            milli_cpus: 1_000_000,
            memory_bytes: 1 << 40,
            pids: 0,
        }),
        status: NodeStatus::Ready as i32,
        availability: NodeAvailability::Active as i32,
        ..Default::default()
    }
}

fn networks() -> Vec<Network> {
    let net = |name: &str, subnet: &str, vxlan_id| Network {
        id: format!("net-{name}"),
        name: name.into(),
        subnet: subnet.into(),
        vxlan_id,
        ..Default::default()
    };
    // Small subnets so exhaustion happens: 3 and 7 blocks.
    vec![
        net("berth", "10.96.0.0/24", 4096),
        net("red", "10.97.0.0/23", 4097),
    ]
}

fn apply(view: &mut ClusterView, ops: &[Op], revision: &mut u64) {
    for o in ops {
        *revision += 1;
        match &o.op {
            Some(op::Op::Put(p)) => match p.object.as_ref().and_then(|o| o.kind.clone()) {
                Some(Kind::Task(mut t)) => {
                    t.version = *revision;
                    match view.tasks.iter_mut().find(|x| x.id == t.id) {
                        Some(slot) => *slot = t,
                        None => view.tasks.push(t),
                    }
                }
                Some(Kind::Node(mut n)) => {
                    n.version = *revision;
                    if let Some(slot) = view.nodes.iter_mut().find(|x| x.id == n.id) {
                        *slot = n;
                    }
                }
                Some(Kind::Service(mut s)) => {
                    s.version = *revision;
                    if let Some(slot) = view.services.iter_mut().find(|x| x.id == s.id) {
                        *slot = s;
                    }
                }
                _ => {}
            },
            Some(op::Op::Delete(d)) if d.table == "task" => view.tasks.retain(|t| t.id != d.id),
            _ => {}
        }
    }
}

fn check(view: &ClusterView, nets: &[Network]) -> Result<(), TestCaseError> {
    let layouts: BTreeMap<&str, Layout> = nets
        .iter()
        .map(|n| {
            let subnet = parse_subnet(&n.subnet).expect("subnet");
            (
                n.name.as_str(),
                Layout::of(&n.name, subnet).expect("layout"),
            )
        })
        .collect();
    // Blocks: unique across nodes, inside the layout.
    let mut owner: BTreeMap<(String, Block), String> = BTreeMap::new();
    for node in &view.nodes {
        for network in node.network_blocks.keys() {
            let layout = layouts.get(network.as_str());
            prop_assert!(layout.is_some(), "blocks of unknown network {network}");
            for block in node.blocks_in(network) {
                let block = block.expect("stored block is a block");
                prop_assert!(
                    layout.is_some_and(|l| l.is_block(&block)),
                    "{block} outside {network}"
                );
                let prev = owner.insert((network.clone(), block), node.id.clone());
                prop_assert!(prev.is_none(), "block {block} of {network} held twice");
            }
        }
    }
    // Live task addresses: unique, in a block of their node.
    let mut seen: BTreeSet<(String, Ipv4Addr)> = BTreeSet::new();
    for task in &view.tasks {
        let state = observed(task);
        if is_terminal(state) {
            continue;
        }
        if task.node_id.is_empty()
            && state == TaskState::Pending as i32
            && task.desired_state <= TaskState::Running as i32
        {
            let msg = task
                .status
                .as_ref()
                .map(|s| s.message.as_str())
                .unwrap_or("");
            prop_assert!(!msg.is_empty(), "pending task {} says nothing", task.id);
        }
        if !task.node_id.is_empty() && task.desired_state <= TaskState::Running as i32 {
            let wanted = task
                .spec
                .as_ref()
                .map(|s| s.networks.len())
                .unwrap_or(0)
                .max(1);
            prop_assert_eq!(
                task.addresses.len(),
                wanted,
                "placed task {} lacks addresses",
                &task.id
            );
        }
        for (network, text) in &task.addresses {
            let addr = text.addr();
            prop_assert!(
                seen.insert((network.clone(), addr)),
                "{text} of {network} used twice"
            );
            let block = Layout::block_of(addr).expect("a block around the address");
            prop_assert!(block.holds(addr), "{text} is no task address of {block}");
            let holder = owner.get(&(network.clone(), block));
            if view.nodes.iter().any(|n| n.id == task.node_id) {
                prop_assert_eq!(
                    holder,
                    Some(&task.node_id),
                    "{} of task {} not in a block of its node",
                    text,
                    &task.id
                );
            } else {
                prop_assert!(
                    holder.is_none(),
                    "{} of task {} on a gone node is in another node's block",
                    text,
                    &task.id
                );
            }
        }
    }
    // VIPs: unique, in the VIP range, in no block.
    let mut vips: BTreeSet<(String, Ipv4Addr)> = BTreeSet::new();
    for service in &view.services {
        for (network, text) in &service.virtual_ips {
            let addr = text.addr();
            let layout = layouts
                .get(network.as_str())
                .expect("vip of a known network");
            prop_assert!(layout.vips.contains(&addr));
            prop_assert!(!owner.keys().any(|(n, b)| n == network && b.contains(addr)));
            prop_assert!(vips.insert((network.clone(), addr)), "vip {text} twice");
        }
    }
    agents_read_what_was_allocated(view, nets, &layouts)
}

/// The overlay contract: what the allocator handed out, sent to an agent as
/// the bytes of an assignment set, is read with the readers of the agent's
/// view (`Node::blocks_in`, `Block::holds`, `Block::gateway`,
/// `Block::interface`) as the same ranges and gateways.
fn agents_read_what_was_allocated(
    view: &ClusterView,
    nets: &[Network],
    layouts: &BTreeMap<&str, Layout>,
) -> Result<(), TestCaseError> {
    let sent = Assignments {
        tasks: view.tasks.clone(),
        networks: nets.to_vec(),
        nodes: view.nodes.clone(),
        ..Default::default()
    };
    let got = Assignments::decode(sent.encode_to_vec().as_slice()).expect("decode");
    prop_assert_eq!(&got, &sent);
    for (name, layout) in layouts {
        // The allocator's reading of the blocks, with its layout checks.
        let pool = Pool::new(name, *layout, &view.nodes);
        for node in &got.nodes {
            let mine: Vec<Block> = node
                .blocks_in(name)
                .collect::<Result<_, _>>()
                .expect("every block the allocator wrote reads as a block");
            let allocated: Vec<Block> = pool
                .blocks_of(&node.id)
                .map(|b| b.iter().copied().collect())
                .unwrap_or_default();
            prop_assert_eq!(&mine, &allocated, "blocks of {} in {}", &node.id, name);
            for task in got.tasks.iter().filter(|t| t.node_id == node.id) {
                if is_terminal(observed(task)) {
                    continue;
                }
                let Some(address) = task.addresses.get(*name) else {
                    continue;
                };
                let holders: Vec<&Block> =
                    mine.iter().filter(|b| b.holds(address.addr())).collect();
                prop_assert_eq!(holders.len(), 1, "{} of {} in one block", address, &task.id);
                let block = holders[0];
                prop_assert_eq!(Some(*block), Layout::block_of(address.addr()));
                prop_assert_eq!(Ok(block.interface(address.addr())), address.net());
                let gateway = block.gateway();
                prop_assert!(block.contains(gateway) && gateway != block.network());
                prop_assert!(
                    !got.tasks.iter().any(|t| !is_terminal(observed(t))
                        && t.addresses.get(*name).is_some_and(|a| a.addr() == gateway)),
                    "gateway {} of {} is a task's address",
                    gateway,
                    block
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn addresses_blocks_and_vips_stay_unique(events in proptest::collection::vec(event(), 1..24)) {
        let nets = networks();
        let mut view = ClusterView {
            nodes: (0..3).map(node).collect(),
            ..Default::default()
        };
        let mut next_node = 3;
        let mut revision = 1u64;
        let mut ids = 0u64;
        for (step, event) in events.iter().enumerate() {
            match event {
                Event::Create { replicas, networks } => {
                    let names: Vec<String> = match networks {
                        0 => vec![],
                        1 => vec!["berth".into()],
                        2 => vec!["red".into()],
                        _ => vec!["berth".into(), "red".into()],
                    };
                    view.services.push(Service {
                        id: format!("svc-{step:02}"),
                        spec: Some(ServiceSpec {
                            name: format!("s{step}"),
                            image: "busybox".into(),
                            mode: Some(Mode::Replicated(ReplicatedMode { replicas: *replicas })),
                            networks: names,
                            restart_policy: Some(RestartPolicy {
                                condition: RestartCondition::Any as i32,
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        spec_version: 1,
                        ..Default::default()
                    });
                }
                Event::Scale { service, replicas } => {
                    let n = view.services.len();
                    if n > 0 && let Some(spec) = view.services[service % n].spec.as_mut() {
                        spec.mode = Some(Mode::Replicated(ReplicatedMode { replicas: *replicas }));
                    }
                }
                Event::RemoveService(i) => {
                    let n = view.services.len();
                    if n > 0 {
                        view.services.remove(i % n);
                    }
                }
                Event::FailTask(i) => {
                    let n = view.tasks.len();
                    if n > 0 {
                        let task = &mut view.tasks[i % n];
                        if !task.node_id.is_empty() && let Some(s) = task.status.as_mut() {
                            s.state = TaskState::Failed as i32;
                        }
                    }
                }
                Event::RemoveNode(i) => {
                    let n = view.nodes.len();
                    if n > 1 {
                        view.nodes.remove(i % n);
                    }
                }
                Event::AddNode => {
                    view.nodes.push(node(next_node));
                    next_node += 1;
                }
            }
            // A few rounds per event, as the leader loop would run them.
            for _ in 0..3 {
                let ops = plan_round_with(&view, &nets, 1_000 + step as i64 * 100_000, &mut || {
                    ids += 1;
                    format!("t{ids:06}")
                });
                apply(&mut view, &ops, &mut revision);
                check(&view, &nets)?;
            }
        }
    }
}
