//! IPv4 CIDR arithmetic on `u32`s: parse, contain, overlap, split. Written here
//! rather than taken from `ipnet` so the controller adds no dependency (and no
//! lock-file churn) for a few lines of bit math.

use std::fmt;
use std::net::Ipv4Addr;

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    #[error("{text:?} is not CIDR (A.B.C.D/N)")]
    Syntax { text: String },
    #[error("{text:?} has a prefix length above 32")]
    Prefix { text: String },
    #[error("{text:?} has host bits set")]
    HostBits { text: String },
}

/// An IPv4 block: a base address with its host bits zero and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    base: u32,
    prefix: u8,
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl Cidr {
    /// The block of `prefix` bits that contains `addr`.
    pub fn containing(addr: u32, prefix: u8) -> Cidr {
        let prefix = prefix.min(32);
        Cidr {
            base: addr & mask(prefix),
            prefix,
        }
    }

    /// Parses "A.B.C.D/N" with the host bits zero.
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = split(text)?;
        let cidr = Cidr::containing(addr, prefix);
        if cidr.base != addr {
            return Err(CidrError::HostBits { text: text.into() });
        }
        Ok(cidr)
    }

    pub fn base(&self) -> u32 {
        self.base
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Number of addresses.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The last address (the broadcast address of the block).
    pub fn last(&self) -> u32 {
        self.base | !mask(self.prefix)
    }

    pub fn contains_addr(&self, addr: u32) -> bool {
        addr & mask(self.prefix) == self.base
    }

    pub fn contains(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains_addr(other.base)
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// The blocks of `prefix` bits this block splits into, lowest first (none
    /// when `prefix` is shorter than this block's).
    pub fn subnets(&self, prefix: u8) -> impl Iterator<Item = Cidr> + use<> {
        let count = if prefix < self.prefix || prefix > 32 {
            0
        } else {
            1u64 << (prefix - self.prefix)
        };
        let base = u64::from(self.base);
        let step = 1u64 << (32 - u32::from(prefix.min(32)));
        (0..count).map(move |i| Cidr {
            base: (base + i * step) as u32,
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

fn split(text: &str) -> Result<(u32, u8), CidrError> {
    let syntax = || CidrError::Syntax { text: text.into() };
    let (addr, prefix) = text.split_once('/').ok_or_else(syntax)?;
    let addr: Ipv4Addr = addr.trim().parse().map_err(|_| syntax())?;
    let prefix: u8 = prefix.trim().parse().map_err(|_| syntax())?;
    if prefix > 32 {
        return Err(CidrError::Prefix { text: text.into() });
    }
    Ok((u32::from(addr), prefix))
}

/// The address of an "IP/PREFIX" interface address (host bits allowed).
pub fn parse_address(text: &str) -> Result<u32, CidrError> {
    split(text).map(|(addr, _)| addr)
}

/// "IP/PREFIX".
pub fn format_address(addr: u32, prefix: u8) -> String {
    format!("{}/{prefix}", Ipv4Addr::from(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_splits_and_compares_blocks() {
        let net = Cidr::parse("10.96.0.0/12").expect("parse");
        assert_eq!(net.to_string(), "10.96.0.0/12");
        assert_eq!(net.size(), 1 << 20);
        assert_eq!(Ipv4Addr::from(net.last()), Ipv4Addr::new(10, 111, 255, 255));
        let subs: Vec<String> = net.subnets(16).take(2).map(|c| c.to_string()).collect();
        assert_eq!(subs, vec!["10.96.0.0/16", "10.97.0.0/16"]);
        assert_eq!(net.subnets(16).count(), 16);
        assert_eq!(net.subnets(8).count(), 0);
        let a = Cidr::parse("10.96.1.0/24").expect("parse");
        assert!(net.contains(&a) && net.overlaps(&a) && a.overlaps(&net));
        assert!(!a.contains(&net));
        assert!(!a.overlaps(&Cidr::parse("10.96.2.0/24").expect("parse")));
        assert_eq!(
            Cidr::containing(u32::from(Ipv4Addr::new(10, 96, 1, 77)), 26).to_string(),
            "10.96.1.64/26"
        );
        assert_eq!(Cidr::parse("0.0.0.0/0").expect("parse").size(), 1 << 32);
    }

    #[test]
    fn refuses_bad_text_with_the_text_named() {
        for (text, why) in [
            ("10.96.0.1/16", "host bits"),
            ("10.96.0.0", "not CIDR"),
            ("10.96.0.0/33", "above 32"),
            ("x/16", "not CIDR"),
        ] {
            let err = Cidr::parse(text).expect_err(text).to_string();
            assert!(err.contains(why) && err.contains(text), "{err}");
        }
        assert_eq!(
            parse_address("10.96.0.5/26").map(Ipv4Addr::from),
            Ok(Ipv4Addr::new(10, 96, 0, 5))
        );
        assert_eq!(
            format_address(u32::from(Ipv4Addr::new(10, 96, 0, 5)), 26),
            "10.96.0.5/26"
        );
    }
}
