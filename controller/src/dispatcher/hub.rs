//! Where the publisher leaves each revision's assignments and how it wakes the
//! sessions a change concerns: one channel per node, one for the shared part,
//! one for leadership.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use super::assignments::{Published, Wake};

pub struct Hub {
    published: RwLock<Published>,
    shared: watch::Sender<u64>,
    nodes: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Changes when this member starts or stops serving as the leader.
    leadership: watch::Sender<u64>,
    /// The shared sequence every live node acknowledged (drain.rs); it may
    /// lag behind (a stop then waits a little longer), never run ahead.
    applied_everywhere: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            published: RwLock::new(Published::default()),
            shared: watch::channel(0).0,
            nodes: Mutex::new(HashMap::new()),
            leadership: watch::channel(0).0,
            applied_everywhere: AtomicU64::new(0),
        }
    }
}

impl Hub {
    pub fn read(&self) -> RwLockReadGuard<'_, Published> {
        self.published.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Published> {
        self.published.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the sessions `wake` names.
    pub fn wake(&self, wake: &Wake) {
        for node in &wake.nodes {
            self.wake_node(node);
        }
        if wake.shared {
            self.shared.send_modify(|seq| *seq += 1);
        }
    }

    /// Wakes a node's session (its tasks changed, or its session did).
    pub fn wake_node(&self, node_id: &str) {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = nodes.get(node_id) {
            tx.send_modify(|seq| *seq += 1);
        }
    }

    pub fn applied_everywhere(&self) -> u64 {
        self.applied_everywhere.load(Ordering::Acquire)
    }

    /// Records a new watermark; true when it changed.
    pub fn set_applied_everywhere(&self, seq: u64) -> bool {
        self.applied_everywhere.swap(seq, Ordering::AcqRel) != seq
    }

    /// Wakes every session: leadership began or ended.
    pub fn leadership_changed(&self) {
        self.leadership.send_modify(|seq| *seq += 1);
    }

    /// What a session for `node_id` waits on.
    pub fn subscribe(&self, node_id: &str) -> Wakers {
        let node = self
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(node_id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Wakers {
            node,
            shared: self.shared.subscribe(),
            leadership: self.leadership.subscribe(),
        }
    }
}

pub struct Wakers {
    node: watch::Receiver<u64>,
    shared: watch::Receiver<u64>,
    leadership: watch::Receiver<u64>,
}

impl Wakers {
    /// Marks everything so far as seen.
    pub fn seen(&mut self) {
        self.node.borrow_and_update();
        self.shared.borrow_and_update();
        self.leadership.borrow_and_update();
    }

    /// Waits for the next wake-up; false when the hub is gone.
    pub async fn changed(&mut self) -> bool {
        tokio::select! {
            r = self.node.changed() => r.is_ok(),
            r = self.shared.changed() => r.is_ok(),
            r = self.leadership.changed() => r.is_ok(),
        }
    }
}
