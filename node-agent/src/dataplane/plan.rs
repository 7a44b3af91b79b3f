//! What the agent wants on this host: plain input types, filled from the
//! controller's network and node lists. Blocks are `berth_proto::net::Block`s,
//! read from the assignments with the same rule the allocator writes them by.

use std::net::Ipv4Addr;

use berth_proto::net::Block;

use super::error::NetworkError;
use super::mac::vtep_mac;

/// Everything this host should have, network by network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalPlan {
    pub networks: Vec<NetworkPlan>,
}

/// One overlay network as seen from this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPlan {
    /// The network's name (logs only; devices are named after the VNI).
    pub name: String,
    /// VXLAN network identifier, 1..2^24-1; also names the devices.
    pub vni: u32,
    /// UDP port of the VXLAN device (the cluster's).
    pub port: u16,
    /// This host's address blocks in the network; the gateway of each
    /// ([`Block::gateway`]) is put on the bridge and is the default route of
    /// the containers in that block.
    pub local_blocks: Vec<Block>,
    /// This host's underlay address: the VXLAN source address. The device that
    /// carries it is the VXLAN's lower device and gives the underlay MTU.
    pub underlay_ip: Ipv4Addr,
    /// The other nodes that have blocks in this network.
    pub remotes: Vec<RemoteNode>,
}

/// A remote node of a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteNode {
    pub underlay_ip: Ipv4Addr,
    pub blocks: Vec<Block>,
}

impl RemoteNode {
    /// The MAC of that node's VXLAN device in network `vni`: derived, never
    /// exchanged (see [`vtep_mac`]).
    pub fn vtep_mac(&self, vni: u32) -> [u8; 6] {
        vtep_mac(self.underlay_ip, vni)
    }
}

/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

impl NetworkPlan {
    /// Checks what the kernel would refuse or what would make two networks
    /// collide, with the network named in the message.
    pub fn validate(&self) -> Result<(), NetworkError> {
        let name = &self.name;
        if self.vni == 0 || self.vni > MAX_VNI {
            return Err(NetworkError::Plan(format!(
                "network {name}: vni {} out of range 1..={MAX_VNI}",
                self.vni
            )));
        }
        for remote in &self.remotes {
            if remote.underlay_ip == self.underlay_ip {
                return Err(NetworkError::Plan(format!(
                    "network {name}: remote node {} is this host",
                    remote.underlay_ip
                )));
            }
        }
        Ok(())
    }
}

impl LocalPlan {
    pub fn validate(&self) -> Result<(), NetworkError> {
        let mut vnis = std::collections::BTreeSet::new();
        for network in &self.networks {
            network.validate()?;
            if !vnis.insert(network.vni) {
                return Err(NetworkError::Plan(format!(
                    "network {}: vni {} used twice in the plan",
                    network.name, network.vni
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_with_bad_vni_or_duplicates_are_refused() {
        let net = |vni| NetworkPlan {
            name: format!("n{vni}"),
            vni,
            port: 7420,
            local_blocks: vec![],
            underlay_ip: Ipv4Addr::new(198, 18, 0, 1),
            remotes: vec![],
        };
        assert!(net(0).validate().is_err());
        assert!(net(MAX_VNI + 1).validate().is_err());
        let plan = LocalPlan {
            networks: vec![net(5), net(5)],
        };
        let err = plan.validate().expect_err("duplicate vni").to_string();
        assert!(err.contains("vni 5 used twice"), "{err}");
    }
}
