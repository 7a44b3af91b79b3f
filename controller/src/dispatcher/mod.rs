//! The dispatcher: agent sessions on the leader. Agents register, keep a session
//! stream open on which the leader pushes the node's complete assignment set
//! whenever it changes, heartbeat, and report task status, which is written
//! through Raft. A node that misses heartbeats for the down period is marked
//! DOWN (the orchestrator then replaces its tasks); one that registers again is
//! READY.

mod assignments;
mod endpoints;
mod liveness;
mod service;
mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use liveness::run_liveness;
pub use service::DispatcherService;

use crate::raft::RaftHandle;

#[derive(Clone, Debug)]
pub struct DispatcherSettings {
    /// How often agents heartbeat.
    pub heartbeat_period: Duration,
    /// A node whose heartbeats stop for this long is declared down.
    pub down_after: Duration,
}

impl Default for DispatcherSettings {
    /// Heartbeats every second; down after 8 s without one — a blip of a few
    /// seconds never restarts anything (Swarm users' top complaint), and a dead
    /// node's tasks run elsewhere within 10 s.
    fn default() -> Self {
        DispatcherSettings {
            heartbeat_period: Duration::from_secs(1),
            down_after: Duration::from_secs(8),
        }
    }
}

/// A live agent session, known only to the leader that accepted it.
#[derive(Clone, Debug)]
struct Session {
    id: String,
    last_heartbeat: Instant,
}

#[derive(Clone)]
pub struct Dispatcher {
    raft: RaftHandle,
    settings: DispatcherSettings,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
}

impl Dispatcher {
    pub fn new(raft: RaftHandle, settings: DispatcherSettings) -> Self {
        Dispatcher {
            raft,
            settings,
            sessions: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when `session_id` is the node's current session on this leader.
    fn check_session(&self, node_id: &str, session_id: &str) -> bool {
        self.sessions()
            .get(node_id)
            .is_some_and(|s| s.id == session_id)
    }

    fn touch(&self, node_id: &str, session_id: &str) -> bool {
        match self.sessions().get_mut(node_id) {
            Some(s) if s.id == session_id => {
                s.last_heartbeat = Instant::now();
                true
            }
            _ => false,
        }
    }
}
