//! The plan as the rules need it: sorted and deduplicated (the caller's order
//! must not change the rules, or every apply would rewrite), checked for what nft
//! would refuse or what would be ambiguous.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::{LbPlan, Protocol, PublishedRule, VipRule};
use crate::dataplane::error::NetworkError;
use crate::dataplane::plan::MAX_VNI;

/// The plan with everything sorted and deduplicated (the caller's order must not
/// change the rules, or every apply would rewrite), checked for what nft would
/// refuse or what would be ambiguous.
pub(super) fn normalise(plan: &LbPlan) -> Result<LbPlan, NetworkError> {
    let bad = |m: String| Err(NetworkError::Plan(m));
    let networks: BTreeSet<u32> = plan.networks.iter().copied().collect();
    for &vni in &networks {
        if vni == 0 || vni > MAX_VNI {
            return bad(format!(
                "load balancer: vni {vni} out of range 1..={MAX_VNI}"
            ));
        }
    }
    let mut vips: BTreeMap<Ipv4Addr, VipRule> = BTreeMap::new();
    for vip in &plan.vips {
        // No container of that network here could use it.
        if !networks.contains(&vip.vni) {
            continue;
        }
        if let Some(other) = vips.get(&vip.vip) {
            return bad(format!(
                "vip {} given to both service {} and service {}",
                vip.vip, other.service, vip.service
            ));
        }
        let mut vip = vip.clone();
        vip.backends = sorted(&vip.backends);
        vips.insert(vip.vip, vip);
    }
    let mut published: BTreeMap<(Protocol, u16), PublishedRule> = BTreeMap::new();
    for rule in &plan.published {
        if rule.published_port == 0 || rule.target_port == 0 {
            return bad(format!(
                "service {}: port 0 in {}:{}",
                rule.service, rule.published_port, rule.target_port
            ));
        }
        let key = (rule.protocol, rule.published_port);
        if let Some(other) = published.get(&key) {
            return bad(format!(
                "port {}/{} published by both service {} and service {}",
                rule.published_port,
                rule.protocol.as_str(),
                other.service,
                rule.service
            ));
        }
        let mut rule = rule.clone();
        rule.backends = sorted(&rule.backends);
        published.insert(key, rule);
    }
    Ok(LbPlan {
        networks: networks.into_iter().collect(),
        vips: vips.into_values().collect(),
        published: published.into_values().collect(),
    })
}

fn sorted(addrs: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
    let set: BTreeSet<Ipv4Addr> = addrs.iter().copied().collect();
    set.into_iter().collect()
}
