//! `berth.v1.Ipv4Prefix`, the overlay's address message. build.rs maps the
//! proto message to this type, so the wire form, the Rust form and the text
//! form ("A.B.C.D/N" in JSON and stack files) are one type.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::de::Error as _;

use super::{Block, NetError};

/// An IPv4 address and a prefix length as they travel: unchecked (a peer may
/// send a length above 32), so code reads it through [`Ipv4Prefix::net`] or
/// [`Ipv4Prefix::block`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
#[prost(skip_debug)]
pub struct Ipv4Prefix {
    /// The address in network order as a number (10.96.0.5 = 0x0a600005).
    #[prost(fixed32, tag = "1")]
    address: u32,
    #[prost(uint32, tag = "2")]
    len: u32,
}

impl Ipv4Prefix {
    /// The message for `addr`/`len`, as a peer could send it (unchecked).
    pub fn new(addr: Ipv4Addr, len: u32) -> Ipv4Prefix {
        Ipv4Prefix {
            address: u32::from(addr),
            len,
        }
    }

    /// The address (host bits included).
    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.address)
    }

    pub fn prefix_len(&self) -> u32 {
        self.len
    }

    /// As an interface address or range (host bits kept); refused when the
    /// prefix length is above 32.
    pub fn net(&self) -> Result<Ipv4Net, NetError> {
        u8::try_from(self.len)
            .ok()
            .and_then(|len| Ipv4Net::new(self.addr(), len).ok())
            .ok_or(NetError::PrefixLen { prefix: *self })
    }

    /// As a node's address block (host bits zero, room for a gateway and a task).
    pub fn block(&self) -> Result<Block, NetError> {
        Block::new(self.net()?)
    }
}

impl From<Ipv4Net> for Ipv4Prefix {
    fn from(net: Ipv4Net) -> Ipv4Prefix {
        Ipv4Prefix::new(net.addr(), net.prefix_len().into())
    }
}

impl From<Block> for Ipv4Prefix {
    fn from(block: Block) -> Ipv4Prefix {
        Ipv4Prefix::from(block.net())
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}

impl fmt::Debug for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Ipv4Prefix {
    type Err = NetError;

    /// "A.B.C.D/N" with N at most 32 (host bits allowed).
    fn from_str(text: &str) -> Result<Ipv4Prefix, NetError> {
        let syntax = || NetError::Syntax { text: text.into() };
        let (addr, len) = text.trim().split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        let len: u32 = len.parse().map_err(|_| syntax())?;
        let prefix = Ipv4Prefix::new(addr, len);
        prefix.net()?;
        Ok(prefix)
    }
}

impl serde::Serialize for Ipv4Prefix {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ipv4Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    #[test]
    fn a_wire_length_above_32_is_refused_when_read() {
        let bad = Ipv4Prefix::new(Ipv4Addr::new(10, 0, 0, 1), 40);
        let err = bad.net().expect_err("len 40").to_string();
        assert_eq!(err, "10.0.0.1/40 has a prefix length above 32");
        assert!(bad.block().is_err());
        let err = "10.0.0.1/26/1".parse::<Ipv4Prefix>().expect_err("syntax");
        assert!(err.to_string().contains("not an IPv4 prefix"), "{err}");
    }

    proptest! {
        #[test]
        fn round_trips_through_the_wire_and_text(address: u32, len in 0u8..=32) {
            let net = Ipv4Net::new(Ipv4Addr::from(address), len).expect("len <= 32");
            let prefix = Ipv4Prefix::from(net);
            let decoded = Ipv4Prefix::decode(prefix.encode_to_vec().as_slice()).expect("decode");
            prop_assert_eq!(decoded, prefix);
            prop_assert_eq!(decoded.net(), Ok(net));
            let text = prefix.to_string();
            prop_assert_eq!(text.parse::<Ipv4Prefix>(), Ok(prefix));
            let json = serde_json::to_string(&prefix).expect("json");
            prop_assert_eq!(&json, &format!("\"{net}\""));
            prop_assert_eq!(serde_json::from_str::<Ipv4Prefix>(&json).expect("from json"), prefix);
        }
    }
}
