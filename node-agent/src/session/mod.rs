//! The agent's session with the cluster: register with the leader (found through
//! any controller and followed through failover), heartbeat, receive the node's
//! assignments and hand them to the task runner, report task status.
//!
//! Losing the controllers never stops containers: the runner keeps what it runs
//! until a new assignment set says otherwise.

#[cfg(test)]
mod fake_dispatcher;
#[cfg(test)]
mod fake_runner;
pub mod identity;
mod inbox;
mod link;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::{Assignments, TaskStatusUpdate};
use tokio::sync::mpsc;
use tracing::{info, warn};

pub use identity::{NodeIdentity, detect_resources};

/// The HTTP/2 receive window the agent gives each stream on its connection to
/// the leader (HTTP/2's own default; hyper's is 2 MiB). It is what bounds the
/// leader's memory per session stream: the leader's HTTP/2 layer takes more of
/// the session's messages only while the stream has window left (up to hyper's
/// 400 KB send buffer, which tonic does not let the server lower), so with
/// 2 MiB every slow agent pinned ~400 KB of encoded assignments on the leader
/// (~250 MB at 1,000 nodes); with 64 KiB it is one message plus 64 KiB. A
/// complete set (~2 MB at 1,000 nodes) then takes ~32 window updates, which
/// cost a round trip each only while the agent keeps up.
pub const LEADER_STREAM_WINDOW: u32 = 64 * 1024;

/// How long the connection to the leader may be silent before the agent
/// pings it (HTTP/2 PING, answered within 4 s or the connection is dropped).
/// Heartbeats already prove the connection every period (the session ends
/// when one is not answered within three periods), so the ping is only for a
/// connection that goes quiet: hyper pings after this much time without a
/// frame received, and at 2 s every agent pinged once per heartbeat period
/// (the answer to the last heartbeat is its last frame): ~375 pings a second
/// for an idle 1,000-node leader to answer over TLS, beside the heartbeats.
pub const LEADER_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(10);

/// What the session drives: in production the network service and the
/// supervisor (see `daemon.rs`); a fake in the session's tests.
pub trait TaskRunner: Send + Sync + 'static {
    /// The node's complete assignment set: its tasks, the networks and nodes
    /// of the overlay, the service endpoints (idempotent).
    fn reconcile(&self, assignments: Assignments);
    /// The current status of every task it knows, to resend after a reconnect.
    fn statuses(&self) -> Vec<TaskStatusUpdate>;
    /// The `shared_seq` of the newest set whose endpoints are in the kernel
    /// (DNS answers, load balancer): the session acknowledges each new one
    /// (`AckShared`), so the leader knows when a stopping task has left every
    /// node. `None`: nothing to acknowledge.
    fn shared_applied(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// The services whose serving tasks the node's DNS asked for (a container
    /// looked up one of their names); the session tells the leader
    /// (`Follow`). `None`: never any.
    fn follow_wanted(
        &self,
    ) -> Option<tokio::sync::watch::Receiver<std::collections::BTreeSet<String>>> {
        None
    }
    /// The names the node's DNS was asked for and does not hold (a leader
    /// that sends endpoints on demand); the session tells the leader
    /// (`Follow`). `None`: never any.
    fn names_wanted(
        &self,
    ) -> Option<tokio::sync::watch::Receiver<std::collections::BTreeSet<String>>> {
        None
    }
    /// What keeps the node's data plane from working (empty: nothing); sent
    /// with every heartbeat, shown as a node condition.
    fn dataplane_conflict(&self) -> String {
        String::new()
    }
}

#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub data_dir: PathBuf,
    pub controllers: Vec<String>,
    pub name: String,
    /// Address other nodes reach this one at; empty = the address the host uses
    /// to reach the controllers.
    pub advertise: String,
    pub labels: BTreeMap<String, String>,
    /// Port of this agent's API (task logs); controllers reach it at the
    /// advertised address.
    pub api_port: u16,
    /// Mutual TLS with the agent's certificate, or plain text (opt-out).
    pub security: berth_pki::Security,
    /// Wakes the certificate renewal before its time (the CA changed).
    pub renew_now: std::sync::Arc<tokio::sync::Notify>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no controller given: pass --controller ADDR[,ADDR...]")]
    NoControllers,
    #[error("cannot reach controller {address}: {why}")]
    Unreachable { address: String, why: String },
    #[error("controller {address} refused: {why}")]
    Refused { address: String, why: String },
    #[error("not the leader; try {hint}")]
    Redirect { hint: String },
    #[error("agent identity file {path}: {why}")]
    Identity { path: PathBuf, why: String },
}

/// Runs the session forever, reconnecting with backoff.
pub async fn run(
    config: SessionConfig,
    runner: Arc<dyn TaskRunner>,
    mut updates: mpsc::UnboundedReceiver<TaskStatusUpdate>,
) -> Result<(), SessionError> {
    if config.controllers.is_empty() {
        return Err(SessionError::NoControllers);
    }
    let mut identity = NodeIdentity::load(&config.data_dir)?;
    let mut next = 0usize;
    let mut hint: Option<String> = None;
    let mut backoff = Duration::from_millis(100);
    // The set as the controllers last described it, kept across sessions: a
    // new session (another leader, a blip) starts from it with a delta.
    let mut held: Option<berth_proto::v1::Assignments> = None;
    loop {
        let address = hint
            .take()
            .unwrap_or_else(|| config.controllers[next % config.controllers.len()].clone());
        next += 1;
        match link::session(
            &config,
            &mut identity,
            &address,
            runner.as_ref(),
            &mut updates,
            &mut held,
        )
        .await
        {
            Ok(()) => {
                backoff = Duration::from_millis(100);
            }
            Err(SessionError::Redirect { hint: leader }) => {
                info!(%leader, "following the leader");
                hint = Some(leader);
                backoff = Duration::from_millis(100);
                continue;
            }
            Err(err) => {
                warn!(%err, "session ended; reconnecting");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
