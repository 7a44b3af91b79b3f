//! Networks as stored objects (the allocator and agents give them life).

use berth_proto::net::{self, Ipv4Net, overlaps};
use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object};
use berth_proto::v1::{CreateNetworkRequest, ListNetworksResponse, Network, Timestamps};
use tonic::Status;

use super::status::check_name;
use crate::clock::now_ms;
use crate::ids::new_id;
use crate::raft::RaftHandle;
use crate::store::ObjectExt;
use crate::store::view::resolve;
use crate::store::{Table, commit, delete, put};

use crate::allocator::blocks::MAX_SUBNET_PREFIX;
use crate::allocator::subnets::{
    DEFAULT_NETWORK, carve, cluster_cidr, cluster_vxlan_port, default_cluster_cidr, next_vxlan_id,
    subnets,
};

fn unwrap(object: Object) -> Result<Network, Status> {
    match object.kind {
        Some(Kind::Network(n)) => Ok(n),
        _ => Err(Status::internal("the store returned a non-network object")),
    }
}

/// Parses "A.B.C.D/N" with the host bits zero and room for node blocks.
pub fn parse_subnet(subnet: &str) -> Result<Ipv4Net, Status> {
    let net = net::parse_subnet(subnet)
        .map_err(|err| Status::invalid_argument(format!("subnet: {err}")))?;
    if !(8..=MAX_SUBNET_PREFIX).contains(&net.prefix_len()) {
        return Err(Status::invalid_argument(format!(
            "subnet {subnet:?} must have a prefix length between /8 and /{MAX_SUBNET_PREFIX} (room for /26 node blocks and VIPs)"
        )));
    }
    Ok(net)
}

pub async fn create(raft: &RaftHandle, req: CreateNetworkRequest) -> Result<Network, Status> {
    check_name("network", &req.name)?;
    let existing: Vec<Network> = crate::store::read_networks(raft.state())?;
    let subnet = if req.subnet.is_empty() {
        carve_subnet(&existing)?
    } else {
        refuse_overlap(&req.subnet, parse_subnet(&req.subnet)?, &existing)?;
        req.subnet
    };
    let vxlan_id = next_vxlan_id(&existing);
    let now = now_ms();
    let network = Network {
        id: new_id(),
        name: req.name,
        subnet,
        vxlan_id,
        // Every network of a cluster shares its VXLAN port.
        vxlan_port: cluster_vxlan_port(&existing),
        labels: req.labels,
        version: 0,
        timestamps: Some(Timestamps {
            created_ms: now,
            updated_ms: now,
        }),
    };
    let result = commit(
        raft,
        vec![put(
            Object {
                kind: Some(Kind::Network(network)),
            },
            Expect::Absent,
            0,
        )],
    )
    .await?;
    unwrap(
        result
            .objects
            .into_iter()
            .next()
            .ok_or_else(|| Status::internal("the store returned no object"))?,
    )
}

/// The lowest free /16 of the cluster CIDR (the allocator would pick the same;
/// picking it here shows it in the answer).
fn carve_subnet(existing: &[Network]) -> Result<String, Status> {
    let cluster = cluster_cidr(existing, default_cluster_cidr());
    carve(cluster, &subnets(existing))
        .map(|c| c.to_string())
        .ok_or_else(|| {
            Status::resource_exhausted(format!(
                "the cluster CIDR {cluster} has no free /16 left; give the network a --subnet"
            ))
        })
}

/// A subnet may not overlap another network's (their addresses would collide).
fn refuse_overlap(text: &str, subnet: Ipv4Net, existing: &[Network]) -> Result<(), Status> {
    for other in existing {
        if let Ok(theirs) = net::parse_subnet(&other.subnet)
            && overlaps(&theirs, &subnet)
        {
            return Err(Status::already_exists(format!(
                "subnet {text} overlaps subnet {theirs} of network {}",
                other.name
            )));
        }
    }
    Ok(())
}

pub async fn list(raft: &RaftHandle) -> Result<ListNetworksResponse, Status> {
    raft.read_barrier().await?;
    let networks = raft
        .state()
        .list(Table::Network)?
        .into_iter()
        .map(unwrap)
        .collect::<Result<_, _>>()?;
    Ok(ListNetworksResponse { networks })
}

pub async fn remove(raft: &RaftHandle, key: &str) -> Result<(), Status> {
    let network = resolve(raft.state(), Table::Network, key)?;
    let name = network.unique_name().unwrap_or_default().to_string();
    if name == DEFAULT_NETWORK {
        return Err(Status::failed_precondition(format!(
            "network {name} is the default network (services that name no network join it); it cannot be removed"
        )));
    }
    for object in raft.state().list(Table::Service)? {
        if let Some(Kind::Service(s)) = &object.kind
            && let Some(spec) = &s.spec
            && spec.networks.contains(&name)
        {
            return Err(Status::failed_precondition(format!(
                "network {name} is in use by service {}",
                spec.name
            )));
        }
    }
    commit(
        raft,
        vec![delete(
            Table::Network,
            network.id(),
            Expect::Version,
            network.version(),
        )],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_checked_for_size_and_overlap() {
        let err = parse_subnet("10.1.2.0/25")
            .expect_err("too small")
            .message()
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
            .message()
            .to_string();
        assert_eq!(
            err,
            "subnet 10.96.4.0/24 overlaps subnet 10.96.0.0/16 of network berth"
        );
        assert!(refuse_overlap("10.0.0.0/8", cidr("10.0.0.0/8"), &existing).is_err());
        assert!(refuse_overlap("10.97.0.0/16", cidr("10.97.0.0/16"), &existing).is_ok());
        assert_eq!(carve_subnet(&existing).expect("room"), "10.97.0.0/16");
        let full = [net("all", "10.96.0.0/12")];
        let err = carve_subnet(&full).expect_err("full").message().to_string();
        assert!(err.contains("10.96.0.0/12 has no free /16"), "{err}");
    }
}
