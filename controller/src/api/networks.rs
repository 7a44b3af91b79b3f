//! Networks as stored objects (the allocator and agents give them life).

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object};
use berth_proto::v1::{CreateNetworkRequest, ListNetworksResponse, Network};
use tonic::Status;

use super::status::check_name;
use crate::clock::now_ms;
use crate::ids::new_id;
use crate::raft::RaftHandle;
use crate::store::ObjectExt;
use crate::store::view::resolve;
use crate::store::{Table, commit, delete, put};

use crate::allocator::new_network::{NetworkError, new_network};
use crate::allocator::subnets::DEFAULT_NETWORK;

fn unwrap(object: Object) -> Result<Network, Status> {
    match object.kind {
        Some(Kind::Network(n)) => Ok(n),
        _ => Err(Status::internal("the store returned a non-network object")),
    }
}

impl From<NetworkError> for Status {
    fn from(err: NetworkError) -> Status {
        match err {
            NetworkError::BadSubnet(_) | NetworkError::PrefixLength(_) => {
                Status::invalid_argument(err.to_string())
            }
            NetworkError::Overlap { .. } => Status::already_exists(err.to_string()),
            NetworkError::Exhausted(_) => Status::resource_exhausted(err.to_string()),
        }
    }
}

pub async fn create(raft: &RaftHandle, req: CreateNetworkRequest) -> Result<Network, Status> {
    check_name("network", &req.name)?;
    let existing: Vec<Network> = crate::store::read_networks(raft.state())?;
    let network = new_network(
        &existing,
        new_id(),
        req.name,
        req.subnet,
        req.labels,
        now_ms(),
    )?;
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
