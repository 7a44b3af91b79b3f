//! N simulated agents in this process, on one tokio runtime (a task each).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::task::JoinHandle;

use super::agent::{self, AgentStats, Shared};
use super::channels::Channels;

struct Member {
    stats: Arc<AgentStats>,
    task: JoinHandle<()>,
    stopped: bool,
}

pub struct Fleet {
    shared: Arc<Shared>,
    members: Vec<Member>,
}

impl Fleet {
    /// Starts `nodes` agents talking to `controllers` (agent i starts at
    /// controller i mod 3 and follows redirects to the leader): with
    /// `identities` (one per agent) each over its own mutual-TLS connection,
    /// else in plain text over `connections` shared connections per controller.
    pub fn start(
        controllers: Vec<String>,
        nodes: usize,
        connections: usize,
        identities: Vec<berth_pki::Security>,
    ) -> Fleet {
        let shared = Arc::new(Shared {
            controllers,
            channels: Channels::new(connections, identities),
            received: Arc::new(AtomicU64::new(0)),
            ends: Default::default(),
            services: Default::default(),
        });
        let members = (0..nodes)
            .map(|index| {
                let stats = Arc::new(AgentStats::default());
                let task = tokio::spawn(agent::run(index, shared.clone(), stats.clone()));
                Member {
                    stats,
                    task,
                    stopped: false,
                }
            })
            .collect();
        Fleet { shared, members }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn live(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| !m.stopped)
    }

    /// Live agents with an open session that got its first assignments.
    pub fn connected(&self) -> usize {
        self.live()
            .filter(|m| m.stats.connected.load(Ordering::Relaxed))
            .count()
    }

    /// Tasks the live agents run with their RUNNING report acknowledged.
    pub fn running(&self) -> usize {
        self.live()
            .map(|m| m.stats.running.load(Ordering::Relaxed))
            .sum()
    }

    /// Registrations of the live agents so far (one each when nothing was lost).
    pub fn registrations(&self) -> u64 {
        self.live()
            .map(|m| m.stats.registrations.load(Ordering::Relaxed))
            .sum()
    }

    /// Protobuf bytes of every message the agents received.
    pub fn bytes_received(&self) -> u64 {
        self.shared.received.load(Ordering::Relaxed)
    }

    /// Why sessions ended so far ("CALL KIND" and how often), most frequent first.
    pub fn session_ends(&self) -> Vec<(String, u64)> {
        let ends = self.shared.ends.lock().unwrap_or_else(|e| e.into_inner());
        let mut ends: Vec<(String, u64)> = ends.iter().map(|(k, v)| (k.clone(), *v)).collect();
        ends.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        ends
    }

    /// Agent `index`'s node id (empty before it registered).
    pub fn node_id(&self, index: usize) -> String {
        self.members
            .get(index)
            .and_then(|m| m.stats.node_id.lock().ok().map(|id| id.clone()))
            .unwrap_or_default()
    }

    /// Kills agent `index` as a crashed host: its heartbeats stop and its
    /// session stream is dropped (the task owning both is aborted).
    pub fn stop(&mut self, index: usize) {
        if let Some(m) = self.members.get_mut(index) {
            m.task.abort();
            m.stopped = true;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for m in &self.members {
            m.task.abort();
        }
    }
}
