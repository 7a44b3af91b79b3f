//! A node's address block in an overlay network, and the rule that makes a
//! block usable: its first address is the network address, the second the
//! gateway (the node's bridge: the tasks' default route and DNS server), the
//! last the broadcast address; tasks get the others.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

use super::{Ipv4Prefix, NetError};

/// A checked block: host bits zero, at most /30.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Block(Ipv4Net);

impl Block {
    /// Longest prefix of a block: a /30 holds a gateway and one task address.
    pub const MAX_PREFIX_LEN: u8 = 30;

    pub fn new(net: Ipv4Net) -> Result<Block, NetError> {
        if net.prefix_len() > Self::MAX_PREFIX_LEN {
            return Err(NetError::BlockTooSmall { net });
        }
        if net.trunc() != net {
            return Err(NetError::HostBits { net });
        }
        Ok(Block(net))
    }

    /// The block of `len` bits around `addr`.
    pub fn containing(addr: Ipv4Addr, len: u8) -> Result<Block, NetError> {
        Block::new(Ipv4Prefix::new(addr, len.into()).net()?.trunc())
    }

    pub fn net(&self) -> Ipv4Net {
        self.0
    }

    pub fn network(&self) -> Ipv4Addr {
        self.0.network()
    }

    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// The gateway: the address after the network address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) + 1)
    }

    /// The addresses tasks may get: after the gateway, before the broadcast
    /// address, lowest first.
    pub fn task_addresses(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        (u32::from(self.gateway()) + 1..u32::from(self.0.broadcast())).map(Ipv4Addr::from)
    }

    /// Whether `addr` is one of the block's task addresses.
    pub fn holds(&self, addr: Ipv4Addr) -> bool {
        self.0.contains(&addr)
            && addr != self.network()
            && addr != self.gateway()
            && addr != self.0.broadcast()
    }

    /// Whether `addr` is anywhere in the block.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        self.0.contains(&addr)
    }

    /// How a task wears `addr` of this block: with the block's prefix length.
    pub fn interface(&self, addr: Ipv4Addr) -> Ipv4Net {
        // A block's prefix length is at most 30: always valid.
        Ipv4Net::new_assert(addr, self.prefix_len())
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Block {
    type Err = NetError;

    /// "A.B.C.D/N" with the host bits zero and N at most 30.
    fn from_str(text: &str) -> Result<Block, NetError> {
        text.parse::<Ipv4Prefix>()?.block()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_block_names_its_gateway_and_task_addresses() {
        let block = Block::containing(Ipv4Addr::new(10, 96, 1, 77), 26).expect("block");
        assert_eq!(block.to_string(), "10.96.1.64/26");
        assert_eq!(block.gateway(), Ipv4Addr::new(10, 96, 1, 65));
        let tasks: Vec<Ipv4Addr> = block.task_addresses().collect();
        assert_eq!(tasks.len(), 61);
        assert_eq!(tasks[0], Ipv4Addr::new(10, 96, 1, 66));
        assert_eq!(tasks[60], Ipv4Addr::new(10, 96, 1, 126));
        assert!(block.holds(Ipv4Addr::new(10, 96, 1, 77)));
        assert!(!block.holds(Ipv4Addr::new(10, 96, 1, 65)), "gateway");
        assert!(!block.holds(Ipv4Addr::new(10, 96, 1, 127)), "broadcast");
        assert!(block.contains(Ipv4Addr::new(10, 96, 1, 127)));
        assert_eq!(
            block.interface(Ipv4Addr::new(10, 96, 1, 77)).to_string(),
            "10.96.1.77/26"
        );
    }

    #[test]
    fn blocks_with_host_bits_or_no_room_are_refused() {
        let net = |t: &str| t.parse::<Ipv4Net>().expect("net");
        let err = Block::new(net("10.20.1.77/24")).expect_err("host bits");
        assert_eq!(
            err.to_string(),
            "10.20.1.77/24 has host bits set (its network address is 10.20.1.0)"
        );
        let err = Block::new(net("10.20.1.0/31")).expect_err("small");
        assert!(err.to_string().contains("at most /30"), "{err}");
        assert!(Block::new(net("10.20.1.0/30")).is_ok());
        assert_eq!("10.20.1.0/24".parse(), Block::new(net("10.20.1.0/24")));
        assert!("10.20.1.0".parse::<Block>().is_err());
        assert!("10.20.1.1/24".parse::<Block>().is_err());
    }

    proptest! {
        #[test]
        fn the_gateway_and_task_addresses_partition_the_block(addr: u32, len in 20u8..=30) {
            let block = Block::containing(Ipv4Addr::from(addr), len).expect("block");
            prop_assert!(block.contains(Ipv4Addr::from(addr)));
            prop_assert!(block.contains(block.gateway()) && !block.holds(block.gateway()));
            let tasks: Vec<Ipv4Addr> = block.task_addresses().collect();
            prop_assert_eq!(tasks.len() as u64, (1u64 << (32 - len)) - 3);
            prop_assert!(tasks.iter().all(|a| block.holds(*a)));
            let a = Ipv4Addr::from(addr);
            prop_assert_eq!(block.holds(a), tasks.contains(&a));
        }
    }
}
