//! Timing and size settings of a Raft member.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct RaftSettings {
    pub tick: Duration,
    /// Election timeout in ticks; the real timeout is random in
    /// [election_ticks, max_election_ticks).
    pub election_ticks: usize,
    pub max_election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Compact the log once it holds this many applied entries.
    pub snapshot_entries: u64,
    /// Entries kept after compaction for slightly slow followers.
    pub compact_margin: u64,
    /// Where the member and its handle count (leader changes, snapshots,
    /// proposal latency); served only when registered (`--metrics-listen`).
    pub metrics: crate::metrics::ControllerMetrics,
}

impl Default for RaftSettings {
    /// 50 ms ticks, heartbeats every 100 ms, elections after 800–900 ms of
    /// silence: a new leader within 1 s of losing one, while a 500 ms blip (plus
    /// the ~100 ms TCP needs to retransmit after it) stays below every timeout,
    /// the leader's quorum check included.
    fn default() -> Self {
        RaftSettings {
            tick: Duration::from_millis(50),
            election_ticks: 16,
            max_election_ticks: 19,
            heartbeat_ticks: 2,
            snapshot_entries: 10_000,
            compact_margin: 500,
            metrics: crate::metrics::ControllerMetrics::default(),
        }
    }
}
