//! The overlay's address model, one for the controller's allocator and for the
//! agents: the wire message [`Ipv4Prefix`], a node's address [`Block`] (and the
//! gateway rule, written once in [`Block::gateway`]), network subnets as
//! [`Ipv4Net`] (ipnet's semantics: an address with a prefix length, host bits
//! kept until truncated), and the readers of the blocks a [`Node`] carries.
//!
//! Both sides read the same messages through the same functions, so a block the
//! allocator hands out is the range and gateway the agent puts on its bridge.
//!
//! [`Node`]: crate::v1::Node

mod block;
mod node_blocks;
mod prefix;

pub use block::Block;
pub use ipnet::{Ipv4Net, Ipv4Subnets};
pub use prefix::Ipv4Prefix;

/// Why an address, block or subnet is refused. The value is named; callers add
/// which node, network or task it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("{text:?} is not an IPv4 prefix (A.B.C.D/N)")]
    Syntax { text: String },
    #[error("{prefix} has a prefix length above 32")]
    PrefixLen { prefix: Ipv4Prefix },
    #[error("{net} has host bits set (its network address is {network})", network = net.network())]
    HostBits { net: Ipv4Net },
    #[error(
        "block {net} is too small: a block holds a gateway and a task address (at most /{max})",
        max = Block::MAX_PREFIX_LEN
    )]
    BlockTooSmall { net: Ipv4Net },
}

/// Parses "A.B.C.D/N" with the host bits zero: a network's subnet or a
/// cluster CIDR.
pub fn parse_subnet(text: &str) -> Result<Ipv4Net, NetError> {
    let net: Ipv4Net = text.parse::<Ipv4Prefix>()?.net()?;
    if net.trunc() != net {
        return Err(NetError::HostBits { net });
    }
    Ok(net)
}

/// Whether two ranges share an address (one contains the other: CIDR ranges
/// never partly overlap).
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(b) || b.contains(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_with_host_bits_zero_and_overlap_by_containment() {
        let net = parse_subnet("10.96.0.0/12").expect("parse");
        assert_eq!(net.to_string(), "10.96.0.0/12");
        let inner = parse_subnet("10.96.1.0/24").expect("parse");
        assert!(overlaps(&net, &inner) && overlaps(&inner, &net));
        assert!(!overlaps(
            &inner,
            &parse_subnet("10.96.2.0/24").expect("parse")
        ));
        for (text, why) in [
            ("10.96.0.1/16", "host bits"),
            ("10.96.0.0", "not an IPv4 prefix"),
            ("10.96.0.0/33", "above 32"),
            ("x/16", "not an IPv4 prefix"),
        ] {
            let err = parse_subnet(text).expect_err(text).to_string();
            assert!(err.contains(why), "{err}");
            assert!(
                err.contains(text.split('/').next().unwrap_or(text)),
                "{err}"
            );
        }
    }
}
