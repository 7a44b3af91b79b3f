//! Network subnets: the default network and a subnet for every network created
//! without one, carved from the cluster CIDR (lowest free /16 first, networks
//! in creation order, so every leader computes the same).
//!
//! The cluster CIDR is chosen when the first leader creates the default network
//! and is kept in Raft state as that network's `berth.cluster-cidr` label; later
//! leaders read it from there (their own setting only applies to a new cluster).

use std::net::Ipv4Addr;

use berth_proto::net::{Ipv4Net, overlaps, parse_subnet};
use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object, Op};
use berth_proto::v1::{Network, Timestamps};

use crate::store::put;

/// The network every task joins when its service lists none.
pub const DEFAULT_NETWORK: &str = "berth";
/// The cluster CIDR of a new cluster.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.96.0.0/12";
/// Label of the default network that records the cluster CIDR.
pub const CLUSTER_CIDR_LABEL: &str = "berth.cluster-cidr";
/// Prefix length of a subnet carved from the cluster CIDR.
pub const NETWORK_PREFIX: u8 = 16;
/// VXLAN ids berth hands out start here (below are left for operators), unless
/// the cluster was made with another base (`--vni-base`).
pub const FIRST_VXLAN_ID: u32 = 4096;
/// The largest VXLAN id (24 bits).
pub const MAX_VXLAN_ID: u32 = (1 << 24) - 1;
/// UDP port of berth's VXLAN devices in a new cluster: neither 4789 (the IANA
/// port, Docker Swarm's) nor 8472 (flannel's, Cilium's), so berth's overlay
/// runs beside theirs on one host.
pub const DEFAULT_VXLAN_PORT: u16 = 7420;
/// The port of network records made before the port was recorded.
pub const LEGACY_VXLAN_PORT: u16 = 4789;

/// What the first leader of a new cluster records on its default network; an
/// existing cluster keeps what it recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewClusterNetwork {
    /// The address space network subnets are carved from.
    pub cidr: Ipv4Net,
    /// UDP port of every network's VXLAN devices.
    pub vxlan_port: u16,
    /// The default network's VXLAN id; later networks count up from it.
    pub vni_base: u32,
}

impl Default for NewClusterNetwork {
    fn default() -> Self {
        NewClusterNetwork {
            cidr: default_cluster_cidr(),
            vxlan_port: DEFAULT_VXLAN_PORT,
            vni_base: FIRST_VXLAN_ID,
        }
    }
}

/// The cluster's VXLAN port, as its default network records it (0 before the
/// default network exists; agents read 0 as [`LEGACY_VXLAN_PORT`]).
pub fn cluster_vxlan_port(networks: &[Network]) -> u32 {
    networks
        .iter()
        .find(|n| n.name == DEFAULT_NETWORK)
        .map_or(0, |n| n.vxlan_port)
}

/// The default cluster CIDR as a block.
pub fn default_cluster_cidr() -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(10, 96, 0, 0), 12)
}

/// The cluster CIDR recorded on the default network, else `fallback`.
pub fn cluster_cidr(networks: &[Network], fallback: Ipv4Net) -> Ipv4Net {
    networks
        .iter()
        .find(|n| n.name == DEFAULT_NETWORK)
        .and_then(|n| n.labels.get(CLUSTER_CIDR_LABEL))
        .and_then(|text| parse_subnet(text).ok())
        .unwrap_or(fallback)
}

/// The next VXLAN id after those in use, at least the default network's (the
/// cluster's base) or [`FIRST_VXLAN_ID`].
pub fn next_vxlan_id(networks: &[Network]) -> u32 {
    let base = networks
        .iter()
        .find(|n| n.name == DEFAULT_NETWORK)
        .map_or(FIRST_VXLAN_ID, |n| n.vxlan_id);
    networks
        .iter()
        .map(|n| n.vxlan_id)
        .max()
        .map_or(base, |max| max.max(base - 1) + 1)
}

/// The lowest /16 of `cluster` that overlaps none of `taken`.
pub fn carve(cluster: Ipv4Net, taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    let prefix = NETWORK_PREFIX.max(cluster.prefix_len());
    cluster
        .subnets(prefix)
        .ok()?
        .find(|c| !taken.iter().any(|t| overlaps(t, c)))
}

/// The subnets networks have (those without one, or with a malformed one, are
/// left out).
pub fn subnets(networks: &[Network]) -> Vec<Ipv4Net> {
    networks
        .iter()
        .filter_map(|n| parse_subnet(&n.subnet).ok())
        .collect()
}

/// Operations that create the default network (when absent) and give every
/// network without a subnet one. A network for which the cluster CIDR has no
/// room keeps its empty subnet; its tasks wait with a message saying so.
pub fn prepare(
    networks: &[Network],
    new_cluster: &NewClusterNetwork,
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<Op> {
    let cluster = cluster_cidr(networks, new_cluster.cidr);
    let mut taken = subnets(networks);
    let mut ops = Vec::new();
    if !networks.iter().any(|n| n.name == DEFAULT_NETWORK)
        && let Some(subnet) = carve(cluster, &taken)
    {
        taken.push(subnet);
        let network = Network {
            id: new_id(),
            name: DEFAULT_NETWORK.into(),
            subnet: subnet.to_string(),
            vxlan_id: if networks.is_empty() {
                new_cluster.vni_base
            } else {
                next_vxlan_id(networks)
            },
            labels: [(CLUSTER_CIDR_LABEL.to_string(), cluster.to_string())].into(),
            vxlan_port: u32::from(new_cluster.vxlan_port),
            version: 0,
            timestamps: Some(Timestamps {
                created_ms: now_ms,
                updated_ms: now_ms,
            }),
        };
        ops.push(put(wrap(network), Expect::Absent, 0));
    }
    let mut waiting: Vec<&Network> = networks.iter().filter(|n| n.subnet.is_empty()).collect();
    waiting.sort_by_key(|n| {
        (
            n.timestamps.as_ref().map(|t| t.created_ms).unwrap_or(0),
            n.id.clone(),
        )
    });
    for network in waiting {
        let Some(subnet) = carve(cluster, &taken) else {
            break;
        };
        taken.push(subnet);
        let mut network = network.clone();
        let version = network.version;
        network.subnet = subnet.to_string();
        if let Some(ts) = network.timestamps.as_mut() {
            ts.updated_ms = now_ms;
        }
        ops.push(put(wrap(network), Expect::Version, version));
    }
    ops
}

fn wrap(network: Network) -> Object {
    Object {
        kind: Some(Kind::Network(network)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::store::op;

    fn networks_of(ops: &[Op]) -> Vec<(Network, i32)> {
        ops.iter()
            .filter_map(|o| match &o.op {
                Some(op::Op::Put(p)) => match p.object.as_ref().and_then(|o| o.kind.clone()) {
                    Some(Kind::Network(n)) => Some((n, p.expect)),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn network(id: &str, subnet: &str, created: i64, vxlan_id: u32) -> Network {
        Network {
            id: id.into(),
            name: id.into(),
            subnet: subnet.into(),
            vxlan_id,
            version: 3,
            timestamps: Some(Timestamps {
                created_ms: created,
                updated_ms: created,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_new_cluster_gets_the_default_network_with_its_cidr_recorded() {
        let ops = prepare(&[], &NewClusterNetwork::default(), 5, &mut || "n1".into());
        let nets = networks_of(&ops);
        assert_eq!(nets.len(), 1);
        let (net, expect) = &nets[0];
        assert_eq!(*expect, Expect::Absent as i32);
        assert_eq!(net.name, DEFAULT_NETWORK);
        assert_eq!(net.subnet, "10.96.0.0/16");
        assert_eq!(net.vxlan_id, FIRST_VXLAN_ID);
        assert_eq!(net.vxlan_port, u32::from(DEFAULT_VXLAN_PORT));
        assert_eq!(
            net.labels.get(CLUSTER_CIDR_LABEL).map(String::as_str),
            Some(DEFAULT_CLUSTER_CIDR)
        );
        let mut stored = net.clone();
        stored.version = 1;
        assert!(
            prepare(&[stored], &NewClusterNetwork::default(), 6, &mut || "n2"
                .into())
            .is_empty()
        );
    }

    #[test]
    fn a_cluster_made_with_another_port_and_base_keeps_them_for_every_network() {
        let chosen = NewClusterNetwork {
            vxlan_port: 4800,
            vni_base: 20_000,
            ..NewClusterNetwork::default()
        };
        let ops = prepare(&[], &chosen, 5, &mut || "n1".into());
        let (default, _) = networks_of(&ops).remove(0);
        assert_eq!((default.vxlan_id, default.vxlan_port), (20_000, 4800));
        let mut later = vec![default];
        assert_eq!(cluster_vxlan_port(&later), 4800);
        assert_eq!(next_vxlan_id(&later), 20_001);
        later.push(network("user", "10.97.0.0/16", 9, 20_001));
        assert_eq!(next_vxlan_id(&later), 20_002);
        // A record from before ports were recorded: 0 (agents read 4789).
        assert_eq!(
            cluster_vxlan_port(&[network(DEFAULT_NETWORK, "", 1, 4096)]),
            0
        );
    }

    #[test]
    fn networks_without_subnets_get_the_lowest_free_one_in_creation_order() {
        let mut default = network(DEFAULT_NETWORK, "10.96.0.0/16", 1, 4096);
        default
            .labels
            .insert(CLUSTER_CIDR_LABEL.into(), "10.200.0.0/14".into());
        let nets = vec![
            default,
            network("late", "", 30, 4099),
            network("user", "10.200.0.0/15", 10, 4097),
            network("early", "", 20, 4098),
        ];
        // The recorded CIDR wins over this leader's setting.
        let ops = prepare(
            &nets,
            &NewClusterNetwork::default(),
            40,
            &mut || unreachable!(),
        );
        let got: Vec<(String, String, i32)> = networks_of(&ops)
            .into_iter()
            .map(|(n, e)| (n.name, n.subnet, e))
            .collect();
        let v = Expect::Version as i32;
        assert_eq!(
            got,
            vec![
                ("early".into(), "10.202.0.0/16".into(), v),
                ("late".into(), "10.203.0.0/16".into(), v),
            ]
        );
        // No room left: the network keeps waiting.
        let mut full = nets.clone();
        full.push(network("x", "10.202.0.0/15", 11, 4100));
        let ops = prepare(
            &full,
            &NewClusterNetwork::default(),
            40,
            &mut || unreachable!(),
        );
        assert!(networks_of(&ops).is_empty());
        assert_eq!(next_vxlan_id(&full), 4101);
        assert_eq!(next_vxlan_id(&[network("low", "", 0, 7)]), FIRST_VXLAN_ID);
    }
}
