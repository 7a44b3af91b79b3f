//! The VTEP MAC of a node's VXLAN device, derived from (underlay IP, VNI).
//!
//! Every node computes every other node's VTEP MAC itself, so nothing has to be
//! exchanged or persisted (flannel stores it in the node lease instead). Within
//! one VNI the MAC is unique per underlay address: it is the address itself
//! behind a locally administered unicast prefix.

use std::net::Ipv4Addr;

/// `0e:<vni low byte>:<underlay ip>`: locally administered (bit 1 of the first
/// byte), unicast (bit 0 clear).
pub fn vtep_mac(underlay_ip: Ipv4Addr, vni: u32) -> [u8; 6] {
    let [a, b, c, d] = underlay_ip.octets();
    [0x0e, (vni & 0xff) as u8, a, b, c, d]
}

/// `0a:<vni low byte>:<underlay ip>`: the MAC of a node's bridge (the containers'
/// gateway) in a network. Set explicitly because a bridge without one takes the
/// lowest MAC of its ports, so a container leaving could change the gateway's
/// MAC under the others' ARP caches (they would lose it for tens of seconds).
pub fn gateway_mac(underlay_ip: Ipv4Addr, vni: u32) -> [u8; 6] {
    let [a, b, c, d] = underlay_ip.octets();
    [0x0a, (vni & 0xff) as u8, a, b, c, d]
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtep_macs_are_unicast_local_and_distinct_per_node() {
        let a = vtep_mac(Ipv4Addr::new(198, 18, 0, 1), 4097);
        let b = vtep_mac(Ipv4Addr::new(198, 18, 0, 2), 4097);
        assert_ne!(a, b);
        assert_eq!(a, vtep_mac(Ipv4Addr::new(198, 18, 0, 1), 4097));
        assert_eq!(a[0] & 0x01, 0, "multicast bit set");
        assert_eq!(a[0] & 0x02, 0x02, "not locally administered");
        assert_eq!(format_mac(&a), "0e:01:c6:12:00:01");
    }
}
