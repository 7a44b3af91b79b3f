//! Configs: small named blobs, compare-and-set updates.

use berth_proto::store::Expect;
use berth_proto::store::Object;
use berth_proto::store::object::Kind;
use berth_proto::v1::{
    Config, CreateConfigRequest, GetConfigRequest, ListConfigsResponse, RemoveConfigRequest,
    Timestamps, UpdateConfigRequest,
};
use tonic::Status;

use super::status::check_name;
use crate::clock::now_ms;
use crate::ids::new_id;
use crate::raft::RaftHandle;
use crate::store::commit::commit_one;
use crate::store::view::resolve;
use crate::store::{Table, commit, delete, put};

fn wrap(config: Config) -> Object {
    Object {
        kind: Some(Kind::Config(config)),
    }
}

fn unwrap(object: Object) -> Result<Config, Status> {
    match object.kind {
        Some(Kind::Config(c)) => Ok(c),
        _ => Err(Status::internal("the store returned a non-config object")),
    }
}

pub async fn create(raft: &RaftHandle, req: CreateConfigRequest) -> Result<Config, Status> {
    check_name("config", &req.name)?;
    let now = now_ms();
    let config = Config {
        id: new_id(),
        name: req.name,
        data: req.data,
        labels: req.labels,
        version: 0,
        timestamps: Some(Timestamps {
            created_ms: now,
            updated_ms: now,
        }),
    };
    unwrap(commit_one(raft, put(wrap(config), Expect::Absent, 0)).await?)
}

pub async fn update(raft: &RaftHandle, req: UpdateConfigRequest) -> Result<Config, Status> {
    let current = unwrap(resolve(raft.state(), Table::Config, &req.config)?)?;
    let (expect, version) = if req.version == 0 {
        (Expect::Present, 0)
    } else {
        (Expect::Version, req.version)
    };
    let updated = Config {
        data: req.data,
        timestamps: Some(Timestamps {
            created_ms: current.timestamps.map(|t| t.created_ms).unwrap_or_default(),
            updated_ms: now_ms(),
        }),
        ..current
    };
    unwrap(commit_one(raft, put(wrap(updated), expect, version)).await?)
}

pub async fn get(raft: &RaftHandle, req: GetConfigRequest) -> Result<Config, Status> {
    if !req.stale {
        raft.read_barrier().await?;
    }
    unwrap(resolve(raft.state(), Table::Config, &req.config)?)
}

pub async fn list(raft: &RaftHandle) -> Result<ListConfigsResponse, Status> {
    raft.read_barrier().await?;
    let configs = raft
        .state()
        .list(Table::Config)?
        .into_iter()
        .map(unwrap)
        .collect::<Result<_, _>>()?;
    Ok(ListConfigsResponse { configs })
}

pub async fn remove(raft: &RaftHandle, req: RemoveConfigRequest) -> Result<(), Status> {
    let current = unwrap(resolve(raft.state(), Table::Config, &req.config)?)?;
    let (expect, version) = if req.version == 0 {
        (Expect::Present, 0)
    } else {
        (Expect::Version, req.version)
    };
    commit(
        raft,
        vec![delete(Table::Config, &current.id, expect, version)],
    )
    .await?;
    Ok(())
}
