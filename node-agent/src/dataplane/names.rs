//! Names of the kernel objects berth owns, and how to recognise them.
//!
//! - bridge of network VNI: `bb-<vni>` (decimal; at most `bb-16777215`, 11 bytes)
//! - VXLAN device of network VNI: `bv-<vni>`
//! - host end of a container's veth: `bh-<8 hex>` (a hash of the container id and
//!   the network), the container end is renamed `eth<n>` inside its namespace
//! - routes to remote blocks carry route protocol [`ROUTE_PROTOCOL`]
//!
//! Anything else (other links, routes of other protocols, neighbour and FDB
//! entries on devices not named like ours) is never touched.

use sha2::{Digest, Sha256};

pub const BRIDGE_PREFIX: &str = "bb-";
pub const VXLAN_PREFIX: &str = "bv-";
pub const VETH_PREFIX: &str = "bh-";
/// Name the container end is born with in its namespace, before it becomes `eth<n>`.
pub const PEER_PREFIX: &str = "bp-";
/// Route protocol number of berth's routes (`ip route show proto 213`); unused in
/// /etc/iproute2/rt_protos.
pub const ROUTE_PROTOCOL: u8 = 213;
/// VXLAN UDP port of network records that carry none (made before clusters
/// recorded theirs): IANA's.
pub const LEGACY_VXLAN_PORT: u16 = 4789;
/// VXLAN over IPv4 costs 50 bytes: outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
pub const VXLAN_OVERHEAD: u32 = 50;
/// Container interfaces are `eth0`, `eth1`, … one per network.
pub const CONTAINER_IFACE_PREFIX: &str = "eth";

pub fn bridge_name(vni: u32) -> String {
    format!("{BRIDGE_PREFIX}{vni}")
}

pub fn vxlan_name(vni: u32) -> String {
    format!("{VXLAN_PREFIX}{vni}")
}

/// The VNI a berth bridge or VXLAN device is named after.
pub fn owned_vni(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix(BRIDGE_PREFIX)
        .or_else(|| name.strip_prefix(VXLAN_PREFIX))?;
    if rest.is_empty() || rest.starts_with('0') {
        return None;
    }
    rest.parse().ok()
}

/// Host and temporary peer names of a container's veth in a network.
pub fn veth_names(container: &str, vni: u32) -> (String, String) {
    let digest = Sha256::digest(format!("{container}\0{vni}").as_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    (format!("{VETH_PREFIX}{tag}"), format!("{PEER_PREFIX}{tag}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_ifnamsiz_and_round_trip() {
        assert_eq!(bridge_name(16_777_215), "bb-16777215");
        assert!(bridge_name(16_777_215).len() < 16);
        assert_eq!(owned_vni(&vxlan_name(42)), Some(42));
        assert_eq!(owned_vni(&bridge_name(42)), Some(42));
        assert_eq!(owned_vni("bb-042"), None);
        assert_eq!(owned_vni("br0"), None);
        assert_eq!(owned_vni("bv-x"), None);
        let (host, peer) = veth_names("task-1", 42);
        assert_eq!(host.len(), 11);
        assert_eq!(&host[3..], &peer[3..]);
        assert_ne!(veth_names("task-2", 42).0, host);
    }
}
