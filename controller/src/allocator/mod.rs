//! "Which addresses": overlay IPAM kept in Raft state. A plain function of the
//! cluster state to store operations, run by the leader after the scheduler
//! (a task's address comes from a block of the node it was placed on).
//!
//! - [`subnets`]: the default network `berth` and a /16 from the cluster CIDR
//!   for every network created without a subnet (committed before a round).
//! - [`blocks`]: a network's layout (top sixteenth = VIPs, the rest /26 blocks)
//!   and the blocks each node holds, in `node.network_blocks[network]`; taken
//!   on demand, freed when no live task of the node has an address in them, or
//!   the node or network goes.
//! - [`tasks`]: `task.addresses[network]` = IP/26 from the node's blocks;
//!   freed when the task is terminal or deleted (it simply stops counting).
//! - [`vips`]: `service.virtual_ips[network]` = IP/PREFIX from the VIP range.
//!
//! Addresses, blocks and subnets are `berth_proto::net` types, the ones the
//! agents read the same messages with.
//!
//! Tasks join the networks their spec lists, or the default network when it
//! lists none. A task that gets no address stays PENDING with the reason.

pub mod blocks;
pub mod new_network;
pub mod subnets;
pub mod tasks;
pub mod vips;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use berth_proto::net::{NetError, parse_subnet};
use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object, Op};
use berth_proto::v1::{Network, NetworkBlocks, Node, PublishMode, Service, ServiceSpec, Task};

use crate::store::put;
use blocks::{Layout, Pool};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error(
        "network {network} has no free address: {subnet} is exhausted ({blocks} blocks of /{prefix} in use)"
    )]
    Exhausted {
        network: String,
        subnet: String,
        blocks: usize,
        prefix: u8,
    },
    #[error("network {network} does not exist")]
    NoSuchNetwork { network: String },
    #[error("network {network} has no subnet yet: the cluster CIDR has no free /16")]
    NoSubnet { network: String },
    #[error("network {network} has an invalid subnet {subnet:?}: {source}")]
    BadSubnet {
        network: String,
        subnet: String,
        source: NetError,
    },
    #[error(
        "network {network}: subnet {subnet} is too small for node blocks (at most /{max})",
        max = blocks::MAX_SUBNET_PREFIX
    )]
    SubnetTooSmall { network: String, subnet: String },
    #[error("network {network} has no node {node} to take an address block")]
    NoSuchNode { network: String, node: String },
    #[error("network {network} has no free VIP: its range {range} is exhausted")]
    VipsExhausted { network: String, range: String },
}

/// Every network by name: its pool, or why it cannot hand out addresses.
pub type Pools = BTreeMap<String, Result<Pool, AllocError>>;

/// Pools of every network, with the blocks nodes hold.
pub fn pools(networks: &[Network], nodes: &[Node]) -> Pools {
    networks
        .iter()
        .map(|network| {
            let name = network.name.clone();
            let pool = if network.subnet.is_empty() {
                Err(AllocError::NoSubnet {
                    network: name.clone(),
                })
            } else {
                parse_subnet(&network.subnet)
                    .map_err(|source| AllocError::BadSubnet {
                        network: name.clone(),
                        subnet: network.subnet.clone(),
                        source,
                    })
                    .and_then(|subnet| Layout::of(&name, subnet))
                    .map(|layout| Pool::new(&name, layout, nodes))
            };
            (name, pool)
        })
        .collect()
}

/// The networks a service's tasks join: those its spec lists, or the default
/// network (when it exists) if it lists none.
pub fn networks_of(spec: Option<&ServiceSpec>, pools: &Pools) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in spec.map(|s| s.networks.as_slice()).unwrap_or_default() {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    if out.is_empty() && pools.contains_key(subnets::DEFAULT_NETWORK) {
        out.push(subnets::DEFAULT_NETWORK.into());
    }
    out
}

/// What one allocation pass reads.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub networks: &'a [Network],
    pub nodes: &'a [Node],
    pub services: &'a [Service],
    /// Tasks before this round's placements (by reference).
    pub before: &'a [&'a Task],
    /// Tasks after them (those of `before` that did not change, by reference).
    pub after: &'a [&'a Task],
}

/// What one allocation pass decided.
#[derive(Debug, Default)]
pub struct Allocation {
    /// Node block lists that change (to commit first).
    pub node_ops: Vec<Op>,
    /// Held tasks (no address, with the reason), service VIPs.
    pub ops: Vec<Op>,
    /// New addresses of tasks, by task id, to add to the task as this round
    /// leaves it (`planner::plan`): to the round's own put of it, or to a put
    /// of the task as read. Not a copy of each task: a round that places
    /// 20,000 tasks held a third copy of every one in its operations.
    pub addresses: Vec<(String, BTreeMap<String, berth_proto::net::Ipv4Prefix>)>,
    /// Tasks this round placed whose placement must be dropped.
    pub unplace: BTreeSet<String>,
}

/// One pass: VIPs, then task addresses, then the nodes' block lists (blocks of
/// networks that no longer exist are dropped).
pub fn allocate(input: Input<'_>) -> Allocation {
    let mut pools = pools(input.networks, input.nodes);
    let vips = vips::allocate(&pools, input.services);
    let tasks = tasks::allocate(&mut pools, &vips.blocked, input.before, input.after);
    let mut ops = tasks.ops;
    ops.extend(vips.ops);
    // Every node forwards published ingress ports into the service's first
    // network (by name, as the agents choose it), so every node keeps a block
    // there.
    for service in input.services {
        let ingress = service.spec.as_ref().is_some_and(|s| {
            s.ports
                .iter()
                .any(|p| p.publish_mode == PublishMode::Ingress as i32)
        });
        if !ingress {
            continue;
        }
        let first = networks_of(service.spec.as_ref(), &pools).into_iter().min();
        if let Some(Some(Ok(pool))) = first.map(|n| pools.get_mut(&n)) {
            for node in input.nodes {
                pool.hold_block(&node.id);
            }
        }
    }
    for pool in pools.values_mut().flatten() {
        pool.release_idle_blocks();
    }
    let mut changed: BTreeSet<&str> = BTreeSet::new();
    for pool in pools.values().flatten() {
        changed.extend(pool.changed_nodes());
    }
    let mut node_ops = Vec::new();
    for node in input.nodes {
        let mut blocks = node.network_blocks.clone();
        blocks.retain(|network, _| pools.contains_key(network));
        if changed.contains(node.id.as_str()) {
            for (network, pool) in &pools {
                if let Ok(pool) = pool
                    && let Some(mine) = pool.blocks_of(&node.id)
                {
                    if mine.is_empty() {
                        blocks.remove(network);
                    } else {
                        blocks.insert(network.clone(), NetworkBlocks::of(mine));
                    }
                }
            }
        }
        if blocks != node.network_blocks {
            let mut node = node.clone();
            let version = node.version;
            node.network_blocks = blocks;
            node_ops.push(put(
                Object {
                    kind: Some(Kind::Node(node)),
                },
                Expect::Version,
                version,
            ));
        }
    }
    Allocation {
        node_ops,
        ops,
        addresses: tasks.addresses,
        unplace: tasks.unplace,
    }
}
