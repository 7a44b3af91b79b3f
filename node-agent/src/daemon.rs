//! The agent daemon: images, the task supervisor, the session with the cluster
//! and the agent's own API (task logs), wired together.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_pki::Security;
use berth_proto::v1::{Assignments, TaskStatusUpdate};
use tracing::info;

use crate::image::ImageStore;
use crate::network::NetPlane;
use crate::session::{self, SessionConfig, TaskRunner};
use crate::supervisor::{Endpoints, Supervisor, SupervisorConfig, SupervisorError};

#[derive(Clone, Debug)]
pub struct AgentOptions {
    pub data_dir: PathBuf,
    pub controllers: Vec<String>,
    pub name: String,
    pub advertise: String,
    pub labels: BTreeMap<String, String>,
    /// The OCI runtime binary (runc works too). None: `berth-runtime` beside
    /// this executable, else on PATH (see [`locate_runtime`]).
    pub runtime: Option<PathBuf>,
    /// The runtime's state directory.
    pub runtime_root: PathBuf,
    pub insecure_registries: Vec<String>,
    pub cgroup_parent: String,
    /// Where the agent's API (task logs) listens.
    pub api_listen: SocketAddr,
    /// Program and leading arguments that start a container shim
    /// (default: `berth-shim` beside this executable).
    pub shim: Vec<std::ffi::OsString>,
    /// Where task network namespaces are bind-mounted.
    pub netns_dir: PathBuf,
    /// The agent join token, needed when the agent has no valid certificate.
    pub token: Option<String>,
    /// Plain text, no authentication (the cluster's controllers run with
    /// --insecure-plaintext too): for benchmarks only.
    pub insecure_plaintext: bool,
    /// Where each task's secrets tmpfs is mounted (outside the data dir).
    pub secrets_dir: PathBuf,
    /// Where `/metrics` is served (plain HTTP); None: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// When unused images are removed (see `image::gc_loop`).
    pub image_gc: crate::image::GcPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "no OCI runtime: looked for {looked}; install berth-runtime there or pass --runtime PATH"
    )]
    RuntimeNotFound { looked: String },
    #[error(
        "no container shim at {}: install berth-shim beside berth-agent (it is built with it)",
        path.display()
    )]
    ShimNotFound { path: PathBuf },
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
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialError),
    #[error("agent API TLS: {0}")]
    Tls(#[from] berth_pki::PkiError),
    #[error(transparent)]
    Metrics(#[from] berth_telemetry::TelemetryError),
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
        self.supervisor.set_endpoints(
            Endpoints::from_assignments(&assignments),
            assignments.applied_everywhere,
        );
        self.supervisor
            .set_payloads(assignments.secrets, assignments.configs);
        self.supervisor.reconcile(assignments.tasks);
    }

    fn shared_applied(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.network.applied_seq())
    }

    fn follow_wanted(
        &self,
    ) -> Option<tokio::sync::watch::Receiver<std::collections::BTreeSet<String>>> {
        Some(self.network.follow_wanted())
    }

    fn names_wanted(
        &self,
    ) -> Option<tokio::sync::watch::Receiver<std::collections::BTreeSet<String>>> {
        Some(self.network.names_wanted())
    }

    fn statuses(&self) -> Vec<TaskStatusUpdate> {
        self.supervisor.statuses()
    }

    fn dataplane_conflict(&self) -> String {
        self.network.dataplane_conflict()
    }
}

/// The runtime's name when none is given.
pub const RUNTIME_NAME: &str = "berth-runtime";

/// The OCI runtime the agent will run: the given one (a path, or a bare name
/// looked up on PATH), else `berth-runtime` beside this executable, else on
/// PATH. Run before anything else, so that a missing runtime stops the agent
/// at start instead of failing every task one by one.
pub fn locate_runtime(given: Option<&Path>) -> Result<PathBuf, DaemonError> {
    let exe = std::env::current_exe().ok();
    let exe_dir = exe.as_deref().and_then(Path::parent);
    find_runtime(given, exe_dir, std::env::var_os("PATH").as_deref())
}

/// [`locate_runtime`] with the executable's directory and PATH passed in.
fn find_runtime(
    given: Option<&Path>,
    exe_dir: Option<&Path>,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, DaemonError> {
    let mut candidates = Vec::new();
    let on_path = match given {
        Some(path) if path.components().count() > 1 => {
            candidates.push(path.to_path_buf());
            None
        }
        Some(name) => Some(name),
        None => {
            candidates.extend(exe_dir.map(|dir| dir.join(RUNTIME_NAME)));
            Some(Path::new(RUNTIME_NAME))
        }
    };
    let mut path_empty = false;
    if let Some(name) = on_path {
        let before = candidates.len();
        candidates.extend(
            path_var
                .map(std::env::split_paths)
                .into_iter()
                .flatten()
                .filter(|dir| !dir.as_os_str().is_empty())
                .map(|dir| dir.join(name)),
        );
        path_empty = candidates.len() == before;
    }
    // PATH often names a directory twice; say each place once.
    let mut seen = std::collections::HashSet::new();
    candidates.retain(|c| seen.insert(c.clone()));
    if let Some(found) = candidates.iter().find(|c| is_executable(c)) {
        return Ok(found.clone());
    }
    let mut looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    if path_empty {
        looked.push("PATH (empty)".to_string());
    }
    Err(DaemonError::RuntimeNotFound {
        looked: looked.join(", "),
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs the agent until the session ends (it only ends on a fatal error).
pub async fn run(opts: AgentOptions) -> Result<(), DaemonError> {
    let runtime = locate_runtime(opts.runtime.as_deref())?;
    // A metrics port in use fails before anything is written, too.
    let metrics_server = match opts.metrics_listen {
        Some(addr) => Some(
            berth_telemetry::MetricsServer::bind(addr, berth_telemetry::new_registry()?).await?,
        ),
        None => None,
    };
    let metrics = crate::metrics::AgentMetrics::new();
    // Credentials before anything is written: a bad or missing token leaves
    // the data dir as it was.
    let renew_now = Arc::new(tokio::sync::Notify::new());
    let security = if opts.insecure_plaintext {
        tracing::warn!("speaking PLAIN TEXT without authentication (--insecure-plaintext)");
        Security::Plaintext
    } else {
        let known = crate::session::identity::NodeIdentity::load(&opts.data_dir)?;
        let creds = crate::credentials::obtain(
            &opts.data_dir,
            &opts.controllers,
            opts.token.as_deref(),
            &known.node_id,
        )
        .await?;
        tokio::spawn(crate::credentials::renew_forever(
            creds.clone(),
            opts.controllers.clone(),
            crate::credentials::tls_dir(&opts.data_dir),
            renew_now.clone(),
        ));
        Security::Tls(creds)
    };
    std::fs::create_dir_all(&opts.data_dir).map_err(|source| DaemonError::DataDir {
        path: opts.data_dir.clone(),
        source,
    })?;
    let images =
        ImageStore::open(&opts.data_dir).map_err(|e| DaemonError::Images(e.to_string()))?;
    tokio::spawn(crate::image::run_gc(
        images.clone(),
        opts.image_gc,
        Arc::new(crate::image::Statvfs),
    ));
    let mut cfg = SupervisorConfig::new(images.clone());
    cfg.runtime = runtime.clone();
    cfg.runtime_root = opts.runtime_root.clone();
    cfg.secrets_root = opts.secrets_dir.clone();
    cfg.node_name = opts.name.clone();
    cfg.pull.insecure_registries = opts.insecure_registries.clone();
    cfg.cgroup_parent = opts.cgroup_parent.clone();
    cfg.metrics = metrics.clone();
    if !opts.shim.is_empty() {
        cfg.shim = opts.shim.clone();
    }
    // Without it every task would fail at create, one by one. (A bare name
    // is looked up on PATH when started.)
    if let Some(program) = cfg.shim.first().map(Path::new)
        && program.components().count() > 1
        && !program.exists()
    {
        return Err(DaemonError::ShimNotFound {
            path: PathBuf::from(program),
        });
    }
    if let Err(why) = crate::supervisor::process_settings::find_init(&cfg.init_binary) {
        // Only `--init` tasks need it: they fail with this message.
        tracing::warn!("{why}");
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
    tokio::spawn(network.clone().run(NETWORK_RESYNC, metrics.clone()));
    if let Some(server) = metrics_server {
        metrics.register(server.registry(), supervisor.clone())?;
        if let Some(addr) = server.local_addr() {
            info!(metrics_listen = %addr, "serving /metrics");
        }
        tokio::spawn(server.serve());
    }

    let listener = tokio::net::TcpListener::bind(opts.api_listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: opts.api_listen,
            source,
        })?;
    let incoming = berth_pki::tls::incoming(listener, &security, false)?;
    let parts = crate::api::AgentParts {
        supervisor: supervisor.clone(),
        images,
        pull: crate::image::PullOptions {
            insecure_registries: opts.insecure_registries.clone(),
            ..crate::image::PullOptions::default()
        },
        runtime,
        data_dir: opts.data_dir.clone(),
        metrics: metrics.clone(),
    };
    tokio::spawn(crate::api::serve(incoming, security.clone(), parts));
    info!(name = %opts.name, api = %opts.api_listen, "agent running");
    let config = SessionConfig {
        data_dir: opts.data_dir.clone(),
        controllers: opts.controllers.clone(),
        name: opts.name.clone(),
        advertise: opts.advertise.clone(),
        labels: opts.labels.clone(),
        api_port: opts.api_listen.port(),
        security,
        renew_now,
    };
    let runner = Runner {
        supervisor,
        network,
    };
    session::run(config, Arc::new(runner), updates).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn install(dir: &Path, name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn the_runtime_beside_the_executable_comes_before_path() {
        let exe_dir = tempfile::tempdir().unwrap();
        let path_dir = tempfile::tempdir().unwrap();
        let beside = install(exe_dir.path(), RUNTIME_NAME);
        install(path_dir.path(), RUNTIME_NAME);
        let found = find_runtime(
            None,
            Some(exe_dir.path()),
            Some(path_dir.path().as_os_str()),
        );
        assert_eq!(found.unwrap(), beside);
    }

    #[test]
    fn without_one_beside_the_executable_path_is_searched() {
        let exe_dir = tempfile::tempdir().unwrap();
        let empty = tempfile::tempdir().unwrap();
        let path_dir = tempfile::tempdir().unwrap();
        let on_path = install(path_dir.path(), RUNTIME_NAME);
        let path = std::env::join_paths([empty.path(), path_dir.path(), empty.path()]).unwrap();
        let found = find_runtime(None, Some(exe_dir.path()), Some(&path));
        assert_eq!(found.unwrap(), on_path);
    }

    #[test]
    fn a_file_that_is_not_executable_does_not_count() {
        let exe_dir = tempfile::tempdir().unwrap();
        std::fs::write(exe_dir.path().join(RUNTIME_NAME), "").unwrap();
        let found = find_runtime(None, Some(exe_dir.path()), None);
        assert!(
            matches!(found, Err(DaemonError::RuntimeNotFound { .. })),
            "{found:?}"
        );
    }

    #[test]
    fn the_refusal_names_where_it_looked_and_the_flag() {
        let exe_dir = tempfile::tempdir().unwrap();
        let path_dir = tempfile::tempdir().unwrap();
        let path = std::env::join_paths([path_dir.path(), path_dir.path()]).unwrap();
        let err = find_runtime(None, Some(exe_dir.path()), Some(&path))
            .unwrap_err()
            .to_string();
        let beside = exe_dir.path().join(RUNTIME_NAME);
        let on_path = path_dir.path().join(RUNTIME_NAME);
        assert_eq!(
            err,
            format!(
                "no OCI runtime: looked for {}, {}; install berth-runtime there or pass --runtime PATH",
                beside.display(),
                on_path.display()
            )
        );
        let err = find_runtime(None, None, None).unwrap_err().to_string();
        assert!(
            err.contains("PATH (empty)") && err.contains("--runtime"),
            "{err}"
        );
    }

    #[test]
    fn a_given_runtime_is_a_path_or_a_name_on_path() {
        let dir = tempfile::tempdir().unwrap();
        let runc = install(dir.path(), "runc");
        assert_eq!(find_runtime(Some(&runc), None, None).unwrap(), runc);
        let found = find_runtime(Some(Path::new("runc")), None, Some(dir.path().as_os_str()));
        assert_eq!(found.unwrap(), runc);
        let missing = dir.path().join("crun");
        let err = find_runtime(Some(&missing), Some(dir.path()), None).unwrap_err();
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_agent_refuses_to_start_before_touching_its_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("agent");
        let opts = AgentOptions {
            data_dir: data_dir.clone(),
            controllers: vec!["127.0.0.1:1".to_string()],
            name: "n1".to_string(),
            advertise: "127.0.0.1".to_string(),
            labels: BTreeMap::new(),
            runtime: Some(dir.path().join("no-such-runtime")),
            runtime_root: dir.path().join("runtime"),
            insecure_registries: Vec::new(),
            cgroup_parent: "berth-test".to_string(),
            api_listen: "127.0.0.1:0".parse().unwrap(),
            shim: Vec::new(),
            netns_dir: dir.path().join("netns"),
            token: None,
            insecure_plaintext: false,
            secrets_dir: dir.path().join("secrets"),
            metrics_listen: None,
            image_gc: crate::image::GcPolicy::default(),
        };
        let err = run(opts).await.unwrap_err();
        assert!(matches!(err, DaemonError::RuntimeNotFound { .. }), "{err}");
        assert!(
            !data_dir.exists(),
            "the data dir was created before the check"
        );
    }
}
