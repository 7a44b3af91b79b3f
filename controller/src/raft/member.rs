//! The member loop: one thread owns the `RawNode` and handles its Ready: send
//! leader messages; install a snapshot; then a leader applies committed entries
//! and persists the new ones, while a follower persists, sends its acks and then
//! applies (see `on_ready`); advance. A dedicated thread, not a tokio task: log
//! syncs block.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use berth_proto::store::{MemberChange, Txn, TxnResult};
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType, Snapshot};
use raft::{RawNode, ReadOnlyOption, StateRole};
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use super::config::RaftSettings;
use super::logger::tracing_logger;
use super::mailbox::{Membership, Msg, ProposeError};
use super::status::{MemberStatus, RaftStatus, Role, SharedStatus};
use super::storage::{LogError, LogStorage};
use super::transport::Transport;
use crate::metrics::{SNAPSHOT_INSTALLED, SNAPSHOT_SENT};
use crate::store::StateMachine;

/// The state machine is checkpointed once this many keys changed (see
/// `LogStorage::checkpoint_if_large`), besides before each compaction.
const CHECKPOINT_KEYS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("state machine: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("entry {index} is corrupt: {what}")]
    CorruptEntry { index: u64, what: String },
    #[error("cannot start the raft thread of member {id}: {source}")]
    Thread { id: u64, source: std::io::Error },
}

type Reply<T> = oneshot::Sender<Result<T, ProposeError>>;

enum Pending {
    Txn(Reply<TxnResult>),
    Membership(Reply<()>),
}

/// A result to hand back once the group that produced it is written.
enum Answer {
    Txn(Reply<TxnResult>, TxnResult),
    Membership(Reply<()>),
}

pub struct RaftMember<T: Transport> {
    raw: RawNode<LogStorage>,
    sm: StateMachine,
    transport: T,
    settings: RaftSettings,
    status: SharedStatus,
    cluster_id: String,
    next_request: u64,
    /// Proposals in flight on this leader, by request id (in the entry context).
    pending: HashMap<u64, Pending>,
    /// Reads waiting for their read index, by request id.
    reads_unconfirmed: HashMap<u64, Reply<()>>,
    /// Reads whose index is known, waiting until it is applied.
    reads_waiting: VecDeque<(u64, Reply<()>)>,
    members: BTreeMap<u64, String>,
    last_role: StateRole,
    last_term: u64,
    /// A committed change removed this member.
    removed: bool,
    /// Bumped whenever the voter set or the address book changes.
    conf_epoch: u64,
    /// What the last full status publication was built from.
    published_shape: Option<StatusShape>,
}

/// Everything in the published status except the indexes, which change on every
/// write and are updated in place.
#[derive(Clone, Copy, PartialEq, Eq)]
struct StatusShape {
    leader_id: u64,
    term: u64,
    role: StateRole,
    removed: bool,
    conf_epoch: u64,
}

impl<T: Transport> RaftMember<T> {
    pub fn new(
        id: u64,
        storage: LogStorage,
        sm: StateMachine,
        transport: T,
        settings: RaftSettings,
        status: SharedStatus,
    ) -> Result<Self, MemberError> {
        let applied = sm.applied()?.index;
        let config = raft::Config {
            id,
            election_tick: settings.election_ticks,
            min_election_tick: settings.election_ticks,
            max_election_tick: settings.max_election_ticks,
            heartbeat_tick: settings.heartbeat_ticks,
            applied,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            max_uncommitted_size: 64 * 1024 * 1024,
            max_committed_size_per_ready: 16 * 1024 * 1024,
            ..Default::default()
        };
        config.validate()?;
        let members = sm.members()?;
        let cluster_id = sm.cluster_id()?.unwrap_or_default();
        let raw = RawNode::new(&config, storage, &tracing_logger(id))?;
        transport.set_peers(&members);
        let mut member = RaftMember {
            raw,
            sm,
            transport,
            settings,
            status,
            cluster_id,
            next_request: rand::random::<u64>() >> 1,
            pending: HashMap::new(),
            reads_unconfirmed: HashMap::new(),
            reads_waiting: VecDeque::new(),
            members,
            last_role: StateRole::Follower,
            last_term: 0,
            removed: false,
            conf_epoch: 0,
            published_shape: None,
        };
        member.publish_status();
        Ok(member)
    }

    /// Runs until told to stop, the mailbox closes or storage fails (then the
    /// process must stop: continuing after a failed write could lose
    /// acknowledged data).
    pub fn run(mut self, mailbox: Receiver<Msg>) -> Result<(), MemberError> {
        // A single-member cluster elects itself at once instead of waiting a timeout.
        if self.is_sole_voter() {
            self.raw.campaign()?;
        }
        let mut next_tick = Instant::now() + self.settings.tick;
        loop {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            match mailbox.recv_timeout(timeout) {
                Ok(Msg::Stop) => return Ok(()),
                Ok(msg) => {
                    self.handle(msg)?;
                    // Batch whatever else is queued into the same Ready.
                    for _ in 0..4096 {
                        match mailbox.try_recv() {
                            Ok(Msg::Stop) => return Ok(()),
                            Ok(msg) => self.handle(msg)?,
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                next_tick = now + self.settings.tick;
            }
            self.on_ready()?;
        }
    }

    fn is_sole_voter(&self) -> bool {
        let conf = self.raw.raft.prs().conf().to_conf_state();
        conf.voters == [self.raw.raft.id] && conf.learners.is_empty()
    }

    fn request_id(&mut self) -> u64 {
        self.next_request = self.next_request.wrapping_add(1);
        self.next_request
    }

    fn handle(&mut self, msg: Msg) -> Result<(), MemberError> {
        match msg {
            Msg::Raft(m) => {
                if let Err(err) = self.raw.step(*m) {
                    // Messages from removed or unknown peers are expected.
                    debug!(%err, "dropped a raft message");
                }
            }
            Msg::Propose { txn, reply } => self.propose(txn, reply),
            Msg::Membership { change, reply } => self.change_membership(change, reply),
            Msg::ReadIndex { reply } => {
                if self.raw.raft.leader_id == 0 {
                    let _ = reply.send(Err(ProposeError::NoLeader));
                } else {
                    let id = self.request_id();
                    self.reads_unconfirmed.insert(id, reply);
                    self.raw.read_index(id.to_be_bytes().to_vec());
                }
            }
            Msg::Unreachable(id) => self.raw.report_unreachable(id),
            Msg::Snapshot(id, status) => self.raw.report_snapshot(id, status),
            Msg::Removed => {
                warn!("the leader no longer knows this member: it was removed");
                self.removed = true;
            }
            // `run` stops before handing it here.
            Msg::Stop => {}
        }
        Ok(())
    }

    fn not_leader(&self) -> Option<ProposeError> {
        if self.raw.raft.state == StateRole::Leader {
            return None;
        }
        Some(match self.raw.raft.leader_id {
            0 => ProposeError::NoLeader,
            leader_id => ProposeError::NotLeader { leader_id },
        })
    }

    /// Proposes on this member. A follower hands the proposal to the leader as a
    /// raft message (no extra RPC); every member applies every entry, so the
    /// follower answers its client when it applies the entry carrying its id.
    fn propose(&mut self, txn: Txn, reply: Reply<TxnResult>) {
        if self.raw.raft.leader_id == 0 {
            let _ = reply.send(Err(ProposeError::NoLeader));
            return;
        }
        let id = self.request_id();
        match self
            .raw
            .propose(id.to_be_bytes().to_vec(), txn.encode_to_vec())
        {
            Ok(()) => {
                self.pending.insert(id, Pending::Txn(reply));
            }
            Err(err) => {
                let _ = reply.send(Err(ProposeError::Invalid(format!(
                    "proposal refused: {err}"
                ))));
            }
        }
    }

    fn change_membership(&mut self, change: Membership, reply: Reply<()>) {
        if let Some(err) = self.not_leader() {
            let _ = reply.send(Err(err));
            return;
        }
        if self.raw.raft.pending_conf_index > self.raw.raft.raft_log.applied {
            let _ = reply.send(Err(ProposeError::MembershipBusy));
            return;
        }
        let (node_id, change_type, context) = match change {
            Membership::AddLearner(member) => (
                member.id,
                ConfChangeType::AddLearnerNode,
                member.encode_to_vec(),
            ),
            Membership::Promote(id) => (id, ConfChangeType::AddNode, Vec::new()),
            Membership::Remove(id) => (id, ConfChangeType::RemoveNode, Vec::new()),
        };
        let mut single = ConfChangeSingle {
            node_id,
            ..Default::default()
        };
        single.set_change_type(change_type);
        let mut cc = ConfChangeV2::default();
        cc.set_changes(vec![single].into());
        cc.set_context(context.into());
        let id = self.request_id();
        match self.raw.propose_conf_change(id.to_be_bytes().to_vec(), cc) {
            Ok(()) => {
                self.pending.insert(id, Pending::Membership(reply));
            }
            Err(err) => {
                let _ = reply.send(Err(ProposeError::Invalid(format!(
                    "membership change refused: {err}"
                ))));
            }
        }
    }

    fn on_ready(&mut self) -> Result<(), MemberError> {
        if !self.raw.has_ready() {
            self.publish_status();
            return Ok(());
        }
        let mut rd = self.raw.ready();
        if !rd.messages().is_empty() {
            let messages = rd.take_messages();
            self.count_snapshots_sent(&messages);
            self.transport.send(messages);
        }
        if !rd.snapshot().is_empty() {
            let snapshot: &Snapshot = rd.snapshot();
            info!(
                index = snapshot.get_metadata().index,
                "installing a snapshot"
            );
            self.settings
                .metrics
                .snapshot(SNAPSHOT_INSTALLED, snapshot.get_data().len());
            self.raw.mut_store().install_snapshot(snapshot)?;
            self.reload_members()?;
        }
        for rs in rd.take_read_states() {
            if let Some(reply) = self
                .reads_unconfirmed
                .remove(&request_id_of(&rs.request_ctx))
            {
                self.reads_waiting.push_back((rs.index, reply));
            }
        }
        // raft-rs hands out only committed entries this member has persisted:
        // what waits on them (clients of the leader) need not wait for this
        // Ready's write and sync, so they are applied first. A member whose acks
        // wait on the sync (a follower, a candidate) sends them first, then applies.
        let mut committed = rd.take_committed_entries();
        let acks = !rd.persisted_messages().is_empty();
        if !acks {
            self.apply(std::mem::take(&mut committed))?;
        }
        // Durable before anything that depends on it leaves this process: new
        // entries, term and vote (raft-rs' must_sync). A commit index alone need
        // not be: the log's open raises it to the state machine's applied index.
        let must_sync = rd.must_sync();
        self.raw
            .mut_store()
            .append(rd.entries(), rd.hs(), must_sync)?;
        if acks {
            self.transport.send(rd.take_persisted_messages());
        }
        self.apply(committed)?;
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
        }
        if !light.messages().is_empty() {
            self.transport.send(light.take_messages());
        }
        self.apply(light.take_committed_entries())?;
        self.raw.advance_apply();

        self.on_role_change();
        self.release_reads();
        self.maybe_compact()?;
        self.maybe_promote_learners();
        self.publish_status();
        Ok(())
    }

    /// Applies committed entries as one group: one sled batch (tables, revision,
    /// applied index), then the answers to the clients waiting on them.
    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), MemberError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut group = self.sm.begin()?;
        let mut answers = Vec::new();
        for entry in entries {
            let index = entry.index;
            let request = request_id_of(entry.get_context());
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.get_data().is_empty() => {
                    // A new leader's empty entry.
                    self.sm.set_applied(&mut group, index, entry.term);
                }
                EntryType::EntryNormal => {
                    let result = match Txn::decode(entry.get_data()) {
                        Ok(txn) => self.sm.apply_in(&mut group, &txn, index, entry.term),
                        Err(err) => {
                            // Only a bug can put an undecodable entry in the log;
                            // skipping it keeps every member identical.
                            error!(index, %err, "undecodable entry skipped");
                            self.sm.set_applied(&mut group, index, entry.term);
                            TxnResult {
                                error: format!("undecodable command: {err}"),
                                ..Default::default()
                            }
                        }
                    };
                    if let Some(Pending::Txn(reply)) = self.pending.remove(&request) {
                        answers.push(Answer::Txn(reply, result));
                    }
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(&mut group, &entry)?;
                    if let Some(Pending::Membership(reply)) = self.pending.remove(&request) {
                        answers.push(Answer::Membership(reply));
                    }
                }
            }
        }
        let events = self.sm.commit(group)?;
        // Only now is what they wrote visible to reads.
        for answer in answers {
            match answer {
                Answer::Txn(reply, result) => {
                    let _ = reply.send(Ok(result));
                }
                Answer::Membership(reply) => {
                    let _ = reply.send(Ok(()));
                }
            }
        }
        // Watchers after the clients: both wake tasks, the clients wait.
        self.sm.publish(events);
        Ok(())
    }

    fn apply_conf_change(
        &mut self,
        group: &mut crate::store::machine::ApplyBatch,
        entry: &Entry,
    ) -> Result<(), MemberError> {
        let corrupt = |what: String| MemberError::CorruptEntry {
            index: entry.index,
            what,
        };
        let cc = if entry.get_entry_type() == EntryType::EntryConfChangeV2 {
            ConfChangeV2::parse_from_bytes(entry.get_data()).map_err(|e| corrupt(e.to_string()))?
        } else {
            // Legacy single change: the same thing as a one-change V2.
            let old = raft::eraftpb::ConfChange::parse_from_bytes(entry.get_data())
                .map_err(|e| corrupt(e.to_string()))?;
            let mut single = ConfChangeSingle {
                node_id: old.node_id,
                ..Default::default()
            };
            single.set_change_type(old.get_change_type());
            let mut cc = ConfChangeV2::default();
            cc.set_changes(vec![single].into());
            cc.set_context(old.get_context().to_vec().into());
            cc
        };
        let conf_state = self.raw.apply_conf_change(&cc)?;
        for change in cc.get_changes() {
            match change.get_change_type() {
                ConfChangeType::AddLearnerNode | ConfChangeType::AddNode => {
                    if let Ok(member) = MemberChange::decode(cc.get_context())
                        && member.id == change.node_id
                        && !member.address.is_empty()
                    {
                        self.members.insert(member.id, member.address);
                    }
                }
                ConfChangeType::RemoveNode => {
                    self.members.remove(&change.node_id);
                    if change.node_id == self.raw.raft.id {
                        self.removed = true;
                    }
                }
            }
        }
        self.conf_epoch += 1;
        let conf_bytes = conf_state
            .write_to_bytes()
            .map_err(|e| corrupt(e.to_string()))?;
        self.sm
            .apply_membership(group, &self.members, &conf_bytes, entry.index, entry.term)?;
        self.transport.set_peers(&self.members);
        info!(voters = ?conf_state.voters, learners = ?conf_state.learners, "membership changed");
        Ok(())
    }

    fn reload_members(&mut self) -> Result<(), MemberError> {
        self.conf_epoch += 1;
        self.members = self.sm.members()?;
        if let Some(id) = self.sm.cluster_id()? {
            self.cluster_id = id;
        }
        self.transport.set_peers(&self.members);
        Ok(())
    }

    /// On losing leadership, or a new term, every proposal in flight has an
    /// unknown outcome and every unconfirmed read must be retried.
    fn on_role_change(&mut self) {
        let role = self.raw.raft.state;
        let term = self.raw.raft.term;
        if role != self.last_role || term != self.last_term {
            let lost_leadership = self.last_role == StateRole::Leader && role != StateRole::Leader;
            if lost_leadership {
                warn!(term, "lost leadership");
            }
            // A new term may or may not keep what was proposed in the old one.
            if lost_leadership || term != self.last_term {
                for (_, pending) in self.pending.drain() {
                    match pending {
                        Pending::Txn(reply) => {
                            let _ = reply.send(Err(ProposeError::Unknown));
                        }
                        Pending::Membership(reply) => {
                            let _ = reply.send(Err(ProposeError::Unknown));
                        }
                    }
                }
            }
            if role == StateRole::Leader {
                info!(term, "became leader");
            }
            for (_, reply) in self.reads_unconfirmed.drain() {
                let _ = reply.send(Err(ProposeError::NoLeader));
            }
            self.last_role = role;
            self.last_term = term;
        }
    }

    fn release_reads(&mut self) {
        let applied = self.raw.raft.raft_log.applied;
        while let Some((index, _)) = self.reads_waiting.front() {
            if *index > applied {
                break;
            }
            if let Some((_, reply)) = self.reads_waiting.pop_front() {
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn maybe_compact(&mut self) -> Result<(), MemberError> {
        let applied = self.raw.raft.raft_log.applied;
        let store = self.raw.mut_store();
        store.checkpoint_if_large(CHECKPOINT_KEYS)?;
        let applied_in_log = applied.saturating_sub(store.first_index() - 1);
        if applied_in_log > self.settings.snapshot_entries + self.settings.compact_margin {
            let to = applied - self.settings.compact_margin;
            debug!(to, "compacting the raft log");
            store.compact(to)?;
            self.settings.metrics.log_compactions.inc();
        }
        Ok(())
    }

    /// A learner that has caught up becomes a voter (one change at a time).
    fn maybe_promote_learners(&mut self) {
        if self.raw.raft.state != StateRole::Leader
            || self.raw.raft.pending_conf_index > self.raw.raft.raft_log.applied
        {
            return;
        }
        let committed = self.raw.raft.raft_log.committed;
        // Read the learner set in place: this runs after every Ready.
        let learners = self.raw.raft.prs().conf().learners();
        let caught_up = learners.iter().copied().find(|id| {
            self.raw
                .raft
                .prs()
                .get(*id)
                .is_some_and(|p| p.matched + 8 >= committed && p.matched > 0)
        });
        if let Some(id) = caught_up {
            info!(member = id, "promoting a caught-up learner to voter");
            let (reply, _) = oneshot::channel();
            self.change_membership(Membership::Promote(id), reply);
        }
    }

    /// Counts the snapshots among outgoing messages (a follower too far
    /// behind gets the whole state machine).
    fn count_snapshots_sent(&self, messages: &[raft::eraftpb::Message]) {
        for message in messages {
            if message.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot {
                let bytes = message.get_snapshot().get_data().len();
                self.settings.metrics.snapshot(SNAPSHOT_SENT, bytes);
            }
        }
    }

    fn publish_status(&mut self) {
        let raft = &self.raw.raft;
        let shape = StatusShape {
            leader_id: raft.leader_id,
            term: raft.term,
            role: raft.state,
            removed: self.removed,
            conf_epoch: self.conf_epoch,
        };
        if self.published_shape == Some(shape) {
            // The hot path: only the indexes moved; no allocation.
            self.status
                .set_indexes(raft.raft_log.committed, raft.raft_log.applied);
            return;
        }
        if self
            .published_shape
            .is_some_and(|last| last.leader_id != shape.leader_id)
            && shape.leader_id != 0
        {
            self.settings.metrics.leader_changes.inc();
        }
        self.published_shape = Some(shape);
        let conf = raft.prs().conf().to_conf_state();
        let role_of = |id: u64| {
            if id == raft.leader_id {
                Role::Leader
            } else if conf.learners.contains(&id) {
                Role::Learner
            } else if id == raft.id && raft.state == StateRole::Candidate {
                Role::Candidate
            } else {
                Role::Follower
            }
        };
        let mut members: Vec<MemberStatus> = conf
            .voters
            .iter()
            .chain(conf.learners.iter())
            .map(|id| MemberStatus {
                id: *id,
                address: self.members.get(id).cloned().unwrap_or_default(),
                role: role_of(*id),
            })
            .collect();
        members.sort_by_key(|m| m.id);
        let removed = self.removed;
        self.status.set(RaftStatus {
            id: raft.id,
            cluster_id: self.cluster_id.clone(),
            leader_id: raft.leader_id,
            term: raft.term,
            commit_index: raft.raft_log.committed,
            applied_index: raft.raft_log.applied,
            members,
            addresses: self.members.clone(),
            removed,
        });
    }
}

fn request_id_of(context: &[u8]) -> u64 {
    context
        .try_into()
        .map(u64::from_be_bytes)
        .unwrap_or_default()
}
