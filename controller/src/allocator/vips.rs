//! Service VIPs: one per network a service's tasks join, from the network's
//! VIP range (never inside a node block), dropped with the network from the
//! spec and freed with the service. A dnsrr service (`--endpoint-mode dnsrr`)
//! has none: its VIPs are freed when it turns dnsrr, and it gets them again
//! when it turns back to vip.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use berth_proto::net::{Ipv4Net, Ipv4Prefix};
use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object, Op};
use berth_proto::v1::{EndpointMode, Service};
use tracing::warn;

use super::blocks::Layout;
use super::{AllocError, Pools, networks_of};
use crate::store::put;

/// The VIPs a range may give: all but its last address (the subnet's
/// broadcast address).
fn candidates(layout: &Layout) -> impl Iterator<Item = Ipv4Addr> + use<> {
    (u32::from(layout.vips.network())..u32::from(layout.vips.broadcast())).map(Ipv4Addr::from)
}

/// A VIP as services carry it: with the network's prefix length.
fn vip(layout: &Layout, addr: Ipv4Addr) -> Ipv4Prefix {
    Ipv4Prefix::from(Ipv4Net::new_assert(addr, layout.subnet.prefix_len()))
}

/// The networks `service` should have a VIP in: those its tasks join, none
/// for a dnsrr service.
fn vip_networks(service: &Service, pools: &Pools) -> Vec<String> {
    let spec = service.spec.as_ref();
    if spec.is_some_and(|s| s.endpoint_mode == EndpointMode::Dnsrr as i32) {
        return Vec::new();
    }
    networks_of(spec, pools)
}

/// What VIP allocation decided.
#[derive(Debug, Default)]
pub struct VipAllocation {
    /// Puts of the services whose VIPs change.
    pub ops: Vec<Op>,
    /// Services left without a VIP, by id: their new tasks wait with the reason.
    pub blocked: BTreeMap<String, AllocError>,
}

/// Gives every service a VIP in each network it joins; drops VIPs of networks
/// it left.
pub fn allocate(pools: &Pools, services: &[Service]) -> VipAllocation {
    let mut sorted: Vec<&Service> = services.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut used: BTreeMap<&str, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    // Valid VIPs kept per service (first holder wins).
    let mut kept: Vec<BTreeMap<String, Ipv4Prefix>> = Vec::new();
    for service in &sorted {
        let wanted = vip_networks(service, pools);
        let mut keep = BTreeMap::new();
        for (network, address) in &service.virtual_ips {
            let Some(Ok(pool)) = pools.get(network) else {
                continue;
            };
            if !wanted.contains(network) {
                continue;
            }
            let addr = address.addr();
            let set = used.entry(pool.name.as_str()).or_default();
            if *address == vip(&pool.layout, addr)
                && candidates(&pool.layout).any(|a| a == addr)
                && set.insert(addr)
            {
                keep.insert(network.clone(), *address);
            }
        }
        kept.push(keep);
    }
    let mut out = VipAllocation::default();
    for (service, mut vips) in sorted.into_iter().zip(kept) {
        for network in vip_networks(service, pools) {
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
                    vips.insert(network.clone(), vip(&pool.layout, addr));
                }
                None => {
                    let err = AllocError::VipsExhausted {
                        network: network.clone(),
                        range: pool.layout.vips.to_string(),
                    };
                    warn!(service = %service.id, %err, "service has no VIP");
                    out.blocked.insert(service.id.clone(), err);
                }
            }
        }
        if vips != service.virtual_ips {
            let mut service = service.clone();
            let version = service.version;
            service.virtual_ips = vips;
            out.ops.push(put(
                Object {
                    kind: Some(Kind::Service(Box::new(service))),
                },
                Expect::Version,
                version,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{Network, ServiceSpec};

    fn service(id: &str, networks: &[&str], vips: &[(&str, &str)]) -> Service {
        Service {
            id: id.into(),
            spec: Some(ServiceSpec {
                name: id.into(),
                networks: networks.iter().map(|n| n.to_string()).collect(),
                ..Default::default()
            }),
            virtual_ips: vips
                .iter()
                .map(|(n, v)| (n.to_string(), v.parse().expect("vip")))
                .collect(),
            version: 2,
            ..Default::default()
        }
    }

    /// The VIPs of the services the allocation writes (at the version read).
    fn puts(out: &VipAllocation) -> BTreeMap<String, BTreeMap<String, Ipv4Prefix>> {
        let mut got = BTreeMap::new();
        for o in &out.ops {
            if let Some(berth_proto::store::op::Op::Put(p)) = &o.op
                && let Some(Kind::Service(s)) = p.object.as_ref().and_then(|o| o.kind.clone())
            {
                assert_eq!(p.version, 2);
                got.insert(s.id, s.virtual_ips);
            }
        }
        got
    }

    #[test]
    fn vips_come_from_the_range_are_kept_dropped_and_run_out_clearly() {
        let net = Network {
            name: "tiny".into(),
            subnet: "10.1.2.0/24".into(),
            ..Default::default()
        };
        let pools = super::super::pools(&[net], &[]);
        let mut services = vec![
            service("a", &["tiny"], &[("tiny", "10.1.2.241/24")]),
            // A VIP of a network the spec no longer names is dropped.
            service("b", &[], &[("tiny", "10.1.2.240/24")]),
        ];
        services.extend((0..15).map(|i| service(&format!("s{i:02}"), &["tiny"], &[])));
        let out = allocate(&pools, &services);
        let got = puts(&out);
        assert!(!got.contains_key("a"), "an unchanged VIP is not rewritten");
        assert_eq!(got.get("b").map(|v| v.len()), Some(0));
        assert_eq!(got["s00"]["tiny"].to_string(), "10.1.2.240/24");
        assert_eq!(got["s01"]["tiny"].to_string(), "10.1.2.242/24");
        // 15 VIPs (.240 to .254): a has one, s00..s13 take the other 14.
        assert_eq!(got["s13"]["tiny"].to_string(), "10.1.2.254/24");
        assert!(!got.contains_key("s14"));
        assert_eq!(
            out.blocked.get("s14").map(ToString::to_string).as_deref(),
            Some("network tiny has no free VIP: its range 10.1.2.240/28 is exhausted")
        );
    }

    #[test]
    fn a_dnsrr_service_has_no_vip_and_gets_one_back_as_vip() {
        let net = Network {
            name: "tiny".into(),
            subnet: "10.1.2.0/24".into(),
            ..Default::default()
        };
        let pools = super::super::pools(&[net], &[]);
        let dnsrr = |mut s: Service| {
            if let Some(spec) = s.spec.as_mut() {
                spec.endpoint_mode = EndpointMode::Dnsrr as i32;
            }
            s
        };
        let written = |services: &[Service]| {
            let out = allocate(&pools, services);
            assert!(out.blocked.is_empty());
            puts(&out)
        };
        // New and dnsrr: nothing to write, no VIP taken.
        assert!(written(&[dnsrr(service("d", &["tiny"], &[]))]).is_empty());
        // Turned dnsrr: its VIP is freed (and free for another service).
        let got = written(&[
            dnsrr(service("d", &["tiny"], &[("tiny", "10.1.2.240/24")])),
            service("e", &["tiny"], &[]),
        ]);
        assert_eq!(got["d"].len(), 0);
        assert_eq!(got["e"]["tiny"].to_string(), "10.1.2.240/24");
        // Back to vip: it gets one again.
        let got = written(&[service("d", &["tiny"], &[])]);
        assert_eq!(got["d"]["tiny"].to_string(), "10.1.2.240/24");
    }
}
