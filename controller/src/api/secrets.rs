//! Secrets: created sealed, never shown, immutable, removed only when unused.
//!
//! The value is sealed with the cluster's key (keyring.rs) here, before the
//! write is proposed: the Raft log, snapshots and the state machine's files
//! only ever see the sealed form. Answers carry no data at all.

use berth_proto::store::Expect;
use berth_proto::store::Object;
use berth_proto::store::object::Kind;
use berth_proto::v1::{
    CreateSecretRequest, GetSecretRequest, ListSecretsResponse, RemoveSecretRequest, Secret,
    Timestamps,
};
use tonic::Status;

use super::files::services_using;
use super::status::check_name;
use crate::clock::now_ms;
use crate::ids::new_id;
use crate::keyring::Keyring;
use crate::raft::RaftHandle;
use crate::store::commit::commit_one;
use crate::store::view::resolve;
use crate::store::{Table, commit, delete, put};

/// Largest secret value (Swarm's limit).
pub const MAX_SECRET_BYTES: usize = 500 * 1024;

/// The secret as an answer shows it: without its value.
fn shown(object: Object) -> Result<Secret, Status> {
    match object.kind {
        Some(Kind::Secret(mut s)) => {
            s.data.clear();
            Ok(s)
        }
        _ => Err(Status::internal("the store returned a non-secret object")),
    }
}

pub async fn create(
    raft: &RaftHandle,
    keys: &Keyring,
    req: CreateSecretRequest,
) -> Result<Secret, Status> {
    check_name("secret", &req.name)?;
    if req.data.is_empty() {
        return Err(Status::invalid_argument(format!(
            "secret {}: the value is empty",
            req.name
        )));
    }
    if req.data.len() > MAX_SECRET_BYTES {
        return Err(Status::invalid_argument(format!(
            "secret {}: the value is {} bytes, more than the limit of {MAX_SECRET_BYTES} (500 KiB)",
            req.name,
            req.data.len()
        )));
    }
    let id = new_id();
    let sealed = keys
        .seal(&id, &req.data)
        .map_err(|e| Status::internal(e.to_string()))?;
    let now = now_ms();
    let secret = Secret {
        id,
        name: req.name,
        data: sealed,
        labels: req.labels,
        version: 0,
        timestamps: Some(Timestamps {
            created_ms: now,
            updated_ms: now,
        }),
    };
    let object = Object {
        kind: Some(Kind::Secret(secret)),
    };
    shown(commit_one(raft, put(object, Expect::Absent, 0)).await?)
}

pub async fn get(raft: &RaftHandle, req: GetSecretRequest) -> Result<Secret, Status> {
    raft.read_barrier().await?;
    shown(resolve(raft.state(), Table::Secret, &req.secret)?)
}

pub async fn list(raft: &RaftHandle) -> Result<ListSecretsResponse, Status> {
    raft.read_barrier().await?;
    let secrets = raft
        .state()
        .list(Table::Secret)?
        .into_iter()
        .map(shown)
        .collect::<Result<_, _>>()?;
    Ok(ListSecretsResponse { secrets })
}

pub async fn remove(raft: &RaftHandle, req: RemoveSecretRequest) -> Result<(), Status> {
    let current = shown(resolve(raft.state(), Table::Secret, &req.secret)?)?;
    let users = services_using(raft, |spec| {
        spec.secrets.iter().any(|s| s.secret_id == current.id)
    })?;
    if !users.is_empty() {
        return Err(Status::failed_precondition(format!(
            "secret {} is in use by service {}: remove it from the service (or the service) first",
            current.name,
            users.join(", ")
        )));
    }
    commit(
        raft,
        vec![delete(
            Table::Secret,
            &current.id,
            Expect::Version,
            current.version,
        )],
    )
    .await?;
    Ok(())
}
