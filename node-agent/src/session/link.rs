//! One session with one controller: register, stream assignments, heartbeat,
//! report status. Returns when anything breaks; the caller reconnects.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use berth_proto::v1::dispatcher_client::DispatcherClient;
use berth_proto::v1::{
    AckSharedRequest, FollowRequest, HeartbeatRequest, HeartbeatResponse, RegisterRequest,
    SessionRequest, TaskStatusUpdate, UpdateTaskStatusRequest,
};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info};

use super::identity::{NodeIdentity, detect_resources};
use super::inbox::next_set;
use super::{SessionConfig, SessionError, TaskRunner};
use crate::dataplane::dns::MAX_ASKED;

fn refused(address: &str, status: tonic::Status) -> SessionError {
    if let Some(hint) = status
        .metadata()
        .get(berth_proto::LEADER_METADATA)
        .and_then(|v| v.to_str().ok())
    {
        return SessionError::Redirect {
            hint: hint.to_string(),
        };
    }
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
            SessionError::Unreachable {
                address: address.to_string(),
                why: berth_pki::explain::tls_failure(&status, "the controller")
                    .unwrap_or_else(|| status.message().to_string()),
            }
        }
        _ => SessionError::Refused {
            address: address.to_string(),
            why: berth_pki::explain::tls_failure(&status, "the controller")
                .unwrap_or_else(|| status.message().to_string()),
        },
    }
}

async fn connect(
    address: &str,
    security: &berth_pki::Security,
) -> Result<DispatcherClient<Channel>, SessionError> {
    let unreachable = |why: String| SessionError::Unreachable {
        address: address.to_string(),
        why,
    };
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| unreachable(e.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        // What the leader may hold in flight for this agent's session.
        .initial_stream_window_size(Some(super::LEADER_STREAM_WINDOW))
        .http2_keep_alive_interval(super::LEADER_KEEPALIVE)
        .keep_alive_timeout(Duration::from_secs(4));
    let channel = berth_pki::tls::connect(endpoint, security, berth_pki::Role::Controller)
        .await
        .map_err(|e| unreachable(berth_pki::explain::error_chain(&e)))?;
    Ok(DispatcherClient::new(channel).max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES))
}

/// The local address this host uses to reach `controller` (no packet is sent).
fn local_address_towards(controller: &str) -> Option<String> {
    let target: SocketAddr = controller.parse().ok()?;
    let socket = UdpSocket::bind(if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .ok()?;
    socket.connect(target).ok()?;
    Some(socket.local_addr().ok()?.ip().to_string())
}

pub async fn session(
    config: &SessionConfig,
    identity: &mut NodeIdentity,
    address: &str,
    runner: &dyn TaskRunner,
    updates: &mut mpsc::UnboundedReceiver<TaskStatusUpdate>,
    held: &mut Option<berth_proto::v1::Assignments>,
) -> Result<(), SessionError> {
    let mut client = connect(address, &config.security).await?;
    let advertise = if config.advertise.is_empty() {
        local_address_towards(address).unwrap_or_default()
    } else {
        config.advertise.clone()
    };
    let registered = client
        .register(RegisterRequest {
            node_id: identity.node_id.clone(),
            name: config.name.clone(),
            api_address: format!("{advertise}:{}", config.api_port),
            address: advertise,
            labels: config.labels.clone(),
            resources: Some(detect_resources()),
        })
        .await
        .map_err(|s| refused(address, s))?
        .into_inner();
    identity.save(&registered.node_id)?;
    let node_id = registered.node_id.clone();
    let session_id = registered.session_id.clone();
    info!(node = %node_id, controller = %address, "registered");
    // The services the node's DNS asked for: all of them to this session
    // (the leader keeps what it already had), then each new one.
    // What it asked for before a restart too (kept in the data dir).
    // Told before the stream opens: the session's first message (a delta
    // from the held set, after a leader change) then keeps their endpoints
    // instead of taking them away until they are asked for again.
    // The names too (a leader that sends endpoints on demand answers them).
    let to = Leader {
        node_id: &node_id,
        session_id: &session_id,
        address,
    };
    let mut wanted = runner.follow_wanted();
    let mut services = Asks::load(&config.data_dir, FOLLOWED_FILE, false);
    let mut names = runner.names_wanted();
    let mut names_asked = Asks::load(&config.data_dir, FOLLOWED_NAMES_FILE, true);
    for (rx, asks) in [(&mut wanted, &mut services), (&mut names, &mut names_asked)] {
        if let Some(rx) = rx.as_mut() {
            let now = rx.borrow_and_update().clone();
            asks.tell(&mut client, &to, &now).await?;
        }
    }

    let mut stream = client
        .session(SessionRequest {
            node_id: node_id.clone(),
            session_id: session_id.clone(),
            // A set for another node id (the node was removed and registered
            // anew) is not worth a delta.
            held: held
                .as_ref()
                .filter(|set| set.node_id == node_id)
                .map(berth_proto::assignments::held_set),
            follows_on_demand: true,
            heads_on_demand: true,
        })
        .await
        .map_err(|s| refused(address, s))?
        .into_inner();

    // Whatever was reported to an earlier leader may be lost: report it all.
    let current = runner.statuses();
    if !current.is_empty() {
        report(&mut client, &node_id, &session_id, current, address).await?;
    }

    // What the kernel holds now, then each new application. A sequence from an
    // earlier leader is never above this one's (it numbers from its store
    // revision up), so it cannot end a drain early.
    let mut applied = runner.shared_applied();
    let held_now = applied.as_mut().map_or(0, |rx| *rx.borrow_and_update());
    if held_now > 0 {
        ack(&mut client, &node_id, &session_id, held_now, address).await?;
    }

    let mut period = Duration::from_millis(registered.heartbeat_period_ms.clamp(100, 60_000));
    let mut heartbeat = tokio::time::interval(period);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beats = Beats::open(&mut client, address).await?;
    loop {
        tokio::select! {
            message = stream.message() => {
                let message = message.map_err(|s| refused(address, s))?;
                let Some(message) = message else {
                    return Err(SessionError::Unreachable {
                        address: address.to_string(),
                        why: "the session stream ended".into(),
                    });
                };
                if let Some(set) = next_set(message, held, address)? {
                    debug!(tasks = set.tasks.len(), revision = set.revision, "assignments");
                    runner.reconcile(set);
                }
            }
            seq = next_change(&mut applied) => {
                ack(&mut client, &node_id, &session_id, seq, address).await?;
            }
            now = next_change(&mut wanted) => services.tell(&mut client, &to, &now).await?,
            now = next_change(&mut names) => names_asked.tell(&mut client, &to, &now).await?,
            update = updates.recv() => {
                let Some(update) = update else { return Ok(()) };
                let mut batch = vec![update];
                while let Ok(more) = updates.try_recv() {
                    batch.push(more);
                }
                let (count, oldest) = (batch.len(), oldest_status_ms(&batch));
                let sent = std::time::Instant::now();
                report(&mut client, &node_id, &session_id, batch, address).await?;
                // The report step of the start and stop paths (see
                // supervisor/steps.rs): from the oldest status made to the
                // leader's answer.
                debug!(
                    target: "berth_agent::supervisor::steps",
                    updates = count,
                    rpc_ms = sent.elapsed().as_millis() as u64,
                    waited_ms = crate::supervisor::now_ms().saturating_sub(oldest),
                    "statuses reported"
                );
            }
            _ = heartbeat.tick() => {
                let beat = HeartbeatRequest {
                    node_id: node_id.clone(),
                    session_id: session_id.clone(),
                    dataplane_conflict: runner.dataplane_conflict(),
                };
                if let Some(answer) = beats.beat(&mut client, beat, period, address).await? {
                    answered(answer, &mut period, &mut heartbeat, config);
                }
            }
            answer = beats.answer(address) => {
                answered(answer?, &mut period, &mut heartbeat, config);
            }
        }
    }
}

/// How the session heartbeats: on one stream (`Heartbeats`), or a call per
/// beat to a controller that does not serve the stream.
enum Beats {
    Stream {
        tx: mpsc::Sender<HeartbeatRequest>,
        answers: Box<tonic::Streaming<HeartbeatResponse>>,
        /// When the last answer came (or the stream opened).
        last_answer: std::time::Instant,
    },
    Unary,
}

impl Beats {
    async fn open(
        client: &mut DispatcherClient<Channel>,
        address: &str,
    ) -> Result<Beats, SessionError> {
        let (tx, rx) = mpsc::channel(4);
        match client
            .heartbeats(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
        {
            Ok(answers) => Ok(Beats::Stream {
                tx,
                answers: Box::new(answers.into_inner()),
                last_answer: std::time::Instant::now(),
            }),
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                debug!("the controller has no heartbeat stream: one call per beat");
                Ok(Beats::Unary)
            }
            Err(status) => Err(refused(address, status)),
        }
    }

    /// Sends one beat. A session whose leader answered none for three
    /// periods ends. Returns the answer of a call (a stream's come through
    /// [`Beats::answer`]).
    async fn beat(
        &mut self,
        client: &mut DispatcherClient<Channel>,
        beat: HeartbeatRequest,
        period: Duration,
        address: &str,
    ) -> Result<Option<HeartbeatResponse>, SessionError> {
        let timed_out = || SessionError::Unreachable {
            address: address.to_string(),
            why: "heartbeat timed out".into(),
        };
        match self {
            Beats::Stream {
                tx, last_answer, ..
            } => {
                if last_answer.elapsed() > period * 3 {
                    return Err(timed_out());
                }
                // A full queue means the leader is not reading: the timeout
                // above ends the session soon; no beat is worth waiting for.
                let _ = tx.try_send(beat);
                Ok(None)
            }
            Beats::Unary => {
                let answer = tokio::time::timeout(period * 3, client.heartbeat(beat))
                    .await
                    .map_err(|_| timed_out())?;
                Ok(Some(answer.map_err(|s| refused(address, s))?.into_inner()))
            }
        }
    }

    /// The next answer on the stream; never, for calls.
    async fn answer(&mut self, address: &str) -> Result<HeartbeatResponse, SessionError> {
        let Beats::Stream {
            answers,
            last_answer,
            ..
        } = self
        else {
            return std::future::pending().await;
        };
        match answers.message().await {
            Ok(Some(answer)) => {
                *last_answer = std::time::Instant::now();
                Ok(answer)
            }
            Ok(None) => Err(SessionError::Unreachable {
                address: address.to_string(),
                why: "the heartbeat stream ended".into(),
            }),
            Err(status) => Err(refused(address, status)),
        }
    }
}

/// Takes a heartbeat's answer: the period the leader asks for, and whether
/// the cluster's roots changed.
fn answered(
    answer: HeartbeatResponse,
    period: &mut Duration,
    heartbeat: &mut tokio::time::Interval,
    config: &SessionConfig,
) {
    // The leader spreads heartbeats out as the cluster grows.
    let asked = Duration::from_millis(answer.period_ms.clamp(100, 60_000));
    if answer.period_ms != 0 && asked != *period {
        debug!(?asked, "heartbeat period changed");
        *period = asked;
        *heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + asked, asked);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    // The cluster's roots changed (a CA rotation): renew now.
    if let Some(creds) = config.security.credentials()
        && !answer.ca_digest.is_empty()
        && answer.ca_digest != berth_pki::bundle::ca_digest(&creds.bundle().ca_pem)
    {
        config.renew_now.notify_one();
    }
}

/// The value after the next change (the shared sequence applied, the
/// services wanted); never, when there is nothing to watch or it closed.
async fn next_change<T: Clone>(watched: &mut Option<tokio::sync::watch::Receiver<T>>) -> T {
    if let Some(rx) = watched {
        if rx.changed().await.is_ok() {
            return rx.borrow_and_update().clone();
        }
        *watched = None;
    }
    std::future::pending().await
}

/// Where the agent keeps the services its DNS asked to follow, one id a line.
const FOLLOWED_FILE: &str = "followed-services";
/// And the names it asked for (a leader that sends endpoints on demand).
const FOLLOWED_NAMES_FILE: &str = "followed-names";

/// The services (or names) this agent's DNS asked to follow before (`file`
/// in its data dir). A restarted agent asks for them again at once: a
/// client that resolved a VIP long ago (nginx resolves at start) still finds
/// its backends.
fn remembered_follows(
    data_dir: &std::path::Path,
    file: &str,
) -> std::collections::BTreeSet<String> {
    std::fs::read_to_string(data_dir.join(file))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect()
}

/// Adds `now` to what is remembered in `file`, writing it when that grows,
/// up to [`MAX_ASKED`] entries (a failure is logged: the services are
/// followed anyway).
fn remember_follows(
    data_dir: &std::path::Path,
    file: &str,
    remembered: &mut std::collections::BTreeSet<String>,
    now: &std::collections::BTreeSet<String>,
) {
    let before = remembered.len();
    for item in now {
        if remembered.len() >= MAX_ASKED {
            break;
        }
        remembered.insert(item.clone());
    }
    if remembered.len() == before {
        return;
    }
    let text: String = remembered.iter().map(|id| format!("{id}\n")).collect();
    let path = data_dir.join(file);
    let temporary = data_dir.join(format!("{file}.tmp"));
    let written =
        std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, &path));
    if let Err(error) = written {
        tracing::warn!(%error, path = %path.display(), "cannot keep the followed services");
    }
}

/// Whom a session's calls go to.
struct Leader<'a> {
    node_id: &'a str,
    session_id: &'a str,
    address: &'a str,
}

/// What the agent asks the leader to follow, of one kind (services by id,
/// or names): kept in its data dir across restarts, told to each session
/// once.
struct Asks {
    data_dir: std::path::PathBuf,
    file: &'static str,
    by_name: bool,
    remembered: std::collections::BTreeSet<String>,
    /// Told to this session.
    told: std::collections::BTreeSet<String>,
}

impl Asks {
    fn load(data_dir: &std::path::Path, file: &'static str, by_name: bool) -> Asks {
        Asks {
            data_dir: data_dir.to_path_buf(),
            file,
            by_name,
            remembered: remembered_follows(data_dir, file),
            told: std::collections::BTreeSet::new(),
        }
    }

    /// Remembers `now`, and tells the leader what of it and of what was
    /// remembered this session was not told yet.
    async fn tell(
        &mut self,
        client: &mut DispatcherClient<Channel>,
        to: &Leader<'_>,
        now: &std::collections::BTreeSet<String>,
    ) -> Result<(), SessionError> {
        remember_follows(&self.data_dir, self.file, &mut self.remembered, now);
        let new: Vec<String> = now
            .union(&self.remembered)
            .filter(|item| !self.told.contains(*item))
            .cloned()
            .collect();
        // The leader takes up to 1,024 of each a request.
        for chunk in new.chunks(1024) {
            let (service_ids, names) = if self.by_name {
                (Vec::new(), chunk.to_vec())
            } else {
                (chunk.to_vec(), Vec::new())
            };
            client
                .follow(FollowRequest {
                    node_id: to.node_id.to_string(),
                    session_id: to.session_id.to_string(),
                    service_ids,
                    names,
                })
                .await
                .map_err(|s| refused(to.address, s))?;
            self.told.extend(chunk.iter().cloned());
        }
        Ok(())
    }
}

/// When the oldest status of `batch` was made (Unix ms).
fn oldest_status_ms(batch: &[TaskStatusUpdate]) -> i64 {
    batch
        .iter()
        .filter_map(|u| u.status.as_ref())
        .map(|s| s.timestamp_ms)
        .min()
        .unwrap_or_else(crate::supervisor::now_ms)
}

async fn ack(
    client: &mut DispatcherClient<Channel>,
    node_id: &str,
    session_id: &str,
    shared_seq: u64,
    address: &str,
) -> Result<(), SessionError> {
    client
        .ack_shared(AckSharedRequest {
            node_id: node_id.to_string(),
            session_id: session_id.to_string(),
            shared_seq,
        })
        .await
        .map_err(|s| refused(address, s))?;
    Ok(())
}

async fn report(
    client: &mut DispatcherClient<Channel>,
    node_id: &str,
    session_id: &str,
    updates: Vec<TaskStatusUpdate>,
    address: &str,
) -> Result<(), SessionError> {
    client
        .update_task_status(UpdateTaskStatusRequest {
            node_id: node_id.to_string(),
            session_id: session_id.to_string(),
            updates,
        })
        .await
        .map_err(|s| refused(address, s))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followed_services_are_remembered_across_restarts() {
        let dir = tempfile::tempdir().expect("a temporary dir");
        let mut remembered = remembered_follows(dir.path(), FOLLOWED_FILE);
        assert!(remembered.is_empty(), "nothing kept yet");
        let now: std::collections::BTreeSet<String> = ["s2".into(), "s1".into()].into();
        remember_follows(dir.path(), FOLLOWED_FILE, &mut remembered, &now);
        let later: std::collections::BTreeSet<String> = ["s3".into()].into();
        remember_follows(dir.path(), FOLLOWED_FILE, &mut remembered, &later);
        let again = remembered_follows(dir.path(), FOLLOWED_FILE);
        assert_eq!(again.into_iter().collect::<Vec<_>>(), ["s1", "s2", "s3"]);
        assert!(!dir.path().join("followed-services.tmp").exists());
        // Names in their own file.
        let mut names = remembered_follows(dir.path(), FOLLOWED_NAMES_FILE);
        remember_follows(
            dir.path(),
            FOLLOWED_NAMES_FILE,
            &mut names,
            &["api".into()].into(),
        );
        let names = remembered_follows(dir.path(), FOLLOWED_NAMES_FILE);
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["api"]);
        assert_eq!(remembered_follows(dir.path(), FOLLOWED_FILE).len(), 3);
    }
}
