//! The dispatcher: agent sessions on the leader. Agents register, keep a session
//! stream open on which the leader pushes the node's assignment set (complete
//! first, then only what changed), heartbeat, and report task status, which is
//! written through Raft. A node that shows no sign of life for the down period
//! is marked DOWN (the orchestrator then replaces its tasks); one that
//! registers again is READY.
//!
//! The core is plain functions of (state, input, now): [`registration`],
//! [`status`], [`liveness`], [`assignments`] and [`messages`]. Around them:
//! one task ([`publisher`]) follows the store and computes assignments once
//! per store revision for all sessions, waking only those a change concerns
//! ([`hub`]); [`Dispatcher`] is the handle the gRPC shell (`api::dispatcher`)
//! calls. Time comes from the clock seam.

pub mod assignments;
pub mod conditions;
pub mod drain;
pub mod endpoints;
pub mod hub;
pub mod liveness;
pub mod messages;
pub mod payloads;
pub mod publisher;
pub mod registration;
pub mod sessions;
pub mod status;

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_proto::v1::{
    HeldSet, NotLeader, RegisterRequest, RegisterResponse, SessionMessage, TaskStatusUpdate,
    session_message::Message,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::Stream;
use tracing::info;

use crate::clock::SharedClock;
use crate::ids::new_id;
use crate::keyring::Keyring;
use crate::raft::RaftHandle;
use crate::store::view::read_task;
use crate::store::{CommitError, StoreError, commit};
use hub::Hub;
use sessions::Sessions;

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

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("{}", match leader {
        Some(addr) => format!("this controller is not the leader; the leader is at {addr}"),
        None => "no leader right now; retry".to_string(),
    })]
    NotLeader { leader: Option<String> },
    #[error("unknown session (the leader changed, or the node was declared down); register again")]
    UnknownSession,
    #[error("a node needs a name")]
    NoName,
    #[error("node name {name} is taken by node {holder}; give this agent another --name")]
    NameTaken { name: String, holder: String },
    #[error("task status kept changing concurrently; report again")]
    Busy,
    #[error("writing through raft: {0}")]
    Commit(#[from] CommitError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Least time between two messages of one session.
const SESSION_PACE: Duration = Duration::from_millis(50);

/// Messages of one session stream.
pub type SessionStream = Pin<Box<dyn Stream<Item = Result<SessionMessage, DispatchError>> + Send>>;

#[derive(Clone)]
pub struct Dispatcher {
    raft: RaftHandle,
    settings: DispatcherSettings,
    clock: SharedClock,
    sessions: Arc<Mutex<Sessions>>,
    hub: Arc<Hub>,
    /// Where session loops run (see [`Dispatcher::with_runtime`]).
    runtime: tokio::runtime::Handle,
    /// Opens the secrets a node's tasks use, as they are sent.
    keys: Keyring,
    /// The trust bundle's digest for heartbeat answers.
    ca_digest: crate::ca::record::DigestCache,
    /// Bounds the session messages built and not yet taken ([`BUILD_PERMITS`]).
    build_permits: Arc<Semaphore>,
}

impl Dispatcher {
    /// A dispatcher whose sessions run on the current tokio runtime.
    pub fn new(
        raft: RaftHandle,
        settings: DispatcherSettings,
        clock: SharedClock,
        keys: Keyring,
    ) -> Self {
        Dispatcher {
            keys,
            raft,
            settings,
            clock,
            sessions: Arc::new(Mutex::new(Sessions::default())),
            hub: Arc::new(Hub::default()),
            runtime: tokio::runtime::Handle::current(),
            ca_digest: Default::default(),
            build_permits: Arc::new(Semaphore::new(BUILD_PERMITS)),
        }
    }

    /// Session loops (and what they spawn) run on `runtime`: the controller
    /// gives them a runtime of their own, so a large cluster's fan-out to its
    /// agents cannot hold back Raft's peer traffic and the API on the main one.
    pub fn with_runtime(self, runtime: tokio::runtime::Handle) -> Self {
        Dispatcher { runtime, ..self }
    }

    /// Where the dispatcher's loops belong.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// The loop that publishes assignments and watches liveness; run it once.
    pub async fn run(self) {
        publisher::run(self).await
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The period agents are told to heartbeat at: the configured one, spread
    /// out in a large cluster (`liveness::heartbeat_period`).
    pub fn heartbeat_period(&self) -> Duration {
        let nodes = self.sessions().len();
        liveness::heartbeat_period(
            self.settings.heartbeat_period,
            self.settings.down_after,
            nodes,
        )
    }

    /// Agents talk to the leader only; a follower tells them where it is.
    pub fn require_leader(&self) -> Result<(), DispatchError> {
        // Every heartbeat asks: read the status in place, copy nothing.
        self.raft.status().with(|status| {
            if status.is_leader() {
                Ok(())
            } else {
                Err(DispatchError::NotLeader {
                    leader: status.leader_address().map(str::to_string),
                })
            }
        })
    }

    pub async fn register(&self, req: RegisterRequest) -> Result<RegisterResponse, DispatchError> {
        self.register_certified(req, None).await
    }

    /// Registers an agent that showed `cert` (its id is the certificate's).
    pub async fn register_certified(
        &self,
        req: RegisterRequest,
        cert: Option<registration::NodeCertificate>,
    ) -> Result<RegisterResponse, DispatchError> {
        self.require_leader()?;
        let existing = registration::find_node(self.raft.state(), &req)?;
        let registration = registration::register(
            existing,
            &req,
            cert.as_ref(),
            self.clock.now_ms(),
            &mut new_id,
        )?;
        commit(&self.raft, vec![registration.op]).await?;
        let node_id = registration.node_id;
        let session_id = new_id();
        self.sessions()
            .open(&node_id, &session_id, self.clock.instant());
        // An older stream of this node ends.
        self.hub.wake_node(&node_id);
        info!(node = %node_id, name = %req.name, address = %req.address, "agent registered");
        Ok(RegisterResponse {
            node_id,
            session_id,
            heartbeat_period_ms: self.heartbeat_period().as_millis() as u64,
        })
    }

    /// SHA-256 of the cluster's trust bundle ("" before the CA record exists):
    /// agents renew at once when theirs differs.
    pub fn ca_digest(&self) -> String {
        self.ca_digest.digest(self.raft.state())
    }

    pub fn heartbeat(&self, node_id: &str, session_id: &str) -> Result<(), DispatchError> {
        self.require_leader()?;
        if self
            .sessions()
            .touch(node_id, session_id, self.clock.instant())
        {
            Ok(())
        } else {
            Err(DispatchError::UnknownSession)
        }
    }

    /// Records the data-plane conflict a node's heartbeat reported, when it
    /// changed (a node with one takes no new tasks: see the scheduler).
    pub async fn report_conflict(
        &self,
        node_id: &str,
        reported: &str,
    ) -> Result<(), DispatchError> {
        // Every node heartbeats every period: compare with the published copy
        // (memory) first, and read the store only when it differs.
        if self
            .hub
            .read()
            .nodes
            .get(node_id)
            .is_some_and(|node| node.dataplane_conflict == reported)
        {
            return Ok(());
        }
        for _ in 0..3 {
            let Some(node) = crate::store::view::read_node(self.raft.state(), node_id)? else {
                return Ok(());
            };
            let Some(op) = conditions::conflict_op(&node, reported) else {
                return Ok(());
            };
            match commit(&self.raft, vec![op]).await {
                Ok(_) => {
                    info!(node = %node_id, conflict = %reported, "node data plane condition changed");
                    return Ok(());
                }
                Err(err) if err.is_conflict() => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(DispatchError::Busy)
    }

    pub async fn update_task_status(
        &self,
        node_id: &str,
        session_id: &str,
        updates: Vec<TaskStatusUpdate>,
    ) -> Result<(), DispatchError> {
        self.heartbeat(node_id, session_id)?;
        // A concurrent write to one of the tasks refuses the txn: read again.
        for _ in 0..3 {
            let sm = self.raft.state();
            let ops = status::status_ops(
                |id| read_task(sm, id).ok().flatten(),
                node_id,
                &updates,
                self.clock.now_ms(),
            );
            if ops.is_empty() {
                return Ok(());
            }
            match commit(&self.raft, ops).await {
                Ok(_) => return Ok(()),
                Err(err) if err.is_conflict() => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(DispatchError::Busy)
    }

    /// The agent put the shared part up to `seq` into its kernel. When a node
    /// has a task to stop, the drain watermark is computed again, and a new one
    /// wakes those nodes (their agents wait for it before the stop signal).
    pub fn ack_shared(
        &self,
        node_id: &str,
        session_id: &str,
        seq: u64,
    ) -> Result<(), DispatchError> {
        self.require_leader()?;
        if !self
            .sessions()
            .ack(node_id, session_id, seq, self.clock.instant())
        {
            return Err(DispatchError::UnknownSession);
        }
        self.refresh_drain();
        Ok(())
    }

    /// The agent wants the serving tasks of `services`, and of the services
    /// of `names` (a container asked its DNS for one of their names): its
    /// session sends them with its next message, then their changes
    /// (dispatcher.md, "Endpoints by interest").
    pub fn follow(
        &self,
        node_id: &str,
        session_id: &str,
        services: Vec<String>,
        names: Vec<String>,
    ) -> Result<(), DispatchError> {
        self.require_leader()?;
        // Kept whether or not the service has an endpoint yet: a new leader
        // has none before its first publish, and the agent asks only once a
        // session. Each message follows those that have one (`messages::wanted`).
        // As `Published::named` looks them up: lower-case, no trailing dot.
        let names = names.into_iter().map(|name| {
            let name = name.strip_suffix('.').unwrap_or(&name);
            name.to_ascii_lowercase()
        });
        if !self
            .sessions()
            .ask(node_id, session_id, services, names, self.clock.instant())
        {
            return Err(DispatchError::UnknownSession);
        }
        self.hub.wake_node(node_id);
        Ok(())
    }

    /// Computes the drain watermark (only while some node has a task to stop:
    /// O(nodes) per acknowledgement) and wakes the stopping nodes on a change.
    pub(crate) fn refresh_drain(&self) {
        let (watermark, stopping) = {
            let published = self.hub.read();
            if published.stopping.is_empty() {
                return;
            }
            let sessions = self.sessions();
            let watermark = drain::applied_everywhere(
                published.nodes.values(),
                |id| sessions.acked(id),
                published.shared_seq,
            );
            (watermark, published.stopping.clone())
        };
        if self.hub.set_applied_everywhere(watermark) {
            for node in &stopping {
                self.hub.wake_node(node);
            }
        }
    }

    /// The node's session stream: the complete set, then changes, until the
    /// session is replaced, expires or leadership ends.
    /// `held`: what the agent holds from an earlier session; the session then
    /// starts with a delta from it instead of the complete set.
    /// `on_demand`: what the agent asks for (`Follow`) and gets; an agent
    /// that asks for nothing (an older one) follows every endpoint.
    pub fn open_session(
        &self,
        node_id: String,
        session_id: String,
        held: Option<HeldSet>,
        on_demand: OnDemand,
    ) -> Result<SessionStream, DispatchError> {
        self.require_leader()?;
        if !self.sessions().is_current(&node_id, &session_id) {
            return Err(DispatchError::UnknownSession);
        }
        let (tx, rx) = mpsc::channel(1);
        let asks = Arc::new(Notify::new());
        let dispatcher = self.clone();
        let pull = Pull {
            tx,
            asks: Arc::clone(&asks),
        };
        self.runtime.spawn(async move {
            dispatcher
                .session_loop(node_id, session_id, held, on_demand, pull)
                .await;
        });
        Ok(Box::pin(PulledStream {
            rx,
            asks,
            asked: false,
        }))
    }

    async fn session_loop(
        &self,
        node_id: String,
        session_id: String,
        mut held: Option<HeldSet>,
        on_demand: OnDemand,
        pull: Pull,
    ) {
        let mut wakers = self.hub.subscribe(&node_id);
        if let Some(held) = &held {
            // What the agent followed before, it follows in this session too.
            let followed = held.followed.iter().cloned();
            let now = self.clock.instant();
            self.sessions()
                .ask(&node_id, &session_id, followed, Vec::new(), now);
        }
        let mut sent: Option<messages::Sent> = None;
        // Something may have changed that this session has not looked at yet
        // (the first message, a wake-up, the rest of a shared part it sends in
        // pieces).
        let mut changed = true;
        // The stream asked for a message and has not been given one yet.
        let mut asked = false;
        loop {
            if !changed {
                tokio::select! {
                    alive = wakers.changed() => if !alive { return },
                    _ = pull.tx.closed() => return,
                }
            }
            // The stream asks first, then the message is built: hyper polls
            // the stream only when the agent's HTTP/2 stream can take more, so
            // a message is built just before it is encoded, never ahead of a
            // slow agent; what changes meanwhile goes out merged in it.
            // Building ahead held a whole message per slow session (~1.6 MB
            // while 1,000 services were new): ~1.5 GB on the leader.
            if !asked {
                tokio::select! {
                    _ = pull.asks.notified() => asked = true,
                    _ = pull.tx.closed() => return,
                }
            }
            // At most BUILD_PERMITS messages exist built and not yet taken by
            // their streams, leader-wide.
            let permit = tokio::select! {
                permit = Arc::clone(&self.build_permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                _ = pull.tx.closed() => return,
            };
            wakers.seen();
            let status = self.raft.status().get();
            if !status.is_leader() {
                let message = Message::NotLeader(NotLeader {
                    leader_address: status.leader_address().unwrap_or_default().to_string(),
                });
                pull.send(message, crate::metrics::SESSION_NOT_LEADER, permit, self);
                // A queued message still reaches the stream after the sender goes.
                return;
            }
            if !self.sessions().is_current(&node_id, &session_id) {
                let _ = pull.tx.try_send(Box::new(Pulled {
                    message: Err(DispatchError::UnknownSession),
                    _permit: permit,
                }));
                return;
            }
            // An older agent follows every endpoint: its asked set is unused.
            let asked_for =
                (on_demand != OnDemand::Nothing).then(|| self.sessions().asked(&node_id));
            let (message, behind) = {
                let published = self.hub.read();
                let following = match asked_for {
                    Some((ids, names)) => messages::Interest {
                        ids,
                        names,
                        heads_on_demand: on_demand == OnDemand::Endpoints,
                    },
                    None => messages::Interest {
                        ids: Arc::new(published.endpoints.keys().cloned().collect()),
                        ..Default::default()
                    },
                };
                let source = payloads::StorePayloads {
                    sm: self.raft.state(),
                    keys: &self.keys,
                };
                let watermark = self.hub.applied_everywhere();
                let message = if !published.ready {
                    None
                } else if let Some(sent) = sent.as_mut() {
                    messages::next(&published, &node_id, &following, watermark, sent, &source).map(
                        |m| {
                            let kind = match m {
                                Message::Assignments(_) => crate::metrics::SESSION_COMPLETE,
                                _ => crate::metrics::SESSION_DELTA,
                            };
                            (m, kind)
                        },
                    )
                } else {
                    let (set, fresh) =
                        messages::complete(&published, &node_id, &following, watermark, &source);
                    sent = Some(fresh);
                    Some(match held.take() {
                        Some(held) => resume(&held, set),
                        None => (Message::Assignments(set), crate::metrics::SESSION_COMPLETE),
                    })
                };
                // Read under the same lock as the message was built.
                let behind = sent.as_ref().is_some_and(|sent| sent.behind(&published));
                (message, behind)
            };
            if let Some(sent) = &sent {
                // Changes that concerned nothing this node holds count as
                // applied once it acknowledged its last news: the drain
                // watermark does not wait for its agent.
                let (owed, passed) = sent.progress();
                self.sessions()
                    .progress(&node_id, &session_id, owed, passed);
                if message.is_none() {
                    self.refresh_drain();
                }
            }
            // The rest of the shared changes follow as soon as the stream
            // takes this piece.
            changed = behind;
            let Some((message, kind)) = message else {
                // Nothing to send: the stream's ask stands.
                continue;
            };
            asked = false;
            if !pull.send(message, kind, permit, self) {
                return;
            }
            if !behind {
                // At most one message per pace: changes that arrive meanwhile
                // go out together (a large cluster's churn is many small
                // changes to every session).
                tokio::select! {
                    _ = tokio::time::sleep(SESSION_PACE) => {}
                    _ = pull.tx.closed() => return,
                }
            }
        }
    }
}

/// What an agent gets only when it asks (dispatcher.md, "Endpoints by
/// interest").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDemand {
    /// Nothing: every endpoint with its serving tasks (an older agent).
    Nothing,
    /// Serving tasks: every endpoint's head, the tasks of those it follows
    /// (`SessionRequest.follows_on_demand`).
    Tasks,
    /// Endpoints: only those it follows, by id or by name, whole, and those
    /// every node follows (`SessionRequest.heads_on_demand`).
    Endpoints,
}

impl OnDemand {
    pub fn of(follows_on_demand: bool, heads_on_demand: bool) -> OnDemand {
        match (follows_on_demand, heads_on_demand) {
            (_, true) => OnDemand::Endpoints,
            (true, false) => OnDemand::Tasks,
            (false, false) => OnDemand::Nothing,
        }
    }
}

/// The first message for an agent holding `held` (from an earlier session),
/// with its kind: the delta that brings it to the complete `set`, or the set
/// itself should its shared part (encoded a moment ago) not decode.
fn resume(held: &HeldSet, set: berth_proto::v1::Assignments) -> (Message, &'static str) {
    let mut full = set.clone();
    match berth_proto::assignments::unpack(&mut full) {
        Ok(()) => (
            Message::Delta(berth_proto::assignments::delta_from(held, &full)),
            crate::metrics::SESSION_RESUME,
        ),
        Err(err) => {
            tracing::warn!(%err, "the shared part does not decode: the complete set goes instead");
            (Message::Assignments(set), crate::metrics::SESSION_COMPLETE)
        }
    }
}

/// Messages built and not yet taken by their streams, leader-wide. With the
/// build only on the stream's ask this is what a burst can have in memory at
/// once besides what the streams hold encoded (each message is at most ~70 KB
/// of shared part, a complete set ~2 MB at 1,000 nodes).
pub const BUILD_PERMITS: usize = 32;

/// A built message on its way to its stream, with the build permit it holds
/// until the stream takes it.
struct Pulled {
    message: Result<SessionMessage, DispatchError>,
    _permit: OwnedSemaphorePermit,
}

/// The session loop's end of its stream. Boxed in the channel: a channel
/// allocates a block of 32 of its items at once, and a message inline made
/// that ~14 KB for every session (14 MB at 1,000 nodes).
struct Pull {
    tx: mpsc::Sender<Box<Pulled>>,
    /// Notified when the stream wants its next message.
    asks: Arc<Notify>,
}

impl Pull {
    /// Hands `message` to the stream (it asked: the channel of one is empty)
    /// and counts it; false when the stream is gone.
    fn send(
        &self,
        message: Message,
        kind: &str,
        permit: OwnedSemaphorePermit,
        dispatcher: &Dispatcher,
    ) -> bool {
        let message = SessionMessage {
            message: Some(message),
        };
        dispatcher
            .raft
            .metrics()
            .session_message(kind, prost::Message::encoded_len(&message));
        self.tx
            .try_send(Box::new(Pulled {
                message: Ok(message),
                _permit: permit,
            }))
            .is_ok()
    }
}

/// The stream the gRPC shell serves: asks its session loop for a message each
/// time it is polled with none waiting, so the loop builds one only when the
/// HTTP/2 stream can take it.
struct PulledStream {
    rx: mpsc::Receiver<Box<Pulled>>,
    asks: Arc<Notify>,
    /// Asked, and not given a message since.
    asked: bool,
}

impl Stream for PulledStream {
    type Item = Result<SessionMessage, DispatchError>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            std::task::Poll::Ready(Some(pulled)) => {
                self.asked = false;
                // The build permit goes back here: the message is encoded
                // by the caller right away.
                std::task::Poll::Ready(Some(pulled.message))
            }
            std::task::Poll::Ready(None) => std::task::Poll::Ready(None),
            std::task::Poll::Pending => {
                if !self.asked {
                    self.asked = true;
                    self.asks.notify_one();
                }
                std::task::Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests;
