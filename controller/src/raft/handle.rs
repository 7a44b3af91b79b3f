//! What the API uses to talk to the Raft member: proposals (forwarded to the
//! leader when this member is a follower), linearizable read barriers and
//! membership changes.

use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use berth_proto::store::{Txn, TxnResult};
use tokio::sync::oneshot;

use super::mailbox::{Membership, Msg, ProposeError};
use super::status::SharedStatus;
use crate::metrics::ControllerMetrics;
use crate::store::StateMachine;

/// How long a write may wait for its commit before its outcome is reported as
/// unknown.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a read may wait for the leader's confirmation.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct RaftHandle {
    mailbox: SyncSender<Msg>,
    status: SharedStatus,
    sm: StateMachine,
    metrics: ControllerMetrics,
}

impl RaftHandle {
    pub fn new(
        mailbox: SyncSender<Msg>,
        status: SharedStatus,
        sm: StateMachine,
        metrics: ControllerMetrics,
    ) -> Self {
        RaftHandle {
            mailbox,
            status,
            sm,
            metrics,
        }
    }

    /// Where this controller counts (the leader's loops count here too).
    pub fn metrics(&self) -> &ControllerMetrics {
        &self.metrics
    }

    pub fn status(&self) -> &SharedStatus {
        &self.status
    }

    pub fn state(&self) -> &StateMachine {
        &self.sm
    }

    fn post(&self, msg: Msg) -> Result<(), ProposeError> {
        match self.mailbox.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                Err(ProposeError::Unavailable)
            }
        }
    }

    /// Proposes a transaction wherever the leader is (a follower passes it on
    /// as a raft message) and waits for its result: the one way anything is
    /// written.
    pub async fn propose(&self, txn: Txn) -> Result<TxnResult, ProposeError> {
        let (reply, rx) = oneshot::channel();
        // Only committed proposals count: a failed one's time says nothing.
        let started = std::time::Instant::now();
        self.post(Msg::Propose { txn, reply })?;
        match tokio::time::timeout(PROPOSE_TIMEOUT, rx).await {
            Ok(Ok(result)) => {
                self.metrics
                    .proposal_seconds
                    .observe(started.elapsed().as_secs_f64());
                result
            }
            Ok(Err(_)) => Err(ProposeError::Unavailable),
            Err(_) => Err(ProposeError::Unknown),
        }
    }

    /// Waits until this member has applied everything committed cluster-wide at
    /// the time of the call (read-index): reads after it are linearizable.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.post(Msg::ReadIndex { reply })?;
        match tokio::time::timeout(READ_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            // A read the leader never confirmed (no leader, partition): retry.
            Ok(Err(_)) | Err(_) => Err(ProposeError::NoLeader),
        }
    }

    pub async fn change_membership(&self, change: Membership) -> Result<(), ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.post(Msg::Membership { change, reply })?;
        match tokio::time::timeout(PROPOSE_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ProposeError::Unavailable),
            Err(_) => Err(ProposeError::Unknown),
        }
    }

    /// Hands a raft message from a peer to the member loop; drops it when the loop
    /// is overloaded (raft retransmits).
    pub fn deliver(&self, msg: raft::eraftpb::Message) {
        let _ = self.mailbox.try_send(Msg::Raft(Box::new(msg)));
    }
}
