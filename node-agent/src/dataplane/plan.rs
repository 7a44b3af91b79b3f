//! What the agent wants on this host: plain input types, filled from the
//! controller's network and node lists (kept independent of the wire types so the
//! controller side can evolve).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use super::error::NetworkError;
use super::mac::vtep_mac;

/// An IPv4 block in CIDR notation (`10.20.1.0/24`). The address is normalised to
/// the network address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// A block from any address inside it and a prefix length (at most 30: a
    /// block needs a gateway and at least one task address).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Ipv4Cidr, NetworkError> {
        if prefix > 30 {
            return Err(NetworkError::Plan(format!(
                "block {addr}/{prefix} is too small (prefix at most /30)"
            )));
        }
        let mask = mask(prefix);
        Ok(Ipv4Cidr {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The first usable address: the bridge's address and the block's gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == u32::from(self.network)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = NetworkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || NetworkError::Plan(format!("invalid block {s:?} (want a.b.c.d/n)"));
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Ipv4Cidr::new(addr, prefix)
    }
}

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
    /// This host's address blocks in the network; the first address of each is
    /// put on the bridge and is the gateway of the containers in that block.
    pub local_blocks: Vec<Ipv4Cidr>,
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
    pub blocks: Vec<Ipv4Cidr>,
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
    fn cidr_parses_normalises_and_names_its_gateway() {
        let block: Ipv4Cidr = "10.20.1.77/24".parse().expect("parse");
        assert_eq!(block.to_string(), "10.20.1.0/24");
        assert_eq!(block.gateway(), Ipv4Addr::new(10, 20, 1, 1));
        assert!(block.contains(Ipv4Addr::new(10, 20, 1, 200)));
        assert!(!block.contains(Ipv4Addr::new(10, 20, 2, 1)));
        assert!("10.20.1.0/31".parse::<Ipv4Cidr>().is_err());
        assert!("10.20.1.0".parse::<Ipv4Cidr>().is_err());
        assert!("x/24".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn plans_with_bad_vni_or_duplicates_are_refused() {
        let net = |vni| NetworkPlan {
            name: format!("n{vni}"),
            vni,
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
