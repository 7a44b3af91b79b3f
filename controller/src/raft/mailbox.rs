//! What the member loop receives: peer messages, proposals, reads, membership
//! changes, transport reports and the order to stop. Requests carry a oneshot for the answer.

use berth_proto::store::{MemberChange, Txn, TxnResult};
use raft::SnapshotStatus;
use raft::eraftpb::Message;
use tokio::sync::oneshot;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// Another member leads; 0 when no leader is known.
    #[error("this controller is not the leader (leader: {leader_id})")]
    NotLeader { leader_id: u64 },
    #[error("no leader: the cluster has no quorum right now")]
    NoLeader,
    /// The outcome is unknown: the write may or may not have been applied.
    #[error("leadership changed while the request was in flight; its outcome is unknown")]
    Unknown,
    #[error("another membership change is in progress; retry when it is done")]
    MembershipBusy,
    #[error("{0}")]
    Invalid(String),
    #[error("the controller is overloaded or stopping")]
    Unavailable,
}

pub enum Membership {
    AddLearner(MemberChange),
    Promote(u64),
    Remove(u64),
}

pub enum Msg {
    Raft(Box<Message>),
    Propose {
        txn: Txn,
        reply: oneshot::Sender<Result<TxnResult, ProposeError>>,
    },
    Membership {
        change: Membership,
        reply: oneshot::Sender<Result<(), ProposeError>>,
    },
    /// A linearizable read: answered once this member has applied everything
    /// committed when the read arrived.
    ReadIndex {
        reply: oneshot::Sender<Result<(), ProposeError>>,
    },
    Unreachable(u64),
    Snapshot(u64, SnapshotStatus),
    /// The leader says this member is no longer in the cluster.
    Removed,
    /// Ends the member loop where it is (nothing it has not persisted was
    /// acknowledged): a test stopping a member; a controller process simply
    /// ends with its loop.
    Stop,
}
