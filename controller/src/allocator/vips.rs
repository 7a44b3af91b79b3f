//! Service VIPs: one per network a service's tasks join, from the network's
//! VIP range (never inside a node block), dropped with the network from the
//! spec and freed with the service.

use std::collections::{BTreeMap, BTreeSet};

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object, Op};
use berth_proto::v1::Service;
use tracing::warn;

use super::blocks::Layout;
use super::cidr::{format_address, parse_address};
use super::{AllocError, Pools, networks_of};
use crate::api::common::put;

/// The VIPs a range may give: all but its last address (the subnet's
/// broadcast address).
fn candidates(layout: &Layout) -> impl Iterator<Item = u32> + use<> {
    layout.vips.base()..layout.vips.last()
}

/// Puts of the services whose VIPs change.
pub fn allocate(pools: &Pools, services: &[Service]) -> Vec<Op> {
    let mut sorted: Vec<&Service> = services.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut used: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    // Valid VIPs kept per service (first holder wins).
    let mut kept: Vec<BTreeMap<String, String>> = Vec::new();
    for service in &sorted {
        let wanted = networks_of(service.spec.as_ref(), pools);
        let mut keep = BTreeMap::new();
        for (network, text) in &service.virtual_ips {
            let Some(Ok(pool)) = pools.get(network) else {
                continue;
            };
            if !wanted.contains(network) {
                continue;
            }
            let Ok(addr) = parse_address(text) else {
                continue;
            };
            let set = used.entry(pool.name.as_str()).or_default();
            if candidates(&pool.layout).any(|a| a == addr) && set.insert(addr) {
                keep.insert(network.clone(), text.clone());
            }
        }
        kept.push(keep);
    }
    let mut ops = Vec::new();
    for (service, mut vips) in sorted.into_iter().zip(kept) {
        for network in networks_of(service.spec.as_ref(), pools) {
            if vips.contains_key(&network) {
                continue;
            }
            let Some(Ok(pool)) = pools.get(&network) else {
                continue;
            };
            let set = used.entry(pool.name.as_str()).or_default();
            match candidates(&pool.layout).find(|a| !set.contains(a)) {
                Some(addr) => {
                    set.insert(addr);
                    vips.insert(
                        network.clone(),
                        format_address(addr, pool.layout.subnet.prefix()),
                    );
                }
                None => {
                    let err = AllocError::VipsExhausted {
                        network: network.clone(),
                        range: pool.layout.vips.to_string(),
                    };
                    warn!(service = %service.id, %err, "service has no VIP");
                }
            }
        }
        if vips != service.virtual_ips {
            let mut service = service.clone();
            let version = service.version;
            service.virtual_ips = vips;
            ops.push(put(
                Object {
                    kind: Some(Kind::Service(service)),
                },
                Expect::Version,
                version,
            ));
        }
    }
    ops
}
