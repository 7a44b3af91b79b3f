//! Random histories through whole leader rounds (orchestrator, scheduler,
//! allocator): services come, scale and go, tasks fail, nodes leave. After
//! every round: no two live tasks share an address, no two nodes share a
//! block, a live task's address is in a block of its node, VIPs are unique
//! and outside every block, a task that waits says why, and every block
//! reaches the agents (their own view of an assignment set) as the range and
//! gateway the allocator handed out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

use berth_agent::network::View;
use berth_proto::net::{Block, parse_subnet};
use berth_proto::store::object::Kind;
use berth_proto::store::{Op, op};
use berth_proto::v1::service_spec::Mode;
use berth_proto::v1::{
    Assignments, Network, Node, NodeAvailability, NodeStatus, ReplicatedMode, Resources,
    RestartCondition, RestartPolicy, Service, ServiceSpec, Task, TaskState,
};
use proptest::prelude::*;
use prost::Message as _;

use super::blocks::{BLOCK_PREFIX, Layout, Pool};
use crate::orchestrator::task::{is_terminal, observed};
use crate::planner::plan_round_with;
use crate::store::ClusterView;

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
        // The agents' underlay address (the allocator does not read it).
        address: format!("198.18.0.{}", i + 1),
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
                        Some(slot) => *slot = *t,
                        None => view.tasks.push(*t),
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
                        *slot = *s;
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

/// The overlay contract: what the allocator handed out, sent to each node's
/// agent as the bytes of an assignment set, is read by the agent's own view
/// (`berth_agent::network::View`) as the same blocks (local and remote) and,
/// for every live task, the address and prefix length the allocator gave it
/// and the gateway of the allocator's block, which no task holds.
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
    let wire = Assignments::decode(sent.encode_to_vec().as_slice()).expect("decode");
    prop_assert_eq!(&wire, &sent);
    // The allocator's reading of the blocks, with its layout checks.
    let pools: BTreeMap<&str, Pool> = layouts
        .iter()
        .map(|(name, layout)| (*name, Pool::new(name, *layout, &view.nodes)))
        .collect();
    let allocated = |name: &str, node: &str| -> Vec<Block> {
        pools
            .get(name)
            .and_then(|p| p.blocks_of(node))
            .map(|b| b.iter().copied().collect())
            .unwrap_or_default()
    };
    let live = |t: &&Task| !is_terminal(observed(t));
    let held: BTreeSet<(&str, Ipv4Addr)> = view
        .tasks
        .iter()
        .filter(live)
        .flat_map(|t| t.addresses.iter().map(|(n, a)| (n.as_str(), a.addr())))
        .collect();
    for node in &wire.nodes {
        let agent = View::from_assignments(&Assignments {
            node_id: node.id.clone(),
            ..wire.clone()
        });
        for name in layouts.keys() {
            let mine = allocated(name, &node.id);
            let net = agent
                .networks
                .get(*name)
                .expect("the agent knows the network");
            prop_assert_eq!(
                &net.local_blocks,
                &mine,
                "blocks of {} in {}",
                &node.id,
                name
            );
            let plan = agent.plan.networks.iter().find(|p| p.name == *name);
            prop_assert_eq!(
                plan.is_some(),
                !mine.is_empty(),
                "{} plans {}",
                &node.id,
                name
            );
            for remote in plan.map(|p| p.remotes.as_slice()).unwrap_or_default() {
                let other = wire
                    .nodes
                    .iter()
                    .find(|n| n.address == remote.underlay_ip.to_string())
                    .expect("a remote is a node");
                prop_assert_eq!(&remote.blocks, &allocated(name, &other.id));
            }
        }
        for task in view
            .tasks
            .iter()
            .filter(live)
            .filter(|t| t.node_id == node.id)
        {
            let requests = agent
                .attach_requests(task, Path::new("/run/berth/netns/t"))
                .map_err(|e| TestCaseError::fail(format!("task {}: {e}", task.id)))?;
            prop_assert_eq!(requests.len(), task.addresses.len());
            for (request, (name, address)) in requests.iter().zip(&task.addresses) {
                let block = Layout::block_of(address.addr()).expect("a block");
                prop_assert!(allocated(name, &node.id).contains(&block));
                prop_assert_eq!(request.address, address.addr());
                prop_assert_eq!(request.prefix, BLOCK_PREFIX);
                prop_assert_eq!(u32::from(request.prefix), address.prefix_len());
                prop_assert_eq!(request.gateway, block.gateway());
                prop_assert!(block.contains(request.gateway) && request.gateway != block.network());
                prop_assert!(
                    !held.contains(&(name.as_str(), request.gateway)),
                    "gateway {} of {} is a task's address",
                    request.gateway,
                    block
                );
            }
            prop_assert_eq!(
                agent.nameserver(task),
                requests.first().map(|r| r.gateway),
                "the DNS server of {}",
                &task.id
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn addresses_blocks_and_vips_stay_unique(events in proptest::collection::vec(event(), 1..24)) {
        let nets = networks();
        let mut view: ClusterView = ClusterView {
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
