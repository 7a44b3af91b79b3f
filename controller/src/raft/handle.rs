//! What the API uses to talk to the Raft member: proposals (forwarded to the
//! leader when this member is a follower), linearizable read barriers and
//! membership changes.

use std::collections::HashMap;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::store::{Txn, TxnResult};
use berth_proto::v1::ForwardRequest;
use prost::Message as _;
use tokio::sync::oneshot;
use tonic::transport::Channel;

use super::mailbox::{Membership, Msg, ProposeError};
use super::status::SharedStatus;
use super::transport::{peer_channel, peer_client};
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
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

/// GRPC metadata key a member sets on a NotLeader answer to forwarded requests.
pub const NOT_LEADER_METADATA: &str = "berth-not-leader";

impl RaftHandle {
    pub fn new(mailbox: SyncSender<Msg>, status: SharedStatus, sm: StateMachine) -> Self {
        RaftHandle {
            mailbox,
            status,
            sm,
            channels: Arc::new(Mutex::new(HashMap::new())),
        }
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

    /// Proposes on this member (which must lead) and waits for the result.
    pub async fn propose_local(&self, txn: Txn) -> Result<TxnResult, ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.post(Msg::Propose { txn, reply })?;
        match tokio::time::timeout(PROPOSE_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ProposeError::Unavailable),
            Err(_) => Err(ProposeError::Unknown),
        }
    }

    /// Proposes a transaction wherever the leader is.
    pub async fn propose(&self, txn: Txn) -> Result<TxnResult, ProposeError> {
        match self.propose_local(txn.clone()).await {
            Err(ProposeError::NotLeader { leader_id }) => self.forward(leader_id, txn).await,
            other => other,
        }
    }

    async fn forward(&self, leader_id: u64, txn: Txn) -> Result<TxnResult, ProposeError> {
        let address = self
            .status
            .get()
            .addresses
            .get(&leader_id)
            .cloned()
            .ok_or(ProposeError::NoLeader)?;
        let mut client = peer_client(self.channel(&address)?);
        let request = ForwardRequest {
            command: txn.encode_to_vec(),
        };
        let answer = tokio::time::timeout(PROPOSE_TIMEOUT, client.forward(request)).await;
        match answer {
            Ok(Ok(response)) => TxnResult::decode(response.into_inner().result.as_slice())
                .map_err(|e| ProposeError::Invalid(format!("leader sent a bad result: {e}"))),
            Ok(Err(status)) if status.metadata().get(NOT_LEADER_METADATA).is_some() => {
                // The leader changed on the way: nothing was proposed.
                Err(ProposeError::NoLeader)
            }
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                // The request may have reached the leader before the link broke.
                Err(ProposeError::Unknown)
            }
            Ok(Err(status)) => Err(ProposeError::Invalid(status.message().to_string())),
            Err(_) => Err(ProposeError::Unknown),
        }
    }

    fn channel(&self, address: &str) -> Result<Channel, ProposeError> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = peer_channel(address)
            .map_err(|e| ProposeError::Invalid(format!("bad leader address {address}: {e}")))?;
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
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

    /// Hands a raft message from a peer to the node loop; drops it when the loop
    /// is overloaded (raft retransmits).
    pub fn deliver(&self, msg: raft::eraftpb::Message) {
        let _ = self.mailbox.try_send(Msg::Raft(Box::new(msg)));
    }

    pub fn campaign(&self) -> Result<(), ProposeError> {
        self.post(Msg::Campaign)
    }
}
