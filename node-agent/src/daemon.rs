//! The agent daemon: images, the task supervisor, the session with the cluster
//! and the agent's own API (task logs), wired together.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use berth_proto::v1::agent_server::{Agent, AgentServer};
use berth_proto::v1::{Assignments, TaskLogLine, TaskLogsRequest, TaskStatusUpdate};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::image::ImageStore;
use crate::network::NetPlane;
use crate::session::{self, SessionConfig, TaskRunner};
use crate::supervisor::{LogStream, Supervisor, SupervisorConfig, SupervisorError};

#[derive(Clone, Debug)]
pub struct AgentOptions {
    pub data_dir: PathBuf,
    pub controllers: Vec<String>,
    pub name: String,
    pub advertise: String,
    pub labels: BTreeMap<String, String>,
    /// The OCI runtime binary (berth-runtime by default; runc works too).
    pub runtime: PathBuf,
    /// The runtime's state directory.
    pub runtime_root: PathBuf,
    pub insecure_registries: Vec<String>,
    pub cgroup_parent: String,
    /// Where the agent's API (task logs) listens.
    pub api_listen: SocketAddr,
    /// Program and leading arguments that start a container shim
    /// (`berth-agent shim`).
    pub shim: Vec<std::ffi::OsString>,
    /// Where task network namespaces are bind-mounted.
    pub netns_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create the data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("image store: {0}")]
    Images(String),
    #[error("supervisor: {0}")]
    Supervisor(#[from] SupervisorError),
    #[error("cannot listen on {addr} for the agent API: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Session(#[from] session::SessionError),
    #[error("network: {0}")]
    Network(#[from] crate::dataplane::NetworkError),
}

/// How often the network plane re-checks the kernel against the plan in full.
const NETWORK_RESYNC: std::time::Duration = std::time::Duration::from_secs(10);

/// What the session drives: the network plane first (so a task's networks are
/// known when the supervisor prepares it), then the supervisor.
struct Runner {
    supervisor: Arc<Supervisor>,
    network: Arc<NetPlane>,
}

impl TaskRunner for Runner {
    fn reconcile(&self, assignments: Assignments) {
        self.network.set(&assignments);
        self.supervisor.reconcile(assignments.tasks);
    }

    fn statuses(&self) -> Vec<TaskStatusUpdate> {
        self.supervisor.statuses()
    }
}

struct AgentApi {
    supervisor: Arc<Supervisor>,
}

type LogLines =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<TaskLogLine, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for AgentApi {
    type TaskLogsStream = LogLines;

    async fn task_logs(
        &self,
        request: Request<TaskLogsRequest>,
    ) -> Result<Response<LogLines>, Status> {
        let req = request.into_inner();
        let tail = (req.tail > 0).then_some(req.tail as usize);
        let lines = self
            .supervisor
            .logs(&req.task_id, req.follow, tail)
            .await
            .map_err(|e| match e {
                SupervisorError::UnknownTask { .. } => Status::not_found(e.to_string()),
                other => Status::internal(other.to_string()),
            })?;
        let stream = lines.map(|line| {
            line.map(|l| TaskLogLine {
                stream: match l.stream {
                    LogStream::Stdout => 0,
                    LogStream::Stderr => 1,
                },
                line: l.text.into_bytes(),
                time: l.time,
            })
            .map_err(|e| Status::internal(e.to_string()))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Runs the agent until the session ends (it only ends on a fatal error).
pub async fn run(opts: AgentOptions) -> Result<(), DaemonError> {
    std::fs::create_dir_all(&opts.data_dir).map_err(|source| DaemonError::DataDir {
        path: opts.data_dir.clone(),
        source,
    })?;
    let images =
        ImageStore::open(&opts.data_dir).map_err(|e| DaemonError::Images(e.to_string()))?;
    let mut cfg = SupervisorConfig::new(images);
    cfg.runtime = opts.runtime.clone();
    cfg.runtime_root = opts.runtime_root.clone();
    cfg.pull.insecure_registries = opts.insecure_registries.clone();
    cfg.cgroup_parent = opts.cgroup_parent.clone();
    if !opts.shim.is_empty() {
        cfg.shim = opts.shim.clone();
    }
    let network = NetPlane::new(opts.netns_dir.clone())?;
    cfg.network = Some(network.clone());
    let (supervisor, updates) = Supervisor::open(&opts.data_dir, cfg).await?;
    let supervisor = Arc::new(supervisor);
    let known: std::collections::HashSet<String> = supervisor
        .statuses()
        .into_iter()
        .map(|s| s.task_id)
        .collect();
    network.sweep_netns(|task| known.contains(task));
    tokio::spawn(network.clone().run(NETWORK_RESYNC));

    let listener = tokio::net::TcpListener::bind(opts.api_listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: opts.api_listen,
            source,
        })?;
    let api = AgentServer::new(AgentApi {
        supervisor: supervisor.clone(),
    });
    tokio::spawn(async move {
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        if let Err(err) = tonic::transport::Server::builder()
            .add_service(api)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(%err, "agent API stopped");
        }
    });
    info!(name = %opts.name, api = %opts.api_listen, "agent running");
    let config = SessionConfig {
        data_dir: opts.data_dir.clone(),
        controllers: opts.controllers.clone(),
        name: opts.name.clone(),
        advertise: opts.advertise.clone(),
        labels: opts.labels.clone(),
        api_port: opts.api_listen.port(),
    };
    let runner = Runner {
        supervisor,
        network,
    };
    session::run(config, Arc::new(runner), updates).await?;
    Ok(())
}
