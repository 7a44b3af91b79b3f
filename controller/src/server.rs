//! Wires a controller together: data dir, Raft member, peer transport and the
//! gRPC services on one listening address.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use berth_proto::v1::JoinRequest;
use berth_proto::v1::cluster_server::ClusterServer;
use berth_proto::v1::dispatcher_server::DispatcherServer;
use berth_proto::v1::raft_peer_server::RaftPeerServer;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use crate::api::ClusterApi;
use crate::api::DispatcherService;
use crate::datadir::{self, DataDirError, Existing, Marker};
use crate::dispatcher::{Dispatcher, DispatcherSettings};
use crate::keyring::{Keyring, KeyringError};
use crate::raft::peer_service::PeerService;
use crate::raft::storage::LogStorage;
use crate::raft::transport::{GrpcTransport, peer_channel, peer_client};
use crate::raft::{MemberError, RaftHandle, RaftSettings, Stopped, spawn_member};

/// Largest request the client API accepts.
const API_MAX_REQUEST: usize = 4 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct ControllerOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertise: Option<String>,
    pub init: bool,
    pub join: Option<String>,
    /// With `init`: lock the secrets key with an unlock key (printed once).
    pub autolock: bool,
    pub raft: RaftSettings,
    pub dispatcher: DispatcherSettings,
    /// Orchestrator, scheduler and allocator settings (the cluster CIDR among them).
    pub planner: crate::planner::PlannerSettings,
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
    #[error("cannot start the dispatcher's runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error(transparent)]
    Unlock(#[from] crate::unlock::UnlockError),
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

/// Asks an existing member to add us; nothing is written locally before it says yes.
async fn join_cluster(
    via: &str,
    advertise: &str,
) -> Result<berth_proto::v1::JoinResponse, ServerError> {
    let join_err = |why: String| ServerError::Join {
        via: via.to_string(),
        why,
    };
    let channel = peer_channel(via).map_err(|e| join_err(format!("bad address: {e}")))?;
    let mut client = peer_client(channel);
    let mut last = String::new();
    // A freshly started cluster may still be electing: retry unavailable answers.
    for _ in 0..20 {
        let request = JoinRequest {
            address: advertise.to_string(),
            member_id: 0,
        };
        match tokio::time::timeout(Duration::from_secs(10), client.join(request)).await {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                last = status.message().to_string();
                if last.contains("tcp connect error") || last.contains("error trying to connect") {
                    return Err(join_err(format!("no controller answers there ({last})")));
                }
            }
            Ok(Err(status)) => return Err(join_err(status.message().to_string())),
            Err(_) => return Err(join_err("no answer within 10 s".to_string())),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(join_err(format!("the cluster stayed unavailable: {last}")))
}

/// Decides init / join / restart; returns who this member is, its database,
/// and at init the secrets key it made.
async fn prepare_data_dir(
    opts: &ControllerOptions,
    advertise: &str,
) -> Result<(Marker, sled::Db, Option<Keyring>), ServerError> {
    match datadir::inspect(&opts.data_dir)? {
        Existing::Member(marker) => {
            if opts.init || opts.join.is_some() {
                warn!(
                    data_dir = %opts.data_dir.display(),
                    "data dir already holds member {}; ignoring --init/--join", marker.member_id
                );
            }
            let db = datadir::open_db(&opts.data_dir)?;
            Ok((marker, db, None))
        }
        Existing::Empty if opts.init => {
            let marker = Marker::new(datadir::new_cluster_id(), datadir::new_member_id());
            let members = [(marker.member_id, advertise.to_string())].into();
            let keys = crate::unlock::create_key(&opts.data_dir, opts.autolock)?;
            let db = datadir::create(&opts.data_dir, &marker, &members, &[marker.member_id])?;
            info!(cluster = %marker.cluster_id, member = marker.member_id, "initialized a new cluster");
            Ok((marker, db, Some(keys)))
        }
        Existing::Empty => match &opts.join {
            Some(via) => {
                let response = join_cluster(via, advertise).await?;
                let marker = Marker::new(response.cluster_id, response.member_id);
                Keyring::store_joined(&opts.data_dir, &response.secrets_key)?;
                let db = datadir::create(&opts.data_dir, &marker, &response.members, &[])?;
                info!(cluster = %marker.cluster_id, member = marker.member_id, "joined the cluster as a learner");
                Ok((marker, db, None))
            }
            None => Err(DataDirError::Uninitialized {
                path: opts.data_dir.clone(),
            }
            .into()),
        },
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
) -> Result<(RaftHandle, Stopped), ServerError> {
    let storage = LogStorage::open(&datadir::log_dir(data_dir), sm.clone())?;
    let runtime = tokio::runtime::Handle::current();
    let transport = |mailbox, _status| {
        GrpcTransport::new(
            marker.member_id,
            marker.cluster_id.clone(),
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
    start_member(dir, &marker, db, sm, RaftSettings::default())
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
    let (marker, db, created) = prepare_data_dir(&opts, &advertise).await?;
    let (db, sm) = datadir::load(&opts.data_dir, db, &marker)?;
    let (keys, listener) = crate::unlock::load_or_wait(&opts.data_dir, created, listener).await?;
    let (handle, done_rx) = start_member(&opts.data_dir, &marker, db, sm, opts.raft.clone())?;
    let status = handle.status().clone();
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
    let stop = async move {
        let outcome = stop_rx.await.unwrap_or(Ok(()));
        let _ = result_tx.send(outcome);
        let _ = drain_tx.send(());
    };
    let server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(1)))
        .http2_keepalive_timeout(Some(Duration::from_secs(2)))
        .add_service(
            RaftPeerServer::new(PeerService::new(handle.clone(), keys.clone()))
                .max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(berth_proto::MAX_MESSAGE_BYTES),
        )
        .add_service(
            DispatcherServer::new(DispatcherService::new(dispatcher))
                .max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(berth_proto::MAX_MESSAGE_BYTES),
        )
        .add_service(crate::unlock::unlocked_service())
        .add_service(
            ClusterServer::new(ClusterApi::new(handle, keys))
                .max_decoding_message_size(API_MAX_REQUEST)
                .max_encoding_message_size(berth_proto::MAX_MESSAGE_BYTES),
        )
        // Accepted sockets need TCP_NODELAY too, or small answers wait for the
        // client's delayed ACK (~40 ms per request).
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            stop,
        );
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
    dispatcher_loop.abort();
    planner_loop.abort();
    match result_rx.await {
        Ok(Err(err)) => Err(err),
        _ => Ok(()),
    }
}
