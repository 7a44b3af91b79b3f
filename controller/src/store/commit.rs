//! Committing transactions through Raft: the one way every part of the
//! controller writes (API handlers, the leader's loops, the dispatcher).

use berth_proto::store::{Op, Txn, TxnResult, txn_result::Failure};
use prost::Message as _;

use crate::raft::{ProposeError, RaftHandle};

/// Largest transaction a client may send (Swarm allows 1.5 MiB).
pub const MAX_TXN_BYTES: usize = 1536 * 1024;

/// Why the state machine refused a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// An object changed since it was read (a version precondition failed).
    Conflict,
    NotFound,
    /// A create found the object, or a unique key (name, port) is taken.
    Exists,
    Invalid,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("request is {size} bytes; the limit is {limit} bytes (1.5 MiB)")]
    TooLarge { size: usize, limit: usize },
    /// The transaction was applied and refused: nothing changed.
    #[error("{message}")]
    Refused { refusal: Refusal, message: String },
    #[error(transparent)]
    Raft(#[from] ProposeError),
}

impl CommitError {
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            CommitError::Refused {
                refusal: Refusal::Conflict,
                ..
            }
        )
    }
}

/// Commits `ops` as one transaction; a refused precondition is an error
/// carrying the state machine's message.
pub async fn commit(raft: &RaftHandle, ops: Vec<Op>) -> Result<TxnResult, CommitError> {
    let txn = Txn { ops };
    let size = txn.encoded_len();
    if size > MAX_TXN_BYTES {
        return Err(CommitError::TooLarge {
            size,
            limit: MAX_TXN_BYTES,
        });
    }
    let result = raft.propose(txn).await?;
    if result.error.is_empty() {
        return Ok(result);
    }
    let refusal = match Failure::try_from(result.failure).unwrap_or(Failure::Invalid) {
        Failure::Conflict => Refusal::Conflict,
        Failure::NotFound => Refusal::NotFound,
        Failure::Exists => Refusal::Exists,
        Failure::Invalid | Failure::None => Refusal::Invalid,
    };
    Err(CommitError::Refused {
        refusal,
        message: result.error,
    })
}

/// Commits one put and returns the object as written (with its new version).
pub async fn commit_one(
    raft: &RaftHandle,
    op: Op,
) -> Result<berth_proto::store::Object, CommitError> {
    commit(raft, vec![op])
        .await?
        .objects
        .into_iter()
        .next()
        .ok_or(CommitError::Refused {
            refusal: Refusal::Invalid,
            message: "the store returned no object".into(),
        })
}

/// Splits operations into transactions of at most `max_ops` operations and
/// about `max_bytes` bytes (the leader's rounds can be large).
pub fn batches(ops: Vec<Op>, max_ops: usize, max_bytes: usize) -> Vec<Txn> {
    let mut txns = Vec::new();
    let mut current = Txn::default();
    let mut bytes = 0;
    for o in ops {
        let size = o.encoded_len() + 4;
        if !current.ops.is_empty()
            && (current.ops.len() >= max_ops.max(1) || bytes + size > max_bytes)
        {
            txns.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.ops.push(o);
    }
    if !current.ops.is_empty() {
        txns.push(current);
    }
    txns
}
