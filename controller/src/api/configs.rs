//! Configs: small named blobs, compare-and-set updates. A service's spec
//! names each config it mounts with the digest of its data (files.rs), so an
//! update of the data updates those services in the same transaction: their
//! specs change and the orchestrator rolls them.

use berth_proto::store::Expect;
use berth_proto::store::Object;
use berth_proto::store::object::Kind;
use berth_proto::v1::{
    Config, CreateConfigRequest, GetConfigRequest, ListConfigsResponse, RemoveConfigRequest,
    Timestamps, UpdateConfigRequest,
};
use tonic::Status;

use super::files::{all_services, refuse_while_used, roll_users};
use super::status::check_name;
use crate::clock::now_ms;
use crate::digest::sha256_hex;
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
    let (expect, version) = if req.version == 0 {
        (Expect::Present, 0)
    } else {
        (Expect::Version, req.version)
    };
    let digest = sha256_hex(&req.data);
    // A service changed meanwhile (its version moved): read again and retry.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let current = unwrap(resolve(raft.state(), Table::Config, &req.config)?)?;
        let updated = Config {
            data: req.data.clone(),
            timestamps: Some(Timestamps {
                created_ms: current.timestamps.map(|t| t.created_ms).unwrap_or_default(),
                updated_ms: now_ms(),
            }),
            ..current
        };
        let id = updated.id.clone();
        let mut ops = vec![put(wrap(updated), expect, version)];
        let changed = [(id.clone(), digest.clone())].into();
        ops.extend(roll_users(
            &all_services(raft)?,
            &changed,
            &Default::default(),
        ));
        match commit(raft, ops).await {
            Ok(result) => match result.objects.into_iter().next() {
                Some(object) => return unwrap(object),
                None => return Err(Status::internal("the store returned no config")),
            },
            Err(err) if err.is_conflict() && attempts < UPDATE_ATTEMPTS => continue,
            Err(err) => return Err(err.into()),
        }
    }
}

/// Tries of an update whose services keep changing under it.
const UPDATE_ATTEMPTS: u32 = 5;

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
    refuse_while_used(raft, "config", &current.name, |spec| {
        spec.configs.iter().any(|c| c.config_id == current.id)
    })?;
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
