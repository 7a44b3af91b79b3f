//! The in-process transport of tests: members of one cluster in one process,
//! messages handed straight to the receiver's mailbox. A test cuts links (one
//! way or both) and heals them; nothing else is dropped, delayed or reordered.
//! Like the gRPC transport, it reports what it could not deliver as an
//! unreachable peer, reports snapshot outcomes, and has a leader tell a member
//! it no longer knows that it was removed.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard};

use raft::SnapshotStatus;
use raft::eraftpb::{Message, MessageType};

use super::Transport;
use crate::raft::mailbox::Msg;
use crate::raft::status::SharedStatus;

/// The wires between the members of a test cluster.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    net: Arc<Mutex<Net>>,
}

#[derive(Default)]
struct Net {
    /// Members taking deliveries, by id.
    members: HashMap<u64, Inbox>,
    /// Directed links (from, to) that drop everything.
    cut: HashSet<(u64, u64)>,
    /// Snapshots delivered, by receiver.
    snapshots: HashMap<u64, u64>,
}

struct Inbox {
    mailbox: SyncSender<Msg>,
    status: SharedStatus,
}

impl MemoryNetwork {
    fn net(&self) -> MutexGuard<'_, Net> {
        self.net.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connects member `id` (its mailbox and status) and returns its transport.
    /// A member connected again (restarted) replaces its old inbox.
    pub fn connect(
        &self,
        id: u64,
        mailbox: SyncSender<Msg>,
        status: SharedStatus,
    ) -> MemoryTransport {
        self.net().members.insert(
            id,
            Inbox {
                mailbox: mailbox.clone(),
                status,
            },
        );
        MemoryTransport {
            id,
            network: self.clone(),
            mailbox,
            peers: RefCell::new(BTreeSet::new()),
        }
    }

    /// A stopped member takes no more deliveries.
    pub fn disconnect(&self, id: u64) {
        self.net().members.remove(&id);
    }

    /// Drops everything `from` sends to `to` (one way).
    pub fn cut_one_way(&self, from: u64, to: u64) {
        self.net().cut.insert((from, to));
    }

    /// Cuts every link between `side` and `other`, both ways.
    pub fn partition(&self, side: &[u64], other: &[u64]) {
        let mut net = self.net();
        for a in side {
            for b in other {
                net.cut.insert((*a, *b));
                net.cut.insert((*b, *a));
            }
        }
    }

    /// Cuts member `id` off from every other one of `members`, both ways.
    pub fn isolate(&self, id: u64, members: &[u64]) {
        self.partition(&[id], members);
    }

    /// Restores every link to and from `id`.
    pub fn heal(&self, id: u64) {
        self.net().cut.retain(|(from, to)| *from != id && *to != id);
    }

    pub fn heal_all(&self) {
        self.net().cut.clear();
    }

    /// Snapshots delivered to member `id` so far.
    pub fn snapshots_delivered(&self, id: u64) -> u64 {
        self.net().snapshots.get(&id).copied().unwrap_or_default()
    }
}

/// One member's end of a `MemoryNetwork`.
pub struct MemoryTransport {
    id: u64,
    network: MemoryNetwork,
    /// This member's own mailbox, for the transport's reports.
    mailbox: SyncSender<Msg>,
    /// The address book's ids: messages go to these only, as over gRPC.
    peers: RefCell<BTreeSet<u64>>,
}

/// What became of one message.
enum Outcome {
    Delivered,
    Lost,
    /// The receiver leads and does not know this member.
    Removed,
}

impl MemoryTransport {
    fn deliver(&self, net: &mut Net, msg: Message) -> Outcome {
        let to = msg.to;
        if !self.peers.borrow().contains(&to) || net.cut.contains(&(self.id, to)) {
            return Outcome::Lost;
        }
        let Some(inbox) = net.members.get(&to) else {
            return Outcome::Lost;
        };
        if inbox.status.removed_sender(self.id) {
            return Outcome::Removed;
        }
        let snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
        if inbox.mailbox.try_send(Msg::Raft(Box::new(msg))).is_err() {
            return Outcome::Lost;
        }
        if snapshot {
            *net.snapshots.entry(to).or_default() += 1;
        }
        Outcome::Delivered
    }

    /// A report to this member's own loop; a full mailbox drops it like the
    /// gRPC transport does.
    fn report(&self, msg: Msg) {
        let _ = self.mailbox.try_send(msg);
    }
}

impl Transport for MemoryTransport {
    fn send(&self, messages: Vec<Message>) {
        let mut net = self.network.net();
        for msg in messages {
            let to = msg.to;
            let snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
            match self.deliver(&mut net, msg) {
                Outcome::Delivered if snapshot => {
                    self.report(Msg::Snapshot(to, SnapshotStatus::Finish))
                }
                Outcome::Delivered => {}
                outcome @ (Outcome::Lost | Outcome::Removed) => {
                    if let Outcome::Removed = outcome {
                        self.report(Msg::Removed);
                    }
                    if snapshot {
                        self.report(Msg::Snapshot(to, SnapshotStatus::Failure));
                    }
                    self.report(Msg::Unreachable(to));
                }
            }
        }
    }

    fn set_peers(&self, peers: &BTreeMap<u64, String>) {
        *self.peers.borrow_mut() = peers.keys().copied().filter(|id| *id != self.id).collect();
    }
}
