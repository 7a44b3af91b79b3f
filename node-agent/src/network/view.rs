//! What this host's network should look like, computed from one assignment set:
//! the overlay plan (bridges, VXLANs, routes to the other nodes' blocks), the
//! networks by name, and the service endpoints. A plain function of the input,
//! so it is tested without a kernel.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use berth_proto::net::{Block, Ipv4Net, Ipv4Prefix, parse_subnet};
use berth_proto::v1::{Assignments, Endpoint, Node, PortProtocol, PublishMode, Task};

use crate::dataplane::dns::DnsTable;
use crate::dataplane::lb::{LbPlan, Protocol, PublishedRule, VipRule};
use crate::dataplane::names::LEGACY_VXLAN_PORT;
use crate::dataplane::{AttachRequest, LocalPlan, NetworkPlan, RemoteNode};

/// One overlay network as this host knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetView {
    pub vni: u32,
    pub subnet: Ipv4Net,
    /// This host's blocks (empty: no local task is on the network).
    pub local_blocks: Vec<Block>,
}

impl NetView {
    /// The local block that gives `address` to a task: its gateway is the
    /// task's default route and DNS server, its prefix length the task's.
    pub fn block_of(&self, address: &Ipv4Prefix) -> Option<&Block> {
        self.local_blocks.iter().find(|b| b.holds(address.addr()))
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    /// This node's id.
    pub node_id: String,
    pub plan: LocalPlan,
    pub networks: BTreeMap<String, NetView>,
    pub endpoints: Vec<Endpoint>,
    /// (task id, VNI) of every network join of this node's tasks: the veths
    /// that must stay on their bridges.
    pub ports: Vec<(String, u32)>,
    /// The overlay addresses of this node's tasks that are on more than one
    /// network: their DNS server (their first network's) also answers them
    /// the names of their other networks.
    pub multi_network: Vec<BTreeMap<String, Ipv4Prefix>>,
    /// The set's shared sequence: acknowledged to the leader once this view's
    /// DNS answers and load balancer are in the kernel (drain before stop).
    pub shared_seq: u64,
    /// Services whose serving tasks the set carries (`Assignments.followed`,
    /// sorted); those with published ports carry them anyway.
    pub followed: Vec<String>,
    /// The leader sends endpoints on demand (`Assignments.heads_on_demand`).
    pub heads_on_demand: bool,
    /// Names asked for that the leader answered (`Assignments.answered_names`).
    pub answered_names: Vec<String>,
}

/// "IP" or "IP:PORT" (a node's advertised address).
fn underlay_ip(node: &Node) -> Option<Ipv4Addr> {
    let text = node.address.as_str();
    text.parse()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddrV4>().ok().map(|s| *s.ip()))
}

/// The blocks `node` holds in `network`. An entry that is no block is left
/// out (the allocator, which reads with the same rule, drops it from the list).
fn blocks(node: &Node, network: &str) -> Vec<Block> {
    node.blocks_in(network).filter_map(Result::ok).collect()
}

impl View {
    /// The host's view from an assignment set; an assignment set that does not
    /// name this node (an old controller) gives an empty plan.
    pub fn from_assignments(a: &Assignments) -> View {
        let me = a.nodes.iter().find(|n| n.id == a.node_id);
        let mut view = View {
            node_id: a.node_id.clone(),
            endpoints: a.endpoints.clone(),
            shared_seq: a.shared_seq,
            followed: a.followed.clone(),
            heads_on_demand: a.heads_on_demand,
            answered_names: a.answered_names.clone(),
            multi_network: a
                .tasks
                .iter()
                .filter(|t| t.addresses.len() > 1)
                .map(|t| t.addresses.clone())
                .collect(),
            ..View::default()
        };
        for network in &a.networks {
            let Ok(subnet) = parse_subnet(&network.subnet) else {
                continue;
            };
            let local_blocks = me.map(|n| blocks(n, &network.name)).unwrap_or_default();
            view.networks.insert(
                network.name.clone(),
                NetView {
                    vni: network.vxlan_id,
                    subnet,
                    local_blocks: local_blocks.clone(),
                },
            );
            let Some(underlay) = me.and_then(underlay_ip) else {
                continue;
            };
            if local_blocks.is_empty() {
                continue;
            }
            let remotes = a
                .nodes
                .iter()
                .filter(|n| n.id != a.node_id)
                .filter_map(|n| {
                    let blocks = blocks(n, &network.name);
                    let ip = underlay_ip(n)?;
                    (!blocks.is_empty()).then_some(RemoteNode {
                        underlay_ip: ip,
                        blocks,
                    })
                })
                .collect();
            for task in &a.tasks {
                if task.addresses.contains_key(&network.name) {
                    view.ports.push((task.id.clone(), network.vxlan_id));
                }
            }
            view.plan.networks.push(NetworkPlan {
                name: network.name.clone(),
                vni: network.vxlan_id,
                port: match u16::try_from(network.vxlan_port) {
                    Ok(0) | Err(_) => LEGACY_VXLAN_PORT,
                    Ok(port) => port,
                },
                local_blocks,
                underlay_ip: underlay,
                remotes,
            });
        }
        view
    }

    /// What the DNS of `network` answers: `NAME` → the service's VIP in that
    /// network (its tasks' addresses when it has none), `tasks.NAME` → the
    /// running tasks' addresses. Services not on the network are not in it.
    pub fn dns_table(&self, network: &str) -> DnsTable {
        let mut table = self.names_of(network);
        // A task asks its first network's server only (`nameserver`): there
        // it also gets the names of its other networks, by its address.
        let mut others: BTreeMap<&str, DnsTable> = BTreeMap::new();
        for addresses in &self.multi_network {
            let mut networks = addresses.keys();
            if networks.next().map(String::as_str) != Some(network) {
                continue;
            }
            let client = addresses[network].addr();
            for other in networks {
                let names = others.entry(other).or_insert_with(|| self.names_of(other));
                for (name, addrs) in names.iter() {
                    table.insert_for(client, name, addrs.to_vec());
                }
                for (name, service) in names.unfollowed() {
                    table.mark_unfollowed(name, service);
                }
            }
        }
        table
    }

    /// The names of the services on `network`, as every task on it sees them.
    fn names_of(&self, network: &str) -> DnsTable {
        let mut table = DnsTable::new();
        for endpoint in &self.endpoints {
            let tasks: Vec<Ipv4Addr> = endpoint
                .tasks
                .iter()
                .filter_map(|t| t.addresses.get(network))
                .map(Ipv4Prefix::addr)
                .collect();
            let vip = endpoint.virtual_ips.get(network).map(Ipv4Prefix::addr);
            let answer = match vip {
                Some(vip) => vec![vip],
                None if !tasks.is_empty() => tasks.clone(),
                None => continue,
            };
            let followed = berth_proto::assignments::follows(&self.followed, endpoint);
            let names = std::iter::once(&endpoint.service_name).chain(&endpoint.aliases);
            for name in names {
                let tasks_name = format!("tasks.{name}");
                if !followed {
                    // Answered once its tasks are here (the server asks).
                    table.mark_unfollowed(name, &endpoint.service_id);
                    table.mark_unfollowed(&tasks_name, &endpoint.service_id);
                }
                table.insert(name, answer.clone());
                table.insert(&tasks_name, tasks.clone());
            }
        }
        table
    }

    /// What this host's load balancer does: every service VIP of the networks
    /// on this host, and every published port. A published port reaches the
    /// tasks through the service's first network (by name; the controller gives
    /// every node a block in it), all of them in ingress mode, this node's own
    /// in host mode (no rule where it has none).
    pub fn lb_plan(&self) -> LbPlan {
        let vni_of = |network: &str| {
            self.plan
                .networks
                .iter()
                .find(|n| n.name == network)
                .map(|n| n.vni)
        };
        let addresses = |endpoint: &Endpoint, network: &str, mine: bool| -> Vec<Ipv4Addr> {
            endpoint
                .tasks
                .iter()
                .filter(|t| !mine || t.node_id == self.node_id)
                .filter_map(|t| t.addresses.get(network))
                .map(Ipv4Prefix::addr)
                .collect()
        };
        let mut plan = LbPlan {
            networks: self.plan.networks.iter().map(|n| n.vni).collect(),
            ..LbPlan::default()
        };
        for endpoint in &self.endpoints {
            for (network, vip) in &endpoint.virtual_ips {
                let Some(vni) = vni_of(network) else {
                    continue;
                };
                plan.vips.push(VipRule {
                    service: endpoint.service_name.clone(),
                    vni,
                    vip: vip.addr(),
                    backends: addresses(endpoint, network, false),
                });
            }
            let ingress_network = endpoint
                .virtual_ips
                .keys()
                .chain(endpoint.tasks.iter().flat_map(|t| t.addresses.keys()))
                .min();
            let Some(network) = ingress_network.filter(|n| vni_of(n).is_some()) else {
                continue;
            };
            for port in &endpoint.ports {
                let host_mode = port.publish_mode == PublishMode::Host as i32;
                let backends = addresses(endpoint, network, host_mode);
                if host_mode && backends.is_empty() {
                    continue;
                }
                let (Ok(published_port), Ok(target_port)) = (
                    u16::try_from(port.published_port),
                    u16::try_from(port.target_port),
                ) else {
                    continue;
                };
                plan.published.push(PublishedRule {
                    service: endpoint.service_name.clone(),
                    protocol: if port.protocol == PortProtocol::Udp as i32 {
                        Protocol::Udp
                    } else {
                        Protocol::Tcp
                    },
                    published_port,
                    target_port,
                    backends,
                });
            }
        }
        plan
    }

    /// The DNS server a task's resolv.conf names: the gateway of its first
    /// network's local block.
    pub fn nameserver(&self, task: &Task) -> Option<Ipv4Addr> {
        let (name, address) = task.addresses.iter().next()?;
        self.networks
            .get(name)?
            .block_of(address)
            .map(Block::gateway)
    }

    /// How `task` joins its networks (sorted by network name, so `eth0` is
    /// stable), with the namespace at `netns`.
    pub fn attach_requests(&self, task: &Task, netns: &Path) -> Result<Vec<AttachRequest>, String> {
        let mut out = Vec::new();
        for (position, (name, address)) in task.addresses.iter().enumerate() {
            let net = self
                .networks
                .get(name)
                .ok_or_else(|| format!("network {name:?} is unknown on this node"))?;
            let block = net.block_of(address).ok_or_else(|| {
                format!("network {name}: address {address} is in no block of this node")
            })?;
            let interface = block.interface(address.addr());
            out.push(AttachRequest {
                container: task.id.clone(),
                netns: netns.to_path_buf(),
                vni: net.vni,
                address: interface.addr(),
                prefix: interface.prefix_len(),
                gateway: block.gateway(),
                position: u8::try_from(position)
                    .map_err(|_| "a task joins at most 256 networks".to_string())?,
                subnet: net.subnet,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{Network, NetworkBlocks};

    /// A node whose blocks are given as "CIDR,CIDR" per network.
    fn node(id: &str, address: &str, blocks: &[(&str, &str)]) -> Node {
        Node {
            id: id.into(),
            address: address.into(),
            network_blocks: blocks
                .iter()
                .map(|(n, list)| {
                    let blocks = list.split(',').map(|b| b.parse().unwrap()).collect();
                    (n.to_string(), NetworkBlocks { blocks })
                })
                .collect(),
            ..Default::default()
        }
    }

    fn addresses(network: &str, address: &str) -> std::collections::BTreeMap<String, Ipv4Prefix> {
        [(network.to_string(), address.parse().unwrap())].into()
    }

    fn assignments() -> Assignments {
        Assignments {
            node_id: "n1".into(),
            networks: vec![
                Network {
                    name: "berth".into(),
                    subnet: "10.96.0.0/16".into(),
                    vxlan_id: 4096,
                    ..Default::default()
                },
                Network {
                    name: "back".into(),
                    subnet: "10.97.0.0/16".into(),
                    vxlan_id: 4097,
                    ..Default::default()
                },
            ],
            nodes: vec![
                node("n1", "198.18.0.2", &[("berth", "10.96.0.0/26")]),
                node(
                    "n2",
                    "198.18.0.3:7401",
                    &[
                        ("berth", "10.96.0.64/26,10.96.1.0/26"),
                        ("back", "10.97.0.0/26"),
                    ],
                ),
                node("n3", "198.18.0.4", &[]),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn plans_only_networks_with_local_blocks_and_remotes_with_blocks() {
        let view = View::from_assignments(&assignments());
        assert_eq!(view.plan.networks.len(), 1, "{:?}", view.plan);
        let plan = &view.plan.networks[0];
        assert_eq!(plan.vni, 4096);
        assert_eq!(plan.underlay_ip, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(plan.local_blocks, vec!["10.96.0.0/26".parse().unwrap()]);
        assert_eq!(plan.remotes.len(), 1);
        assert_eq!(plan.remotes[0].underlay_ip, Ipv4Addr::new(198, 18, 0, 3));
        assert_eq!(plan.remotes[0].blocks.len(), 2);
        assert!(view.networks["back"].local_blocks.is_empty());
    }

    #[test]
    fn dns_tables_hold_the_services_of_their_network_only() {
        use berth_proto::v1::{Endpoint, EndpointTask};
        let mut a = assignments();
        let task = |id: &str, net: &str, ip: &str| EndpointTask {
            task_id: id.into(),
            addresses: addresses(net, ip),
            ..Default::default()
        };
        a.endpoints = vec![
            Endpoint {
                service_name: "web".into(),
                virtual_ips: addresses("berth", "10.96.240.2/16"),
                tasks: vec![
                    task("t1", "berth", "10.96.0.5/26"),
                    task("t2", "berth", "10.96.0.70/26"),
                ],
                ..Default::default()
            },
            Endpoint {
                service_name: "demo_db".into(),
                virtual_ips: addresses("back", "10.97.240.2/16"),
                tasks: vec![task("t3", "back", "10.97.0.5/26")],
                aliases: vec!["db".into()],
                ..Default::default()
            },
        ];
        let view = View::from_assignments(&a);
        let table = view.dns_table("berth");
        assert_eq!(
            table.lookup("web"),
            Some(&[Ipv4Addr::new(10, 96, 240, 2)][..])
        );
        let mut tasks = table.lookup("tasks.web").unwrap().to_vec();
        tasks.sort();
        assert_eq!(
            tasks,
            vec![Ipv4Addr::new(10, 96, 0, 5), Ipv4Addr::new(10, 96, 0, 70)]
        );
        assert_eq!(table.lookup("db"), None, "db is on another network");
        assert_eq!(table.lookup("demo_db"), None, "db is on another network");
        // A stack service answers to its key in the file too (its alias).
        let back = view.dns_table("back");
        for name in ["demo_db", "db"] {
            assert_eq!(
                back.lookup(name),
                Some(&[Ipv4Addr::new(10, 97, 240, 2)][..]),
                "{name}"
            );
        }
        for name in ["tasks.demo_db", "tasks.db"] {
            assert_eq!(
                back.lookup(name),
                Some(&[Ipv4Addr::new(10, 97, 0, 5)][..]),
                "{name}"
            );
        }
        // A local task on both networks asks its first network's server
        // ("back" sorts first): it, and only it, gets berth's names there too.
        let mut both = addresses("berth", "10.96.0.9/26");
        both.extend(addresses("back", "10.97.0.9/26"));
        a.tasks.push(Task {
            id: "t9".into(),
            addresses: both,
            ..Default::default()
        });
        let view = View::from_assignments(&a);
        let back = view.dns_table("back");
        let client = Some(Ipv4Addr::new(10, 97, 0, 9));
        assert_eq!(
            back.lookup_from(client, "web"),
            Some(&[Ipv4Addr::new(10, 96, 240, 2)][..])
        );
        assert_eq!(
            back.lookup_from(Some(Ipv4Addr::new(10, 97, 0, 5)), "web"),
            None
        );
        assert_eq!(back.lookup_from(client, "db"), back.lookup("db"));
        // berth's own server has nothing extra for it: it never asks there.
        assert_eq!(view.dns_table("berth").lookup_from(client, "db"), None);
    }

    #[test]
    fn a_service_without_vip_answers_its_tasks_and_gets_no_vip_rule() {
        use berth_proto::v1::{Endpoint, EndpointTask};
        let mut a = assignments();
        // A dnsrr service: the controller gives it an endpoint without VIP.
        a.endpoints = vec![Endpoint {
            service_name: "rr".into(),
            tasks: ["10.96.0.5/26", "10.96.0.70/26"]
                .iter()
                .enumerate()
                .map(|(i, ip)| EndpointTask {
                    task_id: format!("t{i}"),
                    addresses: addresses("berth", ip),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }];
        let view = View::from_assignments(&a);
        let table = view.dns_table("berth");
        let want = [Ipv4Addr::new(10, 96, 0, 5), Ipv4Addr::new(10, 96, 0, 70)];
        assert_eq!(table.lookup("rr"), Some(&want[..]));
        assert_eq!(table.lookup("tasks.rr"), Some(&want[..]));
        assert!(view.lb_plan().vips.is_empty(), "no VIP, no balancing rule");
    }

    #[test]
    fn attach_requests_name_gateway_and_position() {
        let view = View::from_assignments(&assignments());
        let task = Task {
            id: "t1".into(),
            addresses: addresses("berth", "10.96.0.5/26"),
            ..Default::default()
        };
        let reqs = view.attach_requests(&task, Path::new("/run/x")).unwrap();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].gateway, Ipv4Addr::new(10, 96, 0, 1));
        assert_eq!(reqs[0].iface(), "eth0");
        assert_eq!(reqs[0].vni, 4096);
        let foreign = Task {
            id: "t2".into(),
            addresses: addresses("berth", "10.96.0.70/26"),
            ..Default::default()
        };
        let err = view
            .attach_requests(&foreign, Path::new("/run/x"))
            .unwrap_err();
        assert!(err.contains("no block of this node"), "{err}");
        let unknown = Task {
            id: "t3".into(),
            addresses: addresses("nope", "10.9.0.5/26"),
            ..Default::default()
        };
        assert!(view.attach_requests(&unknown, Path::new("/run/x")).is_err());
    }
}
