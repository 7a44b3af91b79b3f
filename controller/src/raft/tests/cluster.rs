//! A cluster of real members in this process: each a `RaftMember` loop with its
//! raft-engine log and sled state machine in a data dir of its own (made the way
//! `--init`/`--join` make them), wired by a `MemoryNetwork`. Tests wait for
//! conditions with bounded polling, never for fixed times.

use std::collections::BTreeMap;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use berth_proto::store::{Expect, MemberChange, Object, Op, Put, Txn, TxnResult, object::Kind, op};
use berth_proto::v1::Config;

use crate::datadir::{self, Marker};
use crate::raft::storage::LogStorage;
use crate::raft::transport::memory::MemoryNetwork;
use crate::raft::{
    Membership, Msg, ProposeError, RaftHandle, RaftSettings, RaftStatus, Role, Stopped,
    spawn_member,
};

/// How long any awaited condition may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(5);

/// 10 ms ticks: heartbeats every 30 ms, elections after 150–250 ms of silence,
/// long enough that two busy CPUs do not trigger elections of their own.
pub fn fast_settings() -> RaftSettings {
    RaftSettings {
        tick: Duration::from_millis(10),
        election_ticks: 15,
        max_election_ticks: 25,
        heartbeat_ticks: 3,
        ..RaftSettings::default()
    }
}

/// Waits until `done` holds; fails the test after `WAIT`.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(POLL).await;
    }
}

pub fn address(id: u64) -> String {
    format!("memory:{id}")
}

/// A transaction writing config object `key`, whatever was there before (so a
/// retried write is harmless).
pub fn put(key: &str) -> Txn {
    let object = Object {
        kind: Some(Kind::Config(Config {
            id: key.to_string(),
            name: key.to_string(),
            ..Default::default()
        })),
    };
    Txn {
        ops: vec![Op {
            op: Some(op::Op::Put(Put {
                object: Some(object),
                expect: Expect::Any as i32,
                version: 0,
            })),
        }],
    }
}

pub struct TestCluster {
    pub net: MemoryNetwork,
    cluster_id: String,
    settings: RaftSettings,
    members: BTreeMap<u64, Member>,
}

struct Member {
    dir: tempfile::TempDir,
    running: Option<Running>,
}

struct Running {
    handle: RaftHandle,
    mailbox: SyncSender<Msg>,
    stopped: Stopped,
}

impl TestCluster {
    /// Members 1..=`size`, all voters from the start, all running.
    pub fn new(size: u64, settings: RaftSettings) -> Self {
        let mut cluster = TestCluster {
            net: MemoryNetwork::default(),
            cluster_id: datadir::new_cluster_id(),
            settings,
            members: BTreeMap::new(),
        };
        let ids: Vec<u64> = (1..=size).collect();
        let book = ids.iter().map(|id| (*id, address(*id))).collect();
        for id in &ids {
            cluster.create(*id, &book, &ids);
        }
        cluster
    }

    /// Makes member `id`'s data dir (voters empty: a joiner) and starts it.
    fn create(&mut self, id: u64, book: &BTreeMap<u64, String>, voters: &[u64]) {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = Marker::new(self.cluster_id.clone(), id);
        let db = datadir::create(dir.path(), &marker, book, voters).expect("data dir");
        self.members.insert(id, Member { dir, running: None });
        self.start(id, db);
    }

    fn start(&mut self, id: u64, db: sled::Db) {
        let member = self.members.get_mut(&id).expect("a member of the cluster");
        let marker = Marker::new(self.cluster_id.clone(), id);
        let (db, sm) = datadir::load(member.dir.path(), db, &marker).expect("load");
        let storage =
            LogStorage::open(&datadir::log_dir(member.dir.path()), sm.clone()).expect("log");
        let net = self.net.clone();
        let mut own_mailbox = None;
        let transport = |mailbox: SyncSender<Msg>, status| {
            own_mailbox = Some(mailbox.clone());
            net.connect(id, mailbox, status)
        };
        let (handle, stopped) =
            spawn_member(id, storage, sm, self.settings.clone(), transport, db).expect("start");
        member.running = Some(Running {
            handle,
            mailbox: own_mailbox.expect("the transport was built"),
            stopped,
        });
    }

    /// Stops member `id`'s loop and waits until it has let go of its data dir.
    pub async fn stop(&mut self, id: u64) {
        let member = self.members.get_mut(&id).expect("a member of the cluster");
        let running = member.running.take().expect("a running member");
        self.net.disconnect(id);
        running
            .mailbox
            .send(Msg::Stop)
            .expect("the loop is running");
        let outcome = tokio::time::timeout(WAIT, running.stopped)
            .await
            .expect("the loop stops");
        outcome
            .expect("the loop reports")
            .expect("the loop ended cleanly");
    }

    /// Starts a stopped member again from its data dir.
    pub async fn restart(&mut self, id: u64) {
        let dir = self.members[&id].dir.path().to_path_buf();
        // sled lets go of its lock once the last handle on the database is gone.
        let deadline = Instant::now() + WAIT;
        let db = loop {
            match datadir::open_db(&dir) {
                Ok(db) => break db,
                Err(err) => {
                    assert!(
                        Instant::now() < deadline,
                        "member {id} does not reopen: {err}"
                    );
                    tokio::time::sleep(POLL).await;
                }
            }
        };
        self.start(id, db);
    }

    /// Starts member `id` the way `--join` does (a data dir holding the address
    /// book and no voters) and has the leader add it as a learner.
    pub async fn join(&mut self, id: u64, leader: u64) -> Result<(), ProposeError> {
        let mut book = self.status(leader).addresses;
        book.insert(id, address(id));
        self.create(id, &book, &[]);
        let learner = MemberChange {
            id,
            address: address(id),
        };
        self.change(leader, Membership::AddLearner(learner)).await
    }

    pub fn running(&self) -> Vec<u64> {
        let running = self.members.iter().filter(|(_, m)| m.running.is_some());
        running.map(|(id, _)| *id).collect()
    }

    /// The running members other than `id`.
    pub fn except(&self, id: u64) -> Vec<u64> {
        self.running().into_iter().filter(|m| *m != id).collect()
    }

    /// Proposes a membership change through member `via` (the leader).
    pub async fn change(&self, via: u64, change: Membership) -> Result<(), ProposeError> {
        self.handle(via).change_membership(change).await
    }

    pub fn handle(&self, id: u64) -> &RaftHandle {
        let running = self.members.get(&id).and_then(|m| m.running.as_ref());
        &running.expect("a running member").handle
    }

    pub fn status(&self, id: u64) -> RaftStatus {
        self.handle(id).status().get()
    }

    /// Member `of`'s role as member `seen_by` has it.
    pub fn role(&self, seen_by: u64, of: u64) -> Option<Role> {
        let status = self.status(seen_by);
        status.members.iter().find(|m| m.id == of).map(|m| m.role)
    }

    /// Whether member `id` has applied the write of `key`.
    pub fn has(&self, id: u64, key: &str) -> bool {
        let found = self
            .handle(id)
            .state()
            .get(crate::store::Table::Config, key);
        found.expect("state machine read").is_some()
    }

    /// Waits until every one of `ids` follows the same leader, itself one of
    /// `ids` and leading; returns it.
    pub async fn leader_among(&self, ids: &[u64]) -> u64 {
        let mut leader = 0;
        wait_until(&format!("one leader among {ids:?}"), || {
            let first = self.status(ids[0]).leader_id;
            let agreed = ids.iter().all(|id| self.status(*id).leader_id == first);
            leader = first;
            agreed && ids.contains(&first) && self.status(first).is_leader()
        })
        .await;
        leader
    }

    /// The leader of all running members.
    pub async fn leader(&self) -> u64 {
        self.leader_among(&self.running()).await
    }

    /// Writes `key` through member `via` (a follower passes it to the leader),
    /// retrying while leadership moves; the write must apply.
    pub async fn write(&self, via: u64, key: &str) -> TxnResult {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.handle(via).propose(put(key)).await {
                Ok(result) => {
                    assert!(result.error.is_empty(), "write of {key}: {}", result.error);
                    return result;
                }
                Err(err) => {
                    assert!(
                        Instant::now() < deadline,
                        "write of {key} through member {via} not done within {WAIT:?}: {err}"
                    );
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }

    /// Waits until every one of `ids` has applied the write of `key`.
    pub async fn wait_applied(&self, ids: &[u64], key: &str) {
        let what = format!("{key} applied on {ids:?}");
        wait_until(&what, || ids.iter().all(|id| self.has(*id, key))).await;
    }
}

impl Drop for TestCluster {
    /// Stops every loop before the data dirs go away.
    fn drop(&mut self) {
        let mut running: Vec<Running> = self
            .members
            .values_mut()
            .filter_map(|m| m.running.take())
            .collect();
        for member in &running {
            let _ = member.mailbox.send(Msg::Stop);
        }
        let deadline = Instant::now() + WAIT;
        for member in &mut running {
            while member
                .stopped
                .try_recv()
                .is_err_and(|e| e == tokio::sync::oneshot::error::TryRecvError::Empty)
                && Instant::now() < deadline
            {
                std::thread::sleep(POLL);
            }
        }
    }
}
