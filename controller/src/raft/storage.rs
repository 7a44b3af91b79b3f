//! raft-rs `Storage` on raft-engine (TiKV's log store, written for raft-rs): the
//! log, the hard state and the compaction point. The conf state and the applied
//! index live with the state machine in sled, written atomically with what they
//! describe.
//!
//! Why not sled for the log as well: sled hands every flush to its I/O threads
//! and wakes the caller by condvar, and its copy-on-write B-tree made appending
//! and compacting the log about 40% of the raft thread's CPU. raft-engine appends
//! to a plain file and syncs in the caller's thread (measured on this VM: append
//! + sync 30 µs vs sled's insert + flush 48 µs, without sled's I/O threads).
//!
//! Two stores, one rule: the log keeps every entry the state machine may not
//! have made durable yet. The state machine reaches sled only at checkpoints, so
//! it is checkpointed before the log drops entries (`compact`), and a snapshot
//! is made durable in sled before the log is reset (`install_snapshot`). On
//! open, a log that ends before the state machine's applied index (a crash
//! inside `install_snapshot`) restarts at that index.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};
use raft_engine::{Command, Engine, LogBatch, MessageExt, ReadableSize};
use tracing::warn;

use crate::store::StateMachine;

/// The engine holds many raft groups by id; a controller has one.
const GROUP: u64 = 1;
const HARD_STATE: &[u8] = b"hard_state";
/// Index and term of the last entry removed from the log (compaction point).
const COMPACTED: &[u8] = b"compacted";
/// Newest entries kept parsed in memory: raft reads them back to apply them and
/// to send them to followers, and asks their terms on every append.
const CACHE_ENTRIES: usize = 4096;
const CACHE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("raft log i/o failed: {0}")]
    Engine(#[from] raft_engine::Error),
    #[error("raft log is corrupt: {0}")]
    Corrupt(String),
    #[error("state machine: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Tells raft-engine where a raft-rs entry keeps its index.
#[derive(Clone)]
struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;

    fn index(entry: &Entry) -> u64 {
        entry.index
    }
}

pub struct LogStorage {
    engine: Engine,
    sm: StateMachine,
    hard_state: HardState,
    /// The hard state changed since it was last written. A commit index alone
    /// is written with the next append: losing it is harmless (it is learnt
    /// again from the leader, and never below what was applied).
    hard_state_dirty: bool,
    /// A hard state has been written to this log (a joining member's is empty
    /// until its first Ready).
    hard_state_stored: bool,
    /// (index, term) of the compaction point: the log holds (index, last].
    compacted: (u64, u64),
    last_index: u64,
    /// A suffix of the log, ending at `last_index` when not empty.
    cache: VecDeque<Entry>,
    /// Bytes of entry data in `cache`.
    cache_bytes: usize,
    /// The last snapshot built for a follower, reused while nothing was applied.
    snapshot_cache: RefCell<Option<Snapshot>>,
}

fn corrupt(what: impl std::fmt::Display) -> LogError {
    LogError::Corrupt(what.to_string())
}

fn open_engine(dir: &Path) -> Result<Engine, LogError> {
    let dir = dir
        .to_str()
        .ok_or_else(|| corrupt(format!("{} is not a UTF-8 path", dir.display())))?;
    let config = raft_engine::Config {
        dir: dir.to_string(),
        // Entries are small and latency matters: no compression.
        batch_compression_threshold: ReadableSize(0),
        target_file_size: ReadableSize::mb(8),
        // Whole files are removed once the log is larger than this and their
        // entries are compacted away.
        purge_threshold: ReadableSize::mb(32),
        ..Default::default()
    };
    Ok(Engine::open(config)?)
}

fn read_compacted(engine: &Engine) -> Result<(u64, u64), LogError> {
    match engine.get(GROUP, COMPACTED) {
        Some(bytes) if bytes.len() == 16 => Ok((
            u64::from_be_bytes(bytes[..8].try_into().map_err(corrupt)?),
            u64::from_be_bytes(bytes[8..].try_into().map_err(corrupt)?),
        )),
        Some(_) => Err(corrupt("compaction point is not 16 bytes")),
        None => Ok((0, 0)),
    }
}

fn compacted_bytes(index: u64, term: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(&term.to_be_bytes());
    out
}

/// Starts the log of a new cluster's first member as if a snapshot at
/// (`index`, `term`) had been taken: members that join later find the log
/// compacted there and receive a snapshot, which carries the first voter set
/// (that set was never a log entry, so replaying the log could not teach it).
pub fn bootstrap_log(dir: &Path, index: u64, term: u64) -> Result<(), LogError> {
    let engine = open_engine(dir)?;
    let hs = HardState {
        term,
        commit: index,
        ..Default::default()
    };
    let mut batch = LogBatch::default();
    batch.put(GROUP, COMPACTED.to_vec(), compacted_bytes(index, term))?;
    batch.put_message(GROUP, HARD_STATE.to_vec(), &hs)?;
    engine.write(&mut batch, true)?;
    Ok(())
}

/// Creates an empty log (a joining member's), so that a data dir is complete
/// before its marker is written.
pub fn create_log(dir: &Path) -> Result<(), LogError> {
    open_engine(dir)?;
    Ok(())
}

impl LogStorage {
    pub fn open(dir: &Path, sm: StateMachine) -> Result<Self, LogError> {
        let engine = open_engine(dir)?;
        let stored = engine.get_message::<HardState>(GROUP, HARD_STATE)?;
        let hard_state_stored = stored.is_some();
        let hard_state = stored.unwrap_or_default();
        let compacted = read_compacted(&engine)?;
        if let Some(first) = engine.first_index(GROUP)
            && first > compacted.0 + 1
        {
            return Err(corrupt(format!(
                "{} starts at entry {first} but its compaction point is {}: the entries \
                 between are lost",
                dir.display(),
                compacted.0
            )));
        }
        let last_index = engine.last_index(GROUP).unwrap_or(0).max(compacted.0);
        let mut storage = LogStorage {
            engine,
            sm,
            hard_state,
            hard_state_dirty: false,
            hard_state_stored,
            compacted,
            last_index,
            cache: VecDeque::new(),
            cache_bytes: 0,
            snapshot_cache: RefCell::new(None),
        };
        storage.reconcile_with_state_machine()?;
        Ok(storage)
    }

    /// Makes the log agree with what the state machine has durably applied.
    fn reconcile_with_state_machine(&mut self) -> Result<(), LogError> {
        let applied = self.sm.applied()?;
        // raft-engine drops what it cannot read at the end of its last file (a
        // torn write); a log that lost everything, hard state included, reads
        // as empty. A member whose state machine has applied entries always
        // had a hard state: refuse to start rather than forget its vote.
        if !self.hard_state_stored && applied.index > 0 {
            return Err(corrupt(format!(
                "{} holds no hard state although the state machine is applied up to \
                 {}: the log is missing or damaged",
                self.engine.path(),
                applied.index
            )));
        }
        if applied.index < self.compacted.0 {
            return Err(corrupt(format!(
                "the state machine is applied up to {} but the log was compacted up to {}: \
                 the entries between are lost",
                applied.index, self.compacted.0
            )));
        }
        if applied.index <= self.last_index && self.hard_state.commit > self.last_index {
            // The hard state is written with or after its entries: entries this
            // member acknowledged are gone. It may have counted in a quorum.
            return Err(corrupt(format!(
                "the hard state commits entry {} but the log ends at {}: acknowledged \
                 entries are lost",
                self.hard_state.commit, self.last_index
            )));
        }
        if applied.index > self.compacted.0 {
            let holds_applied = applied.index <= self.last_index
                && raft::Storage::term(self, applied.index).ok() == Some(applied.term);
            if !holds_applied {
                warn!(
                    applied = applied.index,
                    last = self.last_index,
                    "the raft log does not reach the state machine's applied index \
                     (an interrupted snapshot install): restarting the log there"
                );
                self.reset(applied.index, applied.term)?;
            }
        }
        // Applied entries were committed (a lazily written commit index lags).
        let commit = self.hard_state.commit.max(applied.index);
        if commit != self.hard_state.commit {
            self.hard_state.commit = commit;
            self.hard_state_dirty = true;
        }
        Ok(())
    }

    pub fn conf_state(&self) -> Result<ConfState, LogError> {
        match self.sm.conf_state_bytes()? {
            Some(bytes) => ConfState::parse_from_bytes(&bytes).map_err(corrupt),
            None => Ok(ConfState::default()),
        }
    }

    /// Appends entries (replacing any conflicting suffix) and the hard state in one
    /// write, durable before it returns when `sync` (raft-rs' must_sync).
    pub fn append(
        &mut self,
        entries: &[Entry],
        hs: Option<&HardState>,
        sync: bool,
    ) -> Result<(), LogError> {
        let mut batch = LogBatch::default();
        if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
            if first.index <= self.compacted.0 {
                return Err(corrupt(format!(
                    "append at {} into the compacted part (up to {})",
                    first.index, self.compacted.0
                )));
            }
            if first.index > self.last_index + 1 {
                return Err(corrupt(format!(
                    "append at {} leaves a hole after {}",
                    first.index, self.last_index
                )));
            }
            batch.add_entries::<EntryExt>(GROUP, entries)?;
            self.last_index = last.index;
            self.cache_entries(entries);
        }
        if let Some(hs) = hs {
            let vote_or_term = hs.term != self.hard_state.term || hs.vote != self.hard_state.vote;
            self.hard_state = hs.clone();
            self.hard_state_dirty = true;
            if batch.is_empty() && !vote_or_term && !sync {
                // Only the commit index moved: it rides on the next append.
                return Ok(());
            }
        }
        if self.hard_state_dirty {
            batch.put_message(GROUP, HARD_STATE.to_vec(), &self.hard_state)?;
            self.hard_state_dirty = false;
            self.hard_state_stored = true;
        }
        // Syncing rides on a write: raft-engine's `Engine::sync` returns at once
        // (an empty batch is never written, so it is never synced either).
        if !batch.is_empty() {
            self.engine.write(&mut batch, sync)?;
        }
        Ok(())
    }

    /// Records a new commit index (from a LightReady); written with the next append.
    pub fn set_commit(&mut self, commit: u64) {
        if self.hard_state.commit != commit {
            self.hard_state.commit = commit;
            self.hard_state_dirty = true;
        }
    }

    /// Installs a snapshot received from the leader: replaces the state machine
    /// (durably), then the log.
    pub fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), LogError> {
        let meta = snapshot.get_metadata();
        let data = berth_proto::store::SnapshotData::decode(snapshot.get_data())
            .map_err(|e| corrupt(format!("snapshot at index {}: {e}", meta.index)))?;
        let conf = meta.get_conf_state().write_to_bytes().map_err(corrupt)?;
        if !self.hard_state_stored {
            // A joiner's first Ready: its term must be on disk before the state
            // machine shows applied entries (open refuses such a log otherwise).
            self.hard_state_dirty = true;
            self.append(&[], None, true)?;
        }
        // Durable in sled when restore returns.
        self.sm.restore(&data, meta.index, meta.term, &conf)?;
        self.reset(meta.index, meta.term)?;
        self.snapshot_cache.replace(None);
        Ok(())
    }

    /// Empties the log and puts its compaction point at (`index`, `term`), durably.
    fn reset(&mut self, index: u64, term: u64) -> Result<(), LogError> {
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(index);
        hs.term = hs.term.max(term);
        let mut batch = LogBatch::default();
        batch.add_command(GROUP, Command::Clean);
        batch.put(GROUP, COMPACTED.to_vec(), compacted_bytes(index, term))?;
        batch.put_message(GROUP, HARD_STATE.to_vec(), &hs)?;
        self.engine.write(&mut batch, true)?;
        self.hard_state = hs;
        self.hard_state_dirty = false;
        self.hard_state_stored = true;
        self.compacted = (index, term);
        self.last_index = index;
        self.cache.clear();
        self.cache_bytes = 0;
        Ok(())
    }

    /// Checkpoints the state machine once this many keys changed, between
    /// compactions too. sled's work for one batch (its tree nodes split and
    /// relinked for every key) grows with the batch: one checkpoint of a
    /// cluster's 20,000 new tasks at once was ~60 MB of the converging
    /// leader's peak. A checkpoint is one sled batch and flush, so each stays
    /// whole (the applied index with the state it covers).
    pub fn checkpoint_if_large(&mut self, keys: usize) -> Result<(), LogError> {
        if self.sm.dirty_keys() >= keys {
            self.sm.checkpoint()?;
        }
        Ok(())
    }

    /// Drops log entries up to and including `index` (which must be applied).
    pub fn compact(&mut self, index: u64) -> Result<(), LogError> {
        if index <= self.compacted.0 {
            return Ok(());
        }
        let term = raft::Storage::term(self, index).map_err(|e| corrupt(e.to_string()))?;
        // What the dropped entries did must survive a crash without them.
        self.sm.checkpoint()?;
        let mut batch = LogBatch::default();
        batch.put(GROUP, COMPACTED.to_vec(), compacted_bytes(index, term))?;
        batch.add_command(GROUP, Command::Compact { index: index + 1 });
        // Synced: purging may delete the files that held the previous point.
        self.engine.write(&mut batch, true)?;
        self.engine.purge_expired_files()?;
        self.compacted = (index, term);
        while self.cache.front().is_some_and(|e| e.index <= index) {
            self.uncache_front();
        }
        Ok(())
    }

    /// Keeps appended entries (a contiguous run that replaced everything from its
    /// first index on) at the end of the cache.
    fn cache_entries(&mut self, entries: &[Entry]) {
        let first = entries[0].index;
        while self.cache.back().is_some_and(|e| e.index >= first) {
            if let Some(dropped) = self.cache.pop_back() {
                self.cache_bytes -= dropped.get_data().len();
            }
        }
        if self.cache.back().is_some_and(|e| e.index + 1 != first) {
            self.cache.clear();
            self.cache_bytes = 0;
        }
        for entry in entries {
            self.cache_bytes += entry.get_data().len();
            self.cache.push_back(entry.clone());
        }
        while self.cache.len() > CACHE_ENTRIES || self.cache_bytes > CACHE_BYTES {
            self.uncache_front();
        }
    }

    fn uncache_front(&mut self) {
        if let Some(dropped) = self.cache.pop_front() {
            self.cache_bytes -= dropped.get_data().len();
        }
    }

    /// The cached entry at `index`, if the cache holds it.
    fn cached(&self, index: u64) -> Option<&Entry> {
        let front = self.cache.front()?.index;
        let offset = index.checked_sub(front)?;
        self.cache.get(usize::try_from(offset).ok()?)
    }

    pub fn first_index(&self) -> u64 {
        self.compacted.0 + 1
    }

    fn read_entry(&self, index: u64) -> raft::Result<Entry> {
        self.engine
            .get_entry::<EntryExt>(GROUP, index)
            .map_err(|e| raft::Error::Store(StorageError::Other(Box::new(e))))?
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn build_snapshot(&self) -> raft::Result<Snapshot> {
        let other = |e: LogError| raft::Error::Store(StorageError::Other(Box::new(e)));
        let applied = self.sm.applied().map_err(|e| other(e.into()))?;
        if let Some(cached) = self.snapshot_cache.borrow().as_ref()
            && cached.get_metadata().index == applied.index
        {
            return Ok(cached.clone());
        }
        let data = self.sm.dump().map_err(|e| other(e.into()))?;
        let mut meta = SnapshotMetadata {
            index: applied.index,
            term: applied.term,
            ..Default::default()
        };
        meta.set_conf_state(self.conf_state().map_err(other)?);
        let mut snapshot = Snapshot::default();
        snapshot.set_data(data.encode_to_vec().into());
        snapshot.set_metadata(meta);
        self.snapshot_cache.replace(Some(snapshot.clone()));
        Ok(snapshot)
    }
}

impl raft::Storage for LogStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let conf_state = self
            .conf_state()
            .map_err(|e| raft::Error::Store(StorageError::Other(Box::new(e))))?;
        Ok(RaftState::new(self.hard_state.clone(), conf_state))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.compacted.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut size = 0u64;
        for index in low..high {
            let entry = match self.cached(index) {
                Some(entry) => entry.clone(),
                None => self.read_entry(index)?,
            };
            size += u64::from(entry.compute_size());
            // Always at least one entry, then stop at the size limit.
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(entry);
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.compacted.0 {
            return Ok(self.compacted.1);
        }
        if idx < self.compacted.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        match self.cached(idx) {
            Some(entry) => Ok(entry.term),
            None => Ok(self.read_entry(idx)?.term),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.compacted.0 + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let snapshot = self.build_snapshot()?;
        if snapshot.get_metadata().index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests;
