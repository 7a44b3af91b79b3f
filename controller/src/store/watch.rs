//! The watch stream of committed changes: a bounded history (so a watcher can
//! start from a recent revision) plus live delivery.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use berth_proto::store::Object;
use berth_proto::store::object::Kind;
use berth_proto::v1::{WatchAction, WatchEvent, watch_event};
use tokio::sync::broadcast;

use super::StoreError;

/// Events kept for watchers that start from an earlier revision. Each holds a
/// decoded object (a task carries its whole service spec, ~2 KB in memory), so
/// the history is most of what a busy leader holds: 100,000 events were ~200
/// MB at 20,000 tasks, where every task passes through ~5 writes. Only the
/// Watch API reads it (from_revision); the leader's own loops watch from now
/// on. A watcher further behind gets `Compacted` and reads the tables again.
const HISTORY_EVENTS: usize = 10_000;
/// Live events buffered per watcher before it is cut off as too slow.
const LIVE_BUFFER: usize = 16_384;

/// One change of one object.
#[derive(Clone, Debug)]
pub struct Change {
    action: WatchAction,
    object: Object,
}

impl Change {
    pub fn put(object: Object, created: bool) -> Self {
        let action = if created {
            WatchAction::Created
        } else {
            WatchAction::Updated
        };
        Change { action, object }
    }

    pub fn removed(object: Object) -> Self {
        Change {
            action: WatchAction::Removed,
            object,
        }
    }
}

/// Past events (the backlog) and a receiver for the live ones.
pub type Subscription = (Vec<Arc<WatchEvent>>, broadcast::Receiver<Arc<WatchEvent>>);

#[derive(Clone)]
pub struct WatchHub {
    inner: Arc<Mutex<History>>,
    live: broadcast::Sender<Arc<WatchEvent>>,
}

struct History {
    events: VecDeque<Arc<WatchEvent>>,
    /// Every event after this revision is in `events`.
    complete_after: u64,
}

impl WatchHub {
    pub fn new(revision: u64) -> Self {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        WatchHub {
            inner: Arc::new(Mutex::new(History {
                events: VecDeque::new(),
                complete_after: revision,
            })),
            live,
        }
    }

    /// Called by the state machine after a txn at `revision` is written.
    pub fn publish(&self, revision: u64, changes: Vec<Change>) {
        let mut history = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // When this member applied it: events (#17) are told with a time.
        let time_ms = crate::clock::now_ms();
        for change in changes {
            let mut event = to_event(revision, change);
            event.time_ms = time_ms;
            let event = Arc::new(event);
            history.events.push_back(event.clone());
            // No receivers is fine: nobody watches.
            let _ = self.live.send(event);
        }
        while history.events.len() > HISTORY_EVENTS {
            if let Some(old) = history.events.pop_front() {
                history.complete_after = old.revision;
            }
        }
    }

    /// After a snapshot replaced the state, history before it is gone.
    pub fn reset(&self, revision: u64) {
        let mut history = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        history.events.clear();
        history.complete_after = revision;
    }

    /// Events after `from_revision` that already happened, and a receiver for
    /// the ones to come (no gap, no duplicate between the two). `from_revision`
    /// 0 means "from now on".
    pub fn subscribe(&self, from_revision: u64) -> Result<Subscription, StoreError> {
        let history = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let receiver = self.live.subscribe();
        if from_revision == 0 {
            return Ok((Vec::new(), receiver));
        }
        if from_revision < history.complete_after {
            return Err(StoreError::Compacted {
                requested: from_revision,
                oldest: history.complete_after,
            });
        }
        let backlog = history
            .events
            .iter()
            .filter(|e| e.revision > from_revision)
            .cloned()
            .collect();
        Ok((backlog, receiver))
    }
}

/// Everything the history holds, and a receiver for what comes next: the
/// revision after which the history is complete (older changes are gone), the
/// backlog and the live receiver (no gap, no duplicate between the two).
pub struct Held {
    pub complete_after: u64,
    pub backlog: Vec<Arc<WatchEvent>>,
    pub live: broadcast::Receiver<Arc<WatchEvent>>,
}

impl WatchHub {
    /// The whole history held and live events after it (the event stream's
    /// replay, #17: it cannot know a revision to start from, only a time).
    pub fn subscribe_held(&self) -> Held {
        let history = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Held {
            complete_after: history.complete_after,
            backlog: history.events.iter().cloned().collect(),
            live: self.live.subscribe(),
        }
    }
}

/// Whether a committed change can alter what tasks exist or where they run:
/// config and secret changes never do, so the leader loop and agent sessions
/// skip them.
pub fn touches_workloads(event: &WatchEvent) -> bool {
    !matches!(
        event.object,
        Some(watch_event::Object::Config(_)) | Some(watch_event::Object::Secret(_))
    )
}

fn to_event(revision: u64, change: Change) -> WatchEvent {
    let object = match change.object.kind {
        Some(Kind::Node(o)) => Some(watch_event::Object::Node(o)),
        Some(Kind::Service(o)) => Some(watch_event::Object::Service(o)),
        Some(Kind::Task(o)) => Some(watch_event::Object::Task(o)),
        Some(Kind::Network(o)) => Some(watch_event::Object::Network(o)),
        Some(Kind::Secret(mut o)) => {
            // Secret values never leave through a watch.
            o.data.clear();
            Some(watch_event::Object::Secret(o))
        }
        Some(Kind::Config(o)) => Some(watch_event::Object::Config(o)),
        // The CA key and join secrets never leave through a watch; volumes
        // have no watch event kind (cluster.proto's is not theirs to extend).
        Some(Kind::Pki(_)) | Some(Kind::Volume(_)) | Some(Kind::ClusterSettings(_)) | None => None,
    };
    WatchEvent {
        revision,
        action: change.action as i32,
        object,
        time_ms: 0,
    }
}
