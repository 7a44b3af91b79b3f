//! This host's address in each network: the gateway of its (first) local block,
//! carried by the network's bridge. Published-port connections that leave for a
//! backend on another host are SNATed to it, so the backend's host sees a source
//! inside the network and routes the replies back over the overlay (an underlay
//! source would come back over the underlay and fail strict reverse-path filters
//! on both hosts).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::dataplane::error::NetworkError;
use crate::dataplane::names::bridge_name;
use crate::dataplane::netlink::{Netlink, RtNetlink};

/// VNI -> the lowest address on `bb-<vni>`; networks whose bridge is missing or
/// has no address yet are left out (their traffic is masqueraded instead).
pub(super) async fn local_gateways(vnis: &[u32]) -> Result<BTreeMap<u32, Ipv4Addr>, NetworkError> {
    if vnis.is_empty() {
        return Ok(BTreeMap::new());
    }
    let nl = RtNetlink::new()?;
    let links = nl.links().await?;
    let addresses = nl.addresses().await?;
    let mut gateways = BTreeMap::new();
    for &vni in vnis {
        let name = bridge_name(vni);
        let Some(link) = links.iter().find(|l| l.name == name) else {
            continue;
        };
        let lowest = addresses
            .iter()
            .filter(|a| a.index == link.index)
            .map(|a| a.addr)
            .min();
        if let Some(addr) = lowest {
            gateways.insert(vni, addr);
        }
    }
    Ok(gateways)
}
