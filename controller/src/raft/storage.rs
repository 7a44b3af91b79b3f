//! raft-rs `Storage` on sled: the log, the hard state and the compaction point in
//! the `raft` tree; the conf state and applied index live with the state machine
//! (written atomically with what they describe).
//!
//! Every mutation here is followed by `flush` before anything that depends on it
//! leaves the process (the node loop calls `sync`).

use std::cell::RefCell;
use std::collections::VecDeque;

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::store::StateMachine;

const HARD_STATE: &[u8] = b"hard_state";
/// Index and term of the last entry removed from the log (compaction point).
const COMPACTED: &[u8] = b"compacted";
const ENTRY_PREFIX: u8 = b'e';
/// Newest entries kept parsed in memory: raft reads them back to apply them and
/// to send them to followers, and asks their terms on every append.
const CACHE_ENTRIES: usize = 4096;
const CACHE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("raft log i/o failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("raft log is corrupt: {0}")]
    Corrupt(String),
    #[error("state machine: {0}")]
    Store(#[from] crate::store::StoreError),
}

pub struct SledStorage {
    db: sled::Db,
    log: sled::Tree,
    sm: StateMachine,
    hard_state: HardState,
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

fn entry_key(index: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = ENTRY_PREFIX;
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

fn corrupt(what: impl std::fmt::Display) -> LogError {
    LogError::Corrupt(what.to_string())
}

impl SledStorage {
    pub fn open(db: sled::Db, sm: StateMachine) -> Result<Self, LogError> {
        let log = db.open_tree("raft")?;
        let hard_state = match log.get(HARD_STATE)? {
            Some(bytes) => HardState::parse_from_bytes(&bytes).map_err(corrupt)?,
            None => HardState::default(),
        };
        let compacted = match log.get(COMPACTED)? {
            Some(bytes) if bytes.len() == 16 => (
                u64::from_be_bytes(bytes[..8].try_into().map_err(corrupt)?),
                u64::from_be_bytes(bytes[8..].try_into().map_err(corrupt)?),
            ),
            Some(_) => return Err(corrupt("compaction point is not 16 bytes")),
            None => (0, 0),
        };
        let last_index = match log.scan_prefix([ENTRY_PREFIX]).next_back() {
            Some(item) => {
                let (key, _) = item?;
                u64::from_be_bytes(key[1..].try_into().map_err(corrupt)?)
            }
            None => compacted.0,
        };
        Ok(SledStorage {
            db,
            log,
            sm,
            hard_state,
            compacted,
            last_index,
            cache: VecDeque::new(),
            cache_bytes: 0,
            snapshot_cache: RefCell::new(None),
        })
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> Result<ConfState, LogError> {
        match self.sm.conf_state_bytes()? {
            Some(bytes) => ConfState::parse_from_bytes(&bytes).map_err(corrupt),
            None => Ok(ConfState::default()),
        }
    }

    /// Appends entries (replacing any conflicting suffix) and the hard state in one
    /// batch. Not durable until `sync`.
    pub fn append(&mut self, entries: &[Entry], hs: Option<&HardState>) -> Result<(), LogError> {
        let mut batch = sled::Batch::default();
        if let Some(first) = entries.first() {
            let new_last = entries[entries.len() - 1].index;
            for entry in entries {
                batch.insert(
                    &entry_key(entry.index),
                    entry.write_to_bytes().map_err(corrupt)?,
                );
            }
            // Entries after the new last one belong to a log that lost.
            for index in new_last + 1..=self.last_index {
                batch.remove(&entry_key(index));
            }
            if first.index <= self.compacted.0 {
                return Err(corrupt(format!(
                    "append at {} into the compacted part (up to {})",
                    first.index, self.compacted.0
                )));
            }
            self.last_index = new_last;
            self.cache_entries(entries);
        }
        if let Some(hs) = hs {
            batch.insert(HARD_STATE, hs.write_to_bytes().map_err(corrupt)?);
            self.hard_state = hs.clone();
        }
        self.log.apply_batch(batch)?;
        Ok(())
    }

    /// Records a new commit index (from a LightReady) before its entries apply.
    pub fn set_commit(&mut self, commit: u64) -> Result<(), LogError> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.append(&[], Some(&hs))
    }

    /// Makes everything written so far durable (sled's flush writes its whole log).
    pub fn sync(&self) -> Result<(), LogError> {
        self.db.flush()?;
        Ok(())
    }

    /// Installs a snapshot received from the leader: replaces the state machine and
    /// the log, then flushes.
    pub fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), LogError> {
        let meta = snapshot.get_metadata();
        let data = berth_proto::store::SnapshotData::decode(snapshot.get_data())
            .map_err(|e| corrupt(format!("snapshot at index {}: {e}", meta.index)))?;
        let conf = meta.get_conf_state().write_to_bytes().map_err(corrupt)?;
        self.sm.restore(&data, meta.index, meta.term, &conf)?;
        let mut batch = sled::Batch::default();
        for key in self.log.scan_prefix([ENTRY_PREFIX]).keys() {
            batch.remove(key?);
        }
        batch.insert(COMPACTED, compacted_bytes(meta.index, meta.term).to_vec());
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        batch.insert(HARD_STATE, hs.write_to_bytes().map_err(corrupt)?);
        self.log.apply_batch(batch)?;
        self.hard_state = hs;
        self.compacted = (meta.index, meta.term);
        self.last_index = meta.index;
        self.cache.clear();
        self.cache_bytes = 0;
        self.snapshot_cache.replace(None);
        self.sync()
    }

    /// Drops log entries up to and including `index` (which must be applied).
    pub fn compact(&mut self, index: u64) -> Result<(), LogError> {
        if index <= self.compacted.0 {
            return Ok(());
        }
        let term = raft::Storage::term(self, index).map_err(|e| corrupt(e.to_string()))?;
        let mut batch = sled::Batch::default();
        for i in self.compacted.0 + 1..=index {
            batch.remove(&entry_key(i));
        }
        batch.insert(COMPACTED, compacted_bytes(index, term).to_vec());
        self.log.apply_batch(batch)?;
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

    /// Entries in the log after the compaction point.
    pub fn log_len(&self) -> u64 {
        self.last_index - self.compacted.0
    }

    pub fn first_index(&self) -> u64 {
        self.compacted.0 + 1
    }

    fn read_entry(&self, index: u64) -> raft::Result<Entry> {
        let bytes = self
            .log
            .get(entry_key(index))
            .map_err(|e| raft::Error::Store(StorageError::Other(Box::new(e))))?
            .ok_or(raft::Error::Store(StorageError::Unavailable))?;
        Entry::parse_from_bytes(&bytes)
            .map_err(|e| raft::Error::Store(StorageError::Other(Box::new(e))))
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

/// Starts the log of a new cluster's first member as if a snapshot at
/// (`index`, `term`) had been taken: members that join later find the log
/// compacted there and receive a snapshot, which carries the first voter set
/// (that set was never a log entry, so replaying the log could not teach it).
pub fn bootstrap_log(db: &sled::Db, index: u64, term: u64) -> Result<(), LogError> {
    let log = db.open_tree("raft")?;
    let hs = HardState {
        term,
        commit: index,
        ..Default::default()
    };
    let mut batch = sled::Batch::default();
    batch.insert(COMPACTED, compacted_bytes(index, term).to_vec());
    batch.insert(HARD_STATE, hs.write_to_bytes().map_err(corrupt)?);
    log.apply_batch(batch)?;
    Ok(())
}

fn compacted_bytes(index: u64, term: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&index.to_be_bytes());
    out[8..].copy_from_slice(&term.to_be_bytes());
    out
}

impl raft::Storage for SledStorage {
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
mod tests {
    use raft::Storage as _;

    use super::*;
    use crate::store::WatchHub;

    fn entry(index: u64, term: u64) -> Entry {
        let mut e = Entry {
            index,
            term,
            ..Default::default()
        };
        e.set_data(format!("{index}/{term}").into_bytes().into());
        e
    }

    fn open(db: &sled::Db) -> SledStorage {
        let sm = StateMachine::new(db.open_tree("state").expect("tree"), WatchHub::new(0));
        SledStorage::open(db.clone(), sm).expect("open")
    }

    fn terms(s: &SledStorage, low: u64, high: u64) -> Vec<(u64, u64)> {
        s.entries(low, high, None, GetEntriesContext::empty(false))
            .expect("entries")
            .iter()
            .map(|e| (e.index, e.term))
            .collect()
    }

    #[test]
    fn the_cache_agrees_with_the_log_through_truncation_and_compaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("sled");
        let mut s = open(&db);
        let first: Vec<Entry> = (1..=5).map(|i| entry(i, 1)).collect();
        s.append(&first, None).expect("append");
        // A new leader replaces 4..=5 with 4 at term 2.
        s.append(&[entry(4, 2)], None).expect("append");
        assert_eq!(s.last_index().expect("last"), 4);
        assert_eq!(terms(&s, 1, 5), vec![(1, 1), (2, 1), (3, 1), (4, 2)]);
        assert_eq!(s.term(4).expect("term"), 2);
        assert!(s.term(5).is_err());
        s.compact(2).expect("compact");
        assert_eq!(s.term(2).expect("compaction point"), 1);
        assert!(
            s.entries(2, 4, None, GetEntriesContext::empty(false))
                .is_err()
        );
        assert_eq!(terms(&s, 3, 5), vec![(3, 1), (4, 2)]);
        // A reopened log (no cache) reads the same from sled.
        let reopened = open(&db);
        assert_eq!(terms(&reopened, 3, 5), terms(&s, 3, 5));
        assert_eq!(reopened.term(4).expect("term"), 2);
        assert_eq!(reopened.last_index().expect("last"), 4);
    }

    #[test]
    fn the_cache_keeps_only_the_newest_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("sled");
        let mut s = open(&db);
        let total = CACHE_ENTRIES as u64 + 10;
        for i in 1..=total {
            s.append(&[entry(i, 1)], None).expect("append");
        }
        assert_eq!(s.cache.len(), CACHE_ENTRIES);
        assert_eq!(s.cache.front().map(|e| e.index), Some(11));
        // Older entries come from sled.
        assert_eq!(terms(&s, 1, 3), vec![(1, 1), (2, 1)]);
        assert_eq!(terms(&s, total - 1, total + 1).len(), 2);
    }
}
