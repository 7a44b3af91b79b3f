//! Networks as stored objects (the allocator and agents give them life).

use std::net::Ipv4Addr;

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object};
use berth_proto::v1::{CreateNetworkRequest, ListNetworksResponse, Network, Timestamps};
use tonic::Status;

use super::common::{
    barrier, check_name, commit, delete, new_id, now_ms, put, resolve, store_status,
};
use crate::raft::RaftHandle;
use crate::store::ObjectExt;

/// VXLAN ids berth hands out start here (below are left for operators).
const FIRST_VXLAN_ID: u32 = 4096;

fn unwrap(object: Object) -> Result<Network, Status> {
    match object.kind {
        Some(Kind::Network(n)) => Ok(n),
        _ => Err(Status::internal("the store returned a non-network object")),
    }
}

/// Parses "A.B.C.D/N" with the host bits zero.
pub fn parse_subnet(subnet: &str) -> Result<(Ipv4Addr, u8), Status> {
    let bad = |why: &str| Status::invalid_argument(format!("subnet {subnet:?} {why}"));
    let (addr, len) = subnet
        .split_once('/')
        .ok_or_else(|| bad("is not CIDR (A.B.C.D/N)"))?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad("has no valid IPv4 address"))?;
    let len: u8 = len.parse().map_err(|_| bad("has no valid prefix length"))?;
    if !(8..=29).contains(&len) {
        return Err(bad("must have a prefix length between /8 and /29"));
    }
    let mask = u32::MAX << (32 - len);
    if u32::from(addr) & !mask != 0 {
        return Err(bad("has host bits set"));
    }
    Ok((addr, len))
}

pub async fn create(raft: &RaftHandle, req: CreateNetworkRequest) -> Result<Network, Status> {
    check_name("network", &req.name)?;
    if !req.subnet.is_empty() {
        parse_subnet(&req.subnet)?;
    }
    let existing = raft.state().list("network").map_err(store_status)?;
    let vxlan_id = existing
        .iter()
        .filter_map(|o| match &o.kind {
            Some(Kind::Network(n)) => Some(n.vxlan_id),
            _ => None,
        })
        .max()
        .map_or(FIRST_VXLAN_ID, |max| max + 1);
    let now = now_ms();
    let network = Network {
        id: new_id(),
        name: req.name,
        subnet: req.subnet,
        vxlan_id,
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

pub async fn list(raft: &RaftHandle) -> Result<ListNetworksResponse, Status> {
    barrier(raft).await?;
    let networks = raft
        .state()
        .list("network")
        .map_err(store_status)?
        .into_iter()
        .map(unwrap)
        .collect::<Result<_, _>>()?;
    Ok(ListNetworksResponse { networks })
}

pub async fn remove(raft: &RaftHandle, key: &str) -> Result<(), Status> {
    let network = resolve(raft, "network", key)?;
    let name = network.unique_name().unwrap_or_default().to_string();
    for object in raft.state().list("service").map_err(store_status)? {
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
            "network",
            network.id(),
            Expect::Version,
            network.version(),
        )],
    )
    .await?;
    Ok(())
}
