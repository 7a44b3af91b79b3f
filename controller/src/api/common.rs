//! Shared plumbing of the API handlers: commit a transaction through Raft, read
//! linearizably, resolve names, map errors to gRPC statuses.

use berth_proto::store::{
    Delete, Expect, Object, Op, Put, Txn, TxnResult, op, txn_result::Failure,
};
use prost::Message as _;
use tonic::Status;

use crate::raft::RaftHandle;
use crate::raft::peer_service::propose_status;
use crate::store::{ObjectExt, StoreError};

/// Largest transaction a client may send (Swarm allows 1.5 MiB).
pub const MAX_TXN_BYTES: usize = 1536 * 1024;

pub fn store_status(err: StoreError) -> Status {
    Status::internal(format!("state store: {err}"))
}

/// Commits `ops` as one transaction; a refused precondition becomes the matching
/// gRPC status with the state machine's message.
pub async fn commit(raft: &RaftHandle, ops: Vec<Op>) -> Result<TxnResult, Status> {
    let txn = Txn { ops };
    let size = txn.encoded_len();
    if size > MAX_TXN_BYTES {
        return Err(Status::invalid_argument(format!(
            "request is {size} bytes; the limit is {MAX_TXN_BYTES} bytes (1.5 MiB)"
        )));
    }
    let result = raft.propose(txn).await.map_err(propose_status)?;
    if result.error.is_empty() {
        return Ok(result);
    }
    let failure = Failure::try_from(result.failure).unwrap_or(Failure::Invalid);
    Err(match failure {
        Failure::Conflict => Status::aborted(result.error),
        Failure::NotFound => Status::not_found(result.error),
        Failure::Exists => Status::already_exists(result.error),
        Failure::Invalid | Failure::None => Status::invalid_argument(result.error),
    })
}

/// Commits one put and returns the object as written (with its new version).
pub async fn put_one(
    raft: &RaftHandle,
    object: Object,
    expect: Expect,
    version: u64,
) -> Result<Object, Status> {
    commit(raft, vec![put(object, expect, version)])
        .await?
        .objects
        .into_iter()
        .next()
        .ok_or_else(|| Status::internal("the store returned no object"))
}

/// Waits until a read on this member is linearizable.
pub async fn barrier(raft: &RaftHandle) -> Result<(), Status> {
    raft.read_barrier().await.map_err(propose_status)
}

pub fn put(object: Object, expect: Expect, version: u64) -> Op {
    Op {
        op: Some(op::Op::Put(Put {
            object: Some(object),
            expect: expect as i32,
            version,
        })),
    }
}

pub fn delete(table: &str, id: &str, expect: Expect, version: u64) -> Op {
    Op {
        op: Some(op::Op::Delete(Delete {
            table: table.to_string(),
            id: id.to_string(),
            expect: expect as i32,
            version,
        })),
    }
}

/// Finds an object by id, or by unique name, or by a unique id prefix.
pub fn resolve(raft: &RaftHandle, table: &str, key: &str) -> Result<Object, Status> {
    if key.is_empty() {
        return Err(Status::invalid_argument(format!("no {table} named")));
    }
    let sm = raft.state();
    if let Some(obj) = sm.get(table, key).map_err(store_status)? {
        return Ok(obj);
    }
    if let Some(id) = sm.id_by_name(table, key).map_err(store_status)?
        && let Some(obj) = sm.get(table, &id).map_err(store_status)?
    {
        return Ok(obj);
    }
    let matches: Vec<Object> = sm
        .list(table)
        .map_err(store_status)?
        .into_iter()
        .filter(|o| o.id().starts_with(key))
        .collect();
    match matches.len() {
        1 => Ok(matches.into_iter().next().expect("one match")),
        0 => Err(Status::not_found(format!("{table} {key:?} not found"))),
        n => Err(Status::invalid_argument(format!(
            "{table} id prefix {key:?} is ambiguous: {n} match"
        ))),
    }
}

pub fn new_id() -> String {
    // 20 lower-case base-36 characters, like Swarm's ids.
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..20)
        .map(|_| ALPHABET[rand::random::<usize>() % ALPHABET.len()] as char)
        .collect()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Names of services, networks and configs: what DNS accepts as a label.
pub fn check_name(what: &str, name: &str) -> Result<(), Status> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.'
        })
        && !name.starts_with('-')
        && !name.starts_with('.');
    if valid {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "invalid {what} name {name:?}: use 1-63 lower-case letters, digits, '-', '_' or '.', \
             starting with a letter or digit"
        )))
    }
}
