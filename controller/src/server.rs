//! Wires a controller together: data dir, Raft member, peer transport and the
//! gRPC services on one listening address.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use berth_pki::{Role, Security};
use berth_proto::v1::certificates_server::CertificatesServer;
use berth_proto::v1::cluster_server::ClusterServer;
use berth_proto::v1::dispatcher_server::DispatcherServer;
use berth_proto::v1::raft_peer_server::RaftPeerServer;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use tonic::service::interceptor::InterceptedService;

use crate::api::{
    CertificatesApi, ClusterApi, DispatcherService, ImagesApi, SystemApi, VolumesApi,
};
use crate::ca::Gate;
use crate::datadir::{self, DataDirError, Marker};
use crate::dispatcher::{Dispatcher, DispatcherSettings};
use crate::keyring::KeyringError;
use crate::raft::peer_service::PeerService;
use crate::raft::storage::LogStorage;
use crate::raft::transport::GrpcTransport;
use crate::raft::{MemberError, RaftHandle, RaftSettings, Stopped, spawn_member};
use berth_proto::v1::images_server::ImagesServer;
use berth_proto::v1::system_server::SystemServer;
use berth_proto::v1::volumes_server::VolumesServer;

/// Largest request the client API accepts.
const API_MAX_REQUEST: usize = 4 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct ControllerOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertise: Option<String>,
    pub init: bool,
    pub join: Option<String>,
    /// The join token (`--join` with TLS).
    pub token: Option<String>,
    /// Lifetime of node certificates, fixed at `--init`.
    pub cert_expiry: Duration,
    /// Plain text, no authentication: the operator's opt-out, for benchmarks.
    pub insecure_plaintext: bool,
    /// With `init`: lock the secrets key with an unlock key (printed once).
    pub autolock: bool,
    /// With `init`: the cluster's task history limit (None: the default).
    pub task_history_limit: Option<u32>,
    pub raft: RaftSettings,
    pub dispatcher: DispatcherSettings,
    /// Orchestrator, scheduler and allocator settings (the cluster CIDR among them).
    pub planner: crate::planner::PlannerSettings,
    /// How services' images are pinned to digests (`--insecure-registry`).
    pub pins: crate::api::PinSettings,
    /// Where `/metrics` is served (plain HTTP); None: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// A restore from a backup, or a forced new cluster (`crate::recovery`).
    pub recover: crate::recovery::Recover,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("cannot join through {via}: {why}")]
    Join { via: String, why: String },
    #[error("raft member failed: {0}")]
    Member(#[from] MemberError),
    #[error("raft log: {0}")]
    Log(#[from] crate::raft::storage::LogError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "--advertise is required when listening on {0} (other members must know where to reach this one)"
    )]
    NoAdvertise(SocketAddr),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error(
        "this member (id {0}) was removed from the cluster; wipe its data dir before it joins again"
    )]
    Removed(u64),
    #[error("the raft thread stopped unexpectedly")]
    RaftThread,
    #[error("cannot renew this controller's certificate: {0}")]
    Renew(String),
    #[error("cannot start the dispatcher's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot {what}: {source}")]
    Pki {
        what: &'static str,
        source: berth_pki::PkiError,
    },
    #[error(
        "{dir} holds no TLS credentials; a data dir made with --insecure-plaintext runs only \
         with --insecure-plaintext"
    )]
    NoCredentials { dir: PathBuf },
    #[error(
        "--join needs --token (print one with `berth cluster join-token controller` on the \
         cluster), or --insecure-plaintext on every member"
    )]
    NoToken,
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error(transparent)]
    Unlock(#[from] crate::unlock::UnlockError),
    #[error(transparent)]
    Metrics(#[from] berth_telemetry::TelemetryError),
    #[error(transparent)]
    Recovery(#[from] crate::recovery::RecoveryError),
}

type Gated<S> = InterceptedService<S, crate::ca::gate::Interceptor>;

/// Every gRPC service of a controller, built once and served on two routers
/// (the peers' and everyone else's).
#[derive(Clone)]
struct Services {
    peer: Gated<RaftPeerServer<PeerService>>,
    dispatcher: Gated<DispatcherServer<DispatcherService>>,
    lock: Gated<berth_proto::v1::lock_server::LockServer<crate::unlock::Unlocked>>,
    cluster: Gated<ClusterServer<ClusterApi>>,
    tasks: Gated<berth_proto::v1::tasks_server::TasksServer<crate::api::TasksApi>>,
    certificates: CertificatesServer<CertificatesApi>,
    volumes: Gated<VolumesServer<VolumesApi>>,
    images: Gated<ImagesServer<ImagesApi>>,
    system: Gated<SystemServer<SystemApi>>,
    exec: Gated<berth_proto::v1::exec_server::ExecServer<crate::api::ExecApi>>,
    stacks: Gated<berth_proto::v1::stacks_server::StacksServer<crate::api::StacksApi>>,
    events: Gated<berth_proto::v1::events_server::EventsServer<crate::api::EventsApi>>,
    cluster_settings: Gated<
        berth_proto::v1::cluster_settings_service_server::ClusterSettingsServiceServer<
            crate::api::ClusterSettingsApi,
        >,
    >,
    recovery: Gated<berth_proto::v1::recovery_server::RecoveryServer<crate::api::RecoveryApi>>,
}

/// HTTP/2 pings on the peers' connections: a dead fellow controller is noticed
/// within ~3 s.
const PEER_KEEPALIVE: Duration = Duration::from_secs(1);
/// HTTP/2 pings on everyone else's: agents' liveness is their heartbeats, and
/// they ping the leader themselves, so the server pings a connection only after
/// 10 s of silence. At 1 s, an idle 1,000-node cluster cost the leader a ping
/// over TLS on every agent connection every second between heartbeats.
const CLIENT_KEEPALIVE: Duration = Duration::from_secs(10);

impl Services {
    fn router(&self, keepalive: Duration) -> tonic::transport::server::Router {
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(keepalive))
            .http2_keepalive_timeout(Some(Duration::from_secs(2)))
            .add_service(self.peer.clone())
            .add_service(self.dispatcher.clone())
            .add_service(self.lock.clone())
            .add_service(self.cluster.clone())
            .add_service(self.tasks.clone())
            .add_service(self.certificates.clone())
            .add_service(self.volumes.clone())
            .add_service(self.images.clone())
            .add_service(self.system.clone())
            .add_service(self.exec.clone())
            .add_service(self.stacks.clone())
            .add_service(self.events.clone())
            .add_service(self.cluster_settings.clone())
            .add_service(self.recovery.clone())
    }
}

/// A runtime owned by async code: dropping a runtime inside another one
/// would panic, so it is shut down without waiting for its tasks.
struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

fn advertise_address(opts: &ControllerOptions) -> Result<String, ServerError> {
    match &opts.advertise {
        Some(addr) => Ok(addr.clone()),
        None if opts.listen.ip().is_unspecified() => Err(ServerError::NoAdvertise(opts.listen)),
        None => Ok(opts.listen.to_string()),
    }
}

/// The Raft member of an opened data dir: storage, gRPC peer transport and the
/// member loop on its own thread. Returns the handle the services use and a
/// receiver that resolves when the loop stops. Call inside a tokio runtime.
pub fn start_member(
    data_dir: &std::path::Path,
    marker: &Marker,
    db: sled::Db,
    sm: crate::store::StateMachine,
    settings: RaftSettings,
    security: Security,
    runtime: tokio::runtime::Handle,
) -> Result<(RaftHandle, Stopped), ServerError> {
    let storage = LogStorage::open(&datadir::log_dir(data_dir), sm.clone())?;
    let transport = |mailbox, _status| {
        GrpcTransport::new(
            marker.member_id,
            marker.cluster_id.clone(),
            security,
            mailbox,
            runtime,
        )
    };
    // The database stays open as long as the member runs.
    Ok(spawn_member(
        marker.member_id,
        storage,
        sm,
        settings,
        transport,
        db,
    )?)
}

/// A new one-member cluster in `dir`, started: for tests of what runs on it.
#[cfg(test)]
pub(crate) fn test_member(dir: &std::path::Path) -> RaftHandle {
    let marker = Marker::new(datadir::new_cluster_id(), datadir::new_member_id());
    let members = [(marker.member_id, "127.0.0.1:1".to_string())].into();
    let db = datadir::create(dir, &marker, &members, &[marker.member_id]).expect("create");
    let (db, sm) = datadir::load(dir, db, &marker).expect("load");
    start_member(
        dir,
        &marker,
        db,
        sm,
        RaftSettings::default(),
        Security::Plaintext,
        tokio::runtime::Handle::current(),
    )
    .expect("raft member")
    .0
}

/// A one-member cluster in `dir` that has elected itself (tests).
#[cfg(test)]
pub(crate) async fn test_leader(dir: &std::path::Path) -> RaftHandle {
    let raft = test_member(dir);
    for _ in 0..600 {
        if raft.status().get().is_leader() {
            return raft;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("a one-member cluster did not elect itself in 30 s");
}

/// Runs a controller until `shutdown` resolves or the member fails.
pub async fn run(
    opts: ControllerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let advertise = advertise_address(&opts)?;
    // Bind first: a port in use fails before anything is written.
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ServerError::Listen {
            addr: opts.listen,
            source,
        })?;
    let metrics_server = match opts.metrics_listen {
        Some(addr) => Some(
            berth_telemetry::MetricsServer::bind(addr, berth_telemetry::new_registry()?).await?,
        ),
        None => None,
    };
    let crate::startup::Prepared {
        marker,
        db,
        security,
        created,
    } = crate::startup::prepare_data_dir(&opts, &advertise).await?;
    let (db, sm) = datadir::load(&opts.data_dir, db, &marker)?;
    let gate = match &security {
        Security::Tls(creds) => {
            // Off longer than its certificate lived: sign a new one with the
            // CA this member holds, before anyone sees the old one.
            if let Some(why) = creds.info().invalid_at(crate::clock::now_ms()) {
                warn!(%why, "this controller's certificate is unusable; renewing it");
                crate::ca::renewer::renew_locally(&sm, creds, &datadir::tls_dir(&opts.data_dir))
                    .map_err(|e| ServerError::Renew(e.to_string()))?;
            }
            Gate::new(sm.clone(), marker.cluster_id.clone())
        }
        Security::Plaintext => Gate::plaintext(),
    };
    let (keys, listener) =
        crate::unlock::load_or_wait(&opts.data_dir, created, listener, &security, &gate).await?;
    let renewer = security.credentials().map(|creds| {
        tokio::spawn(crate::ca::renewer::run(
            sm.clone(),
            creds.clone(),
            datadir::tls_dir(&opts.data_dir),
            datadir::admin_dir(&opts.data_dir),
        ))
    });
    // Raft's peer traffic, both ways, on a thread of its own (see below).
    let peers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("berth-peers")
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    let peers_runtime = peers.handle().clone();
    let _peers_owner = BackgroundRuntime(Some(peers));
    let (handle, done_rx) = start_member(
        &opts.data_dir,
        &marker,
        db,
        sm,
        opts.raft.clone(),
        security.clone(),
        peers_runtime.clone(),
    )?;
    let status = handle.status().clone();
    let metrics_task = match metrics_server {
        Some(server) => {
            opts.raft
                .metrics
                .register(server.registry(), handle.clone())?;
            if let Some(addr) = server.local_addr() {
                info!(metrics_listen = %addr, "serving /metrics");
            }
            Some(tokio::spawn(server.serve()))
        }
        None => None,
    };
    let clock = crate::clock::system();
    // The dispatcher's own worker thread: the fan-out of a large cluster's
    // sessions stays off the runtime that carries Raft's peer traffic (a
    // leader starved of its followers' answers fails its quorum check).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("berth-dispatch")
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    let dispatch_runtime = runtime.handle().clone();
    let _dispatch_owner = BackgroundRuntime(Some(runtime));
    let dispatcher = Dispatcher::new(
        handle.clone(),
        opts.dispatcher.clone(),
        clock.clone(),
        keys.clone(),
    )
    .with_runtime(dispatch_runtime.clone());
    // Assignments and liveness: they act only while this member leads.
    let dispatcher_loop = dispatch_runtime.spawn(dispatcher.clone().run());
    // Ends CA rotations once every node is on the new root (on the leader).
    let rotation_loop = tokio::spawn(crate::ca::rotation::run(handle.clone()));
    // Orchestrator and scheduler: they act only while this member leads.
    let planner_loop = tokio::spawn(crate::planner::run(
        handle.clone(),
        opts.planner.clone(),
        clock,
    ));
    info!(member = marker.member_id, listen = %opts.listen, %advertise, "controller serving");

    let (stop_tx, stop_rx) = oneshot::channel::<Result<(), ServerError>>();
    let watcher = tokio::spawn(async move {
        let mut done_rx = done_rx;
        let removed = async {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if status.get().removed {
                    return;
                }
            }
        };
        let outcome = tokio::select! {
            _ = shutdown => Ok(()),
            result = &mut done_rx => match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(ServerError::Member(err)),
                Err(_) => Err(ServerError::RaftThread),
            },
            _ = removed => Err(ServerError::Removed(marker.member_id)),
        };
        if let Err(err) = &outcome {
            error!(%err, "controller stopping");
        }
        let _ = stop_tx.send(outcome);
    });
    let (result_tx, result_rx) = oneshot::channel();
    let (drain_tx, drain_rx) = oneshot::channel::<()>();
    let (peers_stop_tx, peers_stop_rx) = oneshot::channel::<()>();
    let stop = async move {
        let outcome = stop_rx.await.unwrap_or(Ok(()));
        let _ = result_tx.send(outcome);
        let _ = drain_tx.send(());
        let _ = peers_stop_tx.send(());
    };
    // Every service but the CA's bootstrap RPCs admits only the roles that
    // need it; the port lets callers without a certificate through the
    // handshake for those RPCs, every other RPC refuses them.
    let incoming =
        berth_pki::tls::incoming(listener, &security, true).map_err(|source| ServerError::Pki {
            what: "configure TLS",
            source,
        })?;
    // Fellow controllers' connections (Raft, joins, passed-on calls) are
    // served on the peers' own thread: a thousand agents' sessions, with their
    // TLS, never delay the leader's heartbeats (that cost elections at 1,000
    // nodes). In plain text there are no certificates to tell them apart.
    let (peer_incoming, incoming) = berth_pki::tls::split_by_role(incoming, Role::Controller);
    let services = Services {
        peer: InterceptedService::new(
            RaftPeerServer::new(PeerService::new(
                handle.clone(),
                security.clone(),
                keys.clone(),
            ))
            .max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(berth_proto::MAX_MESSAGE_BYTES),
            gate.only(&[Role::Controller]),
        ),
        dispatcher: InterceptedService::new(
            DispatcherServer::new(DispatcherService::new(dispatcher))
                .max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(berth_proto::MAX_MESSAGE_BYTES),
            gate.only(&[Role::Agent]),
        ),
        lock: InterceptedService::new(crate::unlock::unlocked_service(), gate.only(&[Role::Admin])),
        cluster: InterceptedService::new(
            ClusterServer::new(ClusterApi::new(
                handle.clone(),
                security.clone(),
                keys.clone(),
                opts.pins.clone(),
            ))
            .max_decoding_message_size(API_MAX_REQUEST)
            .max_encoding_message_size(berth_proto::MAX_MESSAGE_BYTES),
            // Controllers pass on what a follower cannot do itself.
            gate.only(&[Role::Admin, Role::Controller]),
        ),
        volumes: InterceptedService::new(
            VolumesServer::new(VolumesApi::new(handle.clone(), security.clone())),
            gate.only(&[Role::Admin, Role::Controller]),
        ),
        images: InterceptedService::new(
            ImagesServer::new(ImagesApi::new(handle.clone(), security.clone()))
                .max_encoding_message_size(berth_proto::MAX_MESSAGE_BYTES),
            gate.only(&[Role::Admin]),
        ),
        // Controllers ask each other for their versions.
        system: InterceptedService::new(
            SystemServer::new(SystemApi::new(handle.clone(), security.clone()))
                .max_encoding_message_size(berth_proto::MAX_MESSAGE_BYTES),
            gate.only(&[Role::Admin, Role::Controller]),
        ),
        tasks: InterceptedService::new(
            berth_proto::v1::tasks_server::TasksServer::new(crate::api::TasksApi::new(
                handle.clone(),
                security.clone(),
                keys.clone(),
                opts.pins.clone(),
            ))
            .max_decoding_message_size(API_MAX_REQUEST),
            gate.only(&[Role::Admin]),
        ),
        exec: InterceptedService::new(
            berth_proto::v1::exec_server::ExecServer::new(crate::api::ExecApi::new(
                handle.clone(),
                security.clone(),
            )),
            gate.only(&[Role::Admin]),
        ),
        // Followers pass a backup call on to the leader.
        recovery: InterceptedService::new(
            berth_proto::v1::recovery_server::RecoveryServer::new(crate::api::RecoveryApi::new(
                handle.clone(),
                security.clone(),
                keys.clone(),
            ))
            .max_encoding_message_size(berth_proto::MAX_MESSAGE_BYTES),
            gate.only(&[Role::Admin, Role::Controller]),
        ),
        // A stack's secrets and configs travel in the request.
        stacks: InterceptedService::new(
            berth_proto::v1::stacks_server::StacksServer::new(crate::api::StacksApi::new(
                handle.clone(),
                keys,
                opts.pins.clone(),
            ))
            .max_decoding_message_size(API_MAX_REQUEST),
            gate.only(&[Role::Admin]),
        ),
        events: InterceptedService::new(
            berth_proto::v1::events_server::EventsServer::new(crate::api::EventsApi::new(
                handle.clone(),
            ))
            .max_encoding_message_size(berth_proto::MAX_MESSAGE_BYTES),
            gate.only(&[Role::Admin]),
        ),
        cluster_settings: InterceptedService::new(
            berth_proto::v1::cluster_settings_service_server::ClusterSettingsServiceServer::new(
                crate::api::ClusterSettingsApi::new(handle.clone()),
            ),
            gate.only(&[Role::Admin]),
        ),
        certificates: CertificatesServer::new(CertificatesApi::new(
            handle,
            gate,
            marker.cluster_id.clone(),
        )),
    };
    let peer_server = peers_runtime.spawn(
        services
            .router(PEER_KEEPALIVE)
            .serve_with_incoming_shutdown(peer_incoming, async move {
                let _ = peers_stop_rx.await;
            }),
    );
    let server = services
        .router(CLIENT_KEEPALIVE)
        .serve_with_incoming_shutdown(incoming, stop);
    // Raft streams never end by themselves: give open calls a moment, then go.
    let drain_deadline = async {
        let _ = drain_rx.await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    tokio::select! {
        result = server => result?,
        _ = drain_deadline => {}
    }
    watcher.abort();
    peer_server.abort();
    if let Some(renewer) = renewer {
        renewer.abort();
    }
    if let Some(metrics) = metrics_task {
        metrics.abort();
    }
    dispatcher_loop.abort();
    rotation_loop.abort();
    planner_loop.abort();
    match result_rx.await {
        Ok(Err(err)) => Err(err),
        _ => Ok(()),
    }
}
