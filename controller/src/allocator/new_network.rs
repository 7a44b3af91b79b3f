//! A user's network record (`network create`, a stack's networks): its
//! subnet (given, or the lowest free /16 of the cluster CIDR), VXLAN id and
//! port, checked against the networks that exist (or will, in the same
//! transaction).

use berth_proto::net::{self, Ipv4Net, overlaps};
use berth_proto::v1::{Network, Timestamps};
use std::collections::BTreeMap;

use super::blocks::MAX_SUBNET_PREFIX;
use super::subnets::{
    carve, cluster_cidr, cluster_vxlan_port, default_cluster_cidr, next_vxlan_id, subnets,
};

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("subnet: {0}")]
    BadSubnet(String),
    #[error(
        "subnet {0:?} must have a prefix length between /8 and /{MAX_SUBNET_PREFIX} (room for /26 node blocks and VIPs)"
    )]
    PrefixLength(String),
    #[error("subnet {text} overlaps subnet {theirs} of network {network}")]
    Overlap {
        text: String,
        theirs: Ipv4Net,
        network: String,
    },
    #[error("the cluster CIDR {0} has no free /16 left; give the network a --subnet")]
    Exhausted(Ipv4Net),
}

/// Parses "A.B.C.D/N" with the host bits zero and room for node blocks.
pub fn parse_subnet(subnet: &str) -> Result<Ipv4Net, NetworkError> {
    let net = net::parse_subnet(subnet).map_err(|err| NetworkError::BadSubnet(err.to_string()))?;
    if !(8..=MAX_SUBNET_PREFIX).contains(&net.prefix_len()) {
        return Err(NetworkError::PrefixLength(subnet.to_string()));
    }
    Ok(net)
}

/// The record of a new network `name` (id `id`), beside `existing`.
pub fn new_network(
    existing: &[Network],
    id: String,
    name: String,
    subnet: String,
    labels: BTreeMap<String, String>,
    now_ms: i64,
) -> Result<Network, NetworkError> {
    let subnet = if subnet.is_empty() {
        carve_subnet(existing)?
    } else {
        refuse_overlap(&subnet, parse_subnet(&subnet)?, existing)?;
        subnet
    };
    Ok(Network {
        id,
        name,
        subnet,
        vxlan_id: next_vxlan_id(existing),
        // Every network of a cluster shares its VXLAN port.
        vxlan_port: cluster_vxlan_port(existing),
        labels,
        version: 0,
        timestamps: Some(Timestamps {
            created_ms: now_ms,
            updated_ms: now_ms,
        }),
    })
}

/// The lowest free /16 of the cluster CIDR (the allocator would pick the same;
/// picking it here shows it in the answer).
fn carve_subnet(existing: &[Network]) -> Result<String, NetworkError> {
    let cluster = cluster_cidr(existing, default_cluster_cidr());
    carve(cluster, &subnets(existing))
        .map(|c| c.to_string())
        .ok_or(NetworkError::Exhausted(cluster))
}

/// A subnet may not overlap another network's (their addresses would collide).
fn refuse_overlap(text: &str, subnet: Ipv4Net, existing: &[Network]) -> Result<(), NetworkError> {
    for other in existing {
        if let Ok(theirs) = net::parse_subnet(&other.subnet)
            && overlaps(&theirs, &subnet)
        {
            return Err(NetworkError::Overlap {
                text: text.to_string(),
                theirs,
                network: other.name.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_checked_for_size_and_overlap() {
        let err = parse_subnet("10.1.2.0/25")
            .expect_err("too small")
            .to_string();
        assert!(err.contains("/8 and /24"), "{err}");
        assert!(parse_subnet("10.1.2.0/24").is_ok());
        let net = |name: &str, subnet: &str| Network {
            name: name.into(),
            subnet: subnet.into(),
            ..Default::default()
        };
        let existing = [net("berth", "10.96.0.0/16"), net("waiting", "")];
        let cidr = |t| net::parse_subnet(t).expect("cidr");
        let err = refuse_overlap("10.96.4.0/24", cidr("10.96.4.0/24"), &existing)
            .expect_err("inside")
            .to_string();
        assert_eq!(
            err,
            "subnet 10.96.4.0/24 overlaps subnet 10.96.0.0/16 of network berth"
        );
        assert!(refuse_overlap("10.0.0.0/8", cidr("10.0.0.0/8"), &existing).is_err());
        assert!(refuse_overlap("10.97.0.0/16", cidr("10.97.0.0/16"), &existing).is_ok());
        assert_eq!(carve_subnet(&existing).expect("room"), "10.97.0.0/16");
        let full = [net("all", "10.96.0.0/12")];
        let err = carve_subnet(&full).expect_err("full").to_string();
        assert!(err.contains("10.96.0.0/12 has no free /16"), "{err}");
    }
}
