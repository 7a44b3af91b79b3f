//! A copy of this member's Raft status that API handlers read without asking the
//! member loop (refreshed after every loop iteration).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
}

#[derive(Clone, Debug)]
pub struct MemberStatus {
    pub id: u64,
    pub address: String,
    pub role: Role,
}

#[derive(Clone, Debug, Default)]
pub struct RaftStatus {
    pub id: u64,
    pub cluster_id: String,
    pub leader_id: u64,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub members: Vec<MemberStatus>,
    /// id -> peer address, as the state machine has it.
    pub addresses: BTreeMap<u64, String>,
    /// This member was removed from the cluster.
    pub removed: bool,
}

impl RaftStatus {
    pub fn is_leader(&self) -> bool {
        self.leader_id != 0 && self.leader_id == self.id
    }

    pub fn leader_address(&self) -> Option<&str> {
        self.addresses.get(&self.leader_id).map(String::as_str)
    }
}

#[derive(Clone, Default)]
pub struct SharedStatus(Arc<RwLock<RaftStatus>>);

impl SharedStatus {
    pub fn get(&self) -> RaftStatus {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the status in place (no copy): for checks on every raft message.
    pub fn with<R>(&self, read: impl FnOnce(&RaftStatus) -> R) -> R {
        read(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn set_indexes(&self, commit_index: u64, applied_index: u64) {
        let mut status = self.0.write().unwrap_or_else(|e| e.into_inner());
        status.commit_index = commit_index;
        status.applied_index = applied_index;
    }

    /// This member leads and does not know `from`: the sender was removed
    /// from the cluster and is to be told so (a removed member may never learn
    /// the commit of its own removal otherwise). Only the leader answers so: it
    /// has applied every committed join.
    pub fn removed_sender(&self, from: u64) -> bool {
        self.with(|s| s.is_leader() && !s.addresses.contains_key(&from))
    }

    pub fn set(&self, status: RaftStatus) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = status;
    }
}
