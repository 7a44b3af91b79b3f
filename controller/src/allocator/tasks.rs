//! Task addresses: every live task placed on a node gets, in each network it
//! joins, an address from that node's blocks. A task that cannot get one is
//! not placed: it stays PENDING with the reason as its message.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use berth_proto::net::Ipv4Prefix;
use berth_proto::store::{Expect, Op};
use berth_proto::v1::{Task, TaskState};

use super::blocks::BLOCK_PREFIX;
use super::{AllocError, Pools, networks_of};
use crate::orchestrator::task::{is_terminal, observed, wants_running, wrap};
use crate::store::put;

/// What task allocation decided.
#[derive(Debug, Default)]
pub struct TaskAllocation {
    pub ops: Vec<Op>,
    /// New addresses of tasks, by task id (see [`super::Allocation::addresses`]).
    pub addresses: Vec<(String, BTreeMap<String, Ipv4Prefix>)>,
    /// Tasks this round placed that must stay unplaced (no address).
    pub unplace: BTreeSet<String>,
}

/// Records the addresses live tasks hold, then allocates the missing ones.
/// `before` is the task table before this round's placements, `after` after.
/// Tasks of a `blocked` service (no VIP) get no address and wait with its reason.
pub fn allocate(
    pools: &mut Pools,
    blocked: &BTreeMap<String, AllocError>,
    before: &[&Task],
    after: &[&Task],
) -> TaskAllocation {
    let mut sorted: Vec<&Task> = after.to_vec();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    // Addresses held, first holder wins (a duplicate is allocated anew).
    // Keyed by the tasks' own strings: a round of 20,000 tasks copied every
    // id and network name into this map.
    let mut held: HashMap<(&str, &str), bool> = HashMap::new();
    for task in &sorted {
        if is_terminal(observed(task)) {
            continue;
        }
        for (network, address) in &task.addresses {
            let Some(Ok(pool)) = pools.get_mut(network) else {
                continue;
            };
            let addr = address.addr();
            let valid = (address.prefix_len() == u32::from(BLOCK_PREFIX)
                && pool.layout.subnet.contains(&addr)
                && !pool.is_used(addr))
            .then_some(addr);
            if let Some(addr) = valid {
                pool.mark_used(addr, &task.node_id);
            }
            held.insert((task.id.as_str(), network.as_str()), valid.is_some());
        }
    }
    let before: HashMap<&str, &Task> = before.iter().map(|t| (t.id.as_str(), *t)).collect();
    let mut out = TaskAllocation::default();
    for task in sorted {
        let state = observed(task);
        if task.node_id.is_empty()
            || is_terminal(state)
            || state < TaskState::Assigned as i32
            || !wants_running(task)
        {
            continue;
        }
        let missing: Vec<String> = networks_of(task.spec.as_ref(), pools)
            .into_iter()
            .filter(|n| held.get(&(task.id.as_str(), n.as_str())) != Some(&true))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let result = match blocked.get(&task.service_id) {
            Some(err) => Err(err.clone()),
            None => addresses_for(pools, &task.node_id, &missing),
        };
        match result {
            Ok(addresses) => out.addresses.push((task.id.clone(), addresses)),
            Err(err) => hold(task, before.get(task.id.as_str()).copied(), &err, &mut out),
        }
    }
    out
}

/// One address per network for a task on `node`, all or none.
fn addresses_for(
    pools: &mut Pools,
    node: &str,
    networks: &[String],
) -> Result<BTreeMap<String, Ipv4Prefix>, AllocError> {
    let mut got: Vec<(String, Ipv4Addr)> = Vec::new();
    let mut result = Ok(());
    for network in networks {
        let allocated = match pools.get_mut(network) {
            Some(Ok(pool)) => pool.allocate(node),
            Some(Err(err)) => Err(err.clone()),
            None => Err(AllocError::NoSuchNetwork {
                network: network.clone(),
            }),
        };
        match allocated {
            Ok(addr) => got.push((network.clone(), addr)),
            Err(err) => {
                result = Err(err);
                break;
            }
        }
    }
    if let Err(err) = result {
        for (network, addr) in got {
            if let Some(Ok(pool)) = pools.get_mut(&network) {
                pool.release(addr);
            }
        }
        return Err(err);
    }
    Ok(got
        .into_iter()
        .map(|(network, addr)| (network, Ipv4Prefix::new(addr, BLOCK_PREFIX.into())))
        .collect())
}

/// A task without its addresses: unplaced when this round placed it (PENDING
/// with the reason), else only the reason recorded. Written only on change.
fn hold(after: &Task, before: Option<&Task>, err: &AllocError, out: &mut TaskAllocation) {
    let why = err.to_string();
    let placed_now = before.is_none_or(|b| b.node_id.is_empty());
    let base = match before {
        Some(b) if placed_now => {
            out.unplace.insert(after.id.clone());
            b
        }
        _ => after,
    };
    if base.status.as_ref().is_some_and(|s| s.message == why) {
        return;
    }
    let mut task = base.clone();
    let version = task.version;
    let status = task.status.get_or_insert_with(Default::default);
    if placed_now {
        status.state = TaskState::Pending as i32;
    }
    status.message = why;
    out.ops.push(put(wrap(task), Expect::Version, version));
}
