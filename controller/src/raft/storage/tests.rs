use berth_proto::store::SnapshotData;
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

struct Dirs {
    _root: tempfile::TempDir,
    db: sled::Db,
    log: std::path::PathBuf,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().expect("tempdir");
    let db = sled::open(root.path().join("db")).expect("sled");
    let log = root.path().join("raft-log");
    Dirs {
        _root: root,
        db,
        log,
    }
}

fn state_machine(d: &Dirs) -> StateMachine {
    StateMachine::new(d.db.open_tree("state").expect("tree"), WatchHub::new(0)).expect("state")
}

fn open(d: &Dirs) -> LogStorage {
    LogStorage::open(&d.log, state_machine(d)).expect("open")
}

/// Puts the state machine at (`index`, `term`) as a snapshot would.
fn applied_at(d: &Dirs, index: u64, term: u64) {
    let data = SnapshotData::default();
    state_machine(d)
        .restore(&data, index, term, &[])
        .expect("restore");
}

/// A log holding entries 1..=5 of term 1 (and a hard state, as every member's
/// log does once it has entries).
fn open_with_five(d: &Dirs) -> LogStorage {
    let mut s = open(d);
    let five: Vec<Entry> = (1..=5).map(|i| entry(i, 1)).collect();
    let hs = HardState {
        term: 1,
        ..Default::default()
    };
    s.append(&five, Some(&hs), true).expect("append");
    s
}

fn terms(s: &LogStorage, low: u64, high: u64) -> Vec<(u64, u64)> {
    s.entries(low, high, None, GetEntriesContext::empty(false))
        .expect("entries")
        .iter()
        .map(|e| (e.index, e.term))
        .collect()
}

#[test]
fn the_cache_agrees_with_the_log_through_truncation_and_compaction() {
    let d = dirs();
    let mut s = open_with_five(&d);
    // A new leader replaces 4..=5 with 4 at term 2.
    s.append(&[entry(4, 2)], None, false).expect("append");
    assert_eq!(s.last_index().expect("last"), 4);
    assert_eq!(terms(&s, 1, 5), vec![(1, 1), (2, 1), (3, 1), (4, 2)]);
    assert_eq!(s.term(4).expect("term"), 2);
    assert!(s.term(5).is_err());
    applied_at(&d, 3, 1);
    s.compact(2).expect("compact");
    assert_eq!(s.term(2).expect("compaction point"), 1);
    assert!(
        s.entries(2, 4, None, GetEntriesContext::empty(false))
            .is_err()
    );
    assert_eq!(terms(&s, 3, 5), vec![(3, 1), (4, 2)]);
    drop(s);
    // A reopened log (no cache) reads the same from disk.
    let reopened = open(&d);
    assert_eq!(terms(&reopened, 3, 5), vec![(3, 1), (4, 2)]);
    assert_eq!(reopened.term(4).expect("term"), 2);
    assert_eq!(reopened.term(2).expect("compaction point"), 1);
    assert_eq!(reopened.last_index().expect("last"), 4);
    assert_eq!(reopened.first_index(), 3);
}

#[test]
fn the_cache_keeps_only_the_newest_entries() {
    let d = dirs();
    let mut s = open(&d);
    let total = CACHE_ENTRIES as u64 + 10;
    for i in 1..=total {
        s.append(&[entry(i, 1)], None, false).expect("append");
    }
    assert_eq!(s.cache.len(), CACHE_ENTRIES);
    assert_eq!(s.cache.front().map(|e| e.index), Some(11));
    // Older entries come from the engine.
    assert_eq!(terms(&s, 1, 3), vec![(1, 1), (2, 1)]);
    assert_eq!(terms(&s, total - 1, total + 1).len(), 2);
}

#[test]
fn the_hard_state_survives_a_reopen_and_a_lost_commit_is_raised_to_applied() {
    let d = dirs();
    let mut s = open(&d);
    let hs = HardState {
        term: 3,
        vote: 7,
        commit: 1,
        ..Default::default()
    };
    s.append(
        &(1..=4).map(|i| entry(i, 3)).collect::<Vec<_>>(),
        Some(&hs),
        true,
    )
    .expect("append");
    // Commit-only moves are written lazily: this one is lost with the process.
    s.set_commit(4);
    drop(s);
    applied_at(&d, 3, 3);
    let s = open(&d);
    let hs = s.initial_state().expect("state").hard_state;
    assert_eq!((hs.term, hs.vote), (3, 7));
    assert_eq!(hs.commit, 3, "raised to what the state machine applied");
}

#[test]
fn a_log_that_ends_before_the_applied_snapshot_restarts_there() {
    let d = dirs();
    let s = open_with_five(&d);
    drop(s);
    // A snapshot at 50 reached the state machine; the crash came before the
    // log was reset.
    applied_at(&d, 50, 4);
    let mut s = open(&d);
    assert_eq!(s.first_index(), 51);
    assert_eq!(s.last_index().expect("last"), 50);
    assert_eq!(s.term(50).expect("compaction point"), 4);
    assert!(s.initial_state().expect("state").hard_state.commit >= 50);
    s.append(&[entry(51, 4)], None, false)
        .expect("append after the snapshot");
    assert_eq!(terms(&s, 51, 52), vec![(51, 4)]);
}

#[test]
fn a_snapshot_replaces_log_and_state_and_survives_a_reopen() {
    let d = dirs();
    let mut s = open_with_five(&d);
    let data = SnapshotData {
        revision: 9,
        ..Default::default()
    };
    let mut snapshot = Snapshot::default();
    snapshot.set_data(data.encode_to_vec().into());
    snapshot.mut_metadata().index = 20;
    snapshot.mut_metadata().term = 2;
    s.install_snapshot(&snapshot).expect("install");
    assert_eq!(s.first_index(), 21);
    assert!(s.term(5).is_err());
    drop(s);
    let s = open(&d);
    assert_eq!((s.first_index(), s.last_index), (21, 20));
    assert_eq!(s.term(20).expect("compaction point"), 2);
    assert_eq!(state_machine(&d).applied().expect("applied").index, 20);
}

#[test]
fn bad_appends_and_a_state_machine_behind_the_log_are_refused() {
    let d = dirs();
    let mut s = open_with_five(&d);
    let hole = s.append(&[entry(9, 1)], None, false).expect_err("a hole");
    assert!(hole.to_string().contains("hole after 5"), "{hole}");
    applied_at(&d, 4, 1);
    s.compact(3).expect("compact");
    let compacted = s
        .append(&[entry(3, 2)], None, false)
        .expect_err("compacted");
    assert!(
        compacted.to_string().contains("compacted part"),
        "{compacted}"
    );
    drop(s);
    // A state machine that lost what the log already dropped.
    applied_at(&d, 2, 1);
    let err = LogStorage::open(&d.log, state_machine(&d))
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("entries between are lost"),
        "{err}"
    );
}

#[test]
fn a_corrupt_log_file_is_refused_with_an_error_naming_it() {
    let d = dirs();
    let s = open_with_five(&d);
    drop(s);
    applied_at(&d, 3, 1);
    let files: Vec<_> = std::fs::read_dir(&d.log)
        .expect("log dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "raftlog"))
        .collect();
    assert!(!files.is_empty(), "no log files in {}", d.log.display());
    for file in &files {
        std::fs::write(file, b"this is not a raft-engine log file at all").expect("overwrite");
    }
    let err = LogStorage::open(&d.log, state_machine(&d))
        .err()
        .expect("a corrupt log opened");
    assert!(err.to_string().contains("no hard state"), "{err}");
    assert!(err.to_string().contains("missing or damaged"), "{err}");
}

#[test]
fn a_commit_index_past_the_end_of_the_log_is_refused() {
    let d = dirs();
    let mut s = open_with_five(&d);
    // As if entries 6..=9 had been synced, acknowledged and then lost.
    let hs = HardState {
        term: 1,
        commit: 9,
        ..Default::default()
    };
    s.append(&[], Some(&hs), true).expect("hard state");
    drop(s);
    let err = LogStorage::open(&d.log, state_machine(&d))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("commits entry 9"), "{err}");
    assert!(err.to_string().contains("log ends at 5"), "{err}");
}
