//! The agent's task supervisor: runs the tasks the controller assigns to this
//! node as containers, reports their status, stops the ones no longer wanted,
//! keeps their logs, and re-adopts running containers after an agent restart.
//!
//! ```text
//! reconcile(tasks) ──► one worker per task (tokio task, task.rs):
//!   PREPARING: image get_or_pull ─► rootfs ─► bundle (bundle.rs)
//!   STARTING:  shim (detached; runs `runtime create`, owns stdout/stderr) ─► `runtime start`
//!   RUNNING:   wait on init's pidfd (watch.rs) | desired SHUTDOWN ─► stop.rs
//!   COMPLETE / FAILED / SHUTDOWN ─► `runtime delete`, rootfs released
//! ```
//!
//! A worker touches containers only through the `ContainerRuntime` seam
//! (container_runtime.rs; the real one is oci.rs) and images only through
//! `TaskImages` (images.rs), so its state machine is unit-tested against
//! fakes (fake.rs, worker_tests.rs) without root.
//!
//! On disk: `<data_dir>/containers/<task>/` (record, task, bundle, FIFOs, pid and
//! exit files; see `state.rs`) and `<data_dir>/logs/<task>/container.log*`.
//! Containers never depend on the agent process: dropping the `Supervisor` or
//! killing the agent leaves them running, and `Supervisor::open` adopts them.

mod attach;
mod attach_wire;
mod bundle;
mod container_runtime;
mod control;
mod drain;
mod error;
mod exec;
mod exec_wait;
#[cfg(test)]
mod fake;
mod files;
mod followers;
mod health;
mod images;
mod invocation;
mod launch;
mod logs;
mod mounts;
mod network;
mod oci;
pub mod process_settings;
mod runtime;
pub mod seccomp_profile;
pub mod shim;
mod shim_io;
mod sock_path;
mod state;
pub(crate) mod steps;
mod stop;
mod task;
mod user;
mod watch;
#[cfg(test)]
mod worker_tests;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::v1::{ConfigValue, SecretValue, Task, TaskState, TaskStatus, TaskStatusUpdate};
use tokio::sync::{mpsc, watch as tokio_watch};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{info, warn};

pub use bundle::{BundleInput, build_spec, hostname_of, merge_env};
pub use drain::{DRAIN_BOUND, Endpoints};
pub use error::{Result, SupervisorError};
pub use exec::{ExecRequest, IoInput, IoOutput};
pub use logs::{LogLimits, LogLine, LogStream};
pub use network::{TaskNet, TaskNetwork};
pub use shim::{SHIM_BINARY, ShimArgs, main_shim};
pub use user::{User, resolve_user};

use crate::image::{ImageStore, PullOptions};
use crate::volumes::VolumeStore;
use container_runtime::{ContainerFiles, ContainerRuntime};
use health::{ContainerProbe, HealthProbe};
use images::TaskImages;
use state::{Phase, StateDir};
use task::Desired;

/// How the supervisor runs containers.
#[derive(Clone)]
pub struct SupervisorConfig {
    /// The OCI runtime (`berth-runtime`, or `runc`).
    pub runtime: PathBuf,
    /// The runtime's `--root` (its container state; a tmpfs like /run is right).
    pub runtime_root: PathBuf,
    pub images: ImageStore,
    /// How images are pulled (insecure registries, credentials).
    pub pull: PullOptions,
    /// Top-level cgroup every container's cgroup goes below.
    pub cgroup_parent: String,
    /// Command that starts a shim: program and leading arguments, e.g.
    /// `[/usr/bin/berth-shim]` (the shim's own flags follow).
    pub shim: Vec<OsString>,
    pub log_limits: LogLimits,
    /// Grace between SIGTERM and SIGKILL when a task's spec sets none.
    pub default_stop_grace: Duration,
    /// Puts tasks on the overlay; `None`: loopback-only containers.
    pub network: Option<Arc<dyn TaskNetwork>>,
    /// Where each task's secrets tmpfs is mounted (`<dir>/<task id>`): a
    /// place outside the data dir (secrets are never on disk).
    pub secrets_root: PathBuf,
    /// This node's name, for task errors ("bind source /x does not exist on
    /// node n1"); empty: "on this node".
    pub node_name: String,
    /// The init `--init` tasks get (tini's static build).
    pub init_binary: PathBuf,
    /// Where task starts, failures and image pulls are counted.
    pub metrics: crate::metrics::AgentMetrics,
}

impl SupervisorConfig {
    /// berth-runtime from PATH, state in /run/berth/runtime, cgroups under
    /// `berth`, the shim `berth-shim` beside this executable, 10 MiB x 3
    /// log files.
    pub fn new(images: ImageStore) -> SupervisorConfig {
        let shim = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join(SHIM_BINARY)))
            .unwrap_or_else(|| PathBuf::from(SHIM_BINARY));
        SupervisorConfig {
            runtime: PathBuf::from("berth-runtime"),
            runtime_root: PathBuf::from("/run/berth/runtime"),
            images,
            pull: PullOptions::default(),
            cgroup_parent: "berth".to_string(),
            shim: vec![shim.into_os_string()],
            log_limits: LogLimits::default(),
            default_stop_grace: Duration::from_secs(10),
            network: None,
            secrets_root: PathBuf::from("/run/berth/secrets"),
            node_name: String::new(),
            init_binary: PathBuf::from(process_settings::DEFAULT_INIT_BINARY),
            metrics: crate::metrics::AgentMetrics::default(),
        }
    }
}

/// Status updates, in the order they happened.
pub type StatusUpdates = mpsc::UnboundedReceiver<TaskStatusUpdate>;
/// Log lines of one task.
pub type LogStreamOf = ReceiverStream<Result<LogLine>>;

/// What the supervisor keeps per task.
struct Entry {
    status: TaskStatus,
    desired: tokio_watch::Sender<Desired>,
    /// The worker is finished (the container is gone, the status final).
    done: bool,
    /// Its container while it runs: what `signal` and `stop_task` act on.
    container: Option<Running>,
    worker: Option<tokio::task::JoinHandle<()>>,
}

/// A running task's container, as its worker knows it.
#[derive(Clone, Debug)]
pub(crate) struct Running {
    pub container_id: String,
    pub init: container_runtime::Init,
    /// The stop signal the worker resolved (service, image, SIGTERM).
    pub stop_signal: String,
    /// The task's grace between the stop signal and SIGKILL.
    pub grace: Duration,
    /// Its service's name (the metrics' label).
    pub service: String,
}

/// What the workers drive, and the settings they need.
pub(crate) struct Drivers {
    pub runtime: Arc<dyn ContainerRuntime>,
    pub images: Arc<dyn TaskImages>,
    /// Puts tasks on the overlay; `None`: loopback-only containers.
    pub network: Option<Arc<dyn TaskNetwork>>,
    /// Top-level cgroup every container's cgroup goes below.
    pub cgroup_parent: String,
    /// Grace between SIGTERM and SIGKILL when a task's spec sets none.
    pub default_stop_grace: Duration,
    /// Where each task's secrets tmpfs is mounted.
    pub secrets_root: PathBuf,
    /// This node's name, for task errors.
    pub node_name: String,
    /// The init `--init` tasks get.
    pub init_binary: PathBuf,
    /// Runs the health checks of running tasks.
    pub health: Arc<dyn HealthProbe>,
    /// The OCI runtime whose `exec` runs `berth exec`, and the shim command
    /// (for its `exec-wait` helper); None: exec refused.
    pub exec_runtime: Option<(runtime::Runtime, Vec<OsString>)>,
    /// Where task starts and failures are counted.
    pub metrics: crate::metrics::AgentMetrics,
}

pub(crate) struct Inner {
    drivers: Drivers,
    /// Secret values and config data the node's tasks use (memory only).
    payloads: Mutex<files::Payloads>,
    state: StateDir,
    logs_dir: PathBuf,
    /// The node's named volumes (`<data dir>/volumes`).
    volumes: VolumeStore,
    tasks: Mutex<HashMap<String, Entry>>,
    updates: mpsc::UnboundedSender<TaskStatusUpdate>,
    /// What the current set says about endpoints: whether a stop drains first.
    endpoints: tokio_watch::Sender<drain::Endpoints>,
    /// The shared sequence every live node has applied (the leader's word).
    applied_everywhere: tokio_watch::Sender<u64>,
    /// Followers of tasks' logs (a forgotten task's stay until they are done).
    followers: followers::Followers,
}

/// The task supervisor of one agent. Dropping it stops its workers but leaves
/// every container running (a new `open` re-adopts them).
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl Supervisor {
    /// Opens the local state in `data_dir` and re-adopts the containers that
    /// still run (never restarting or killing them); containers that ended while
    /// no agent watched report their exit on the returned channel. Tasks left
    /// half-started are cleaned up and start afresh when `reconcile` asks.
    /// Call inside a tokio runtime.
    pub async fn open(
        data_dir: &Path,
        cfg: SupervisorConfig,
    ) -> Result<(Supervisor, StatusUpdates)> {
        std::fs::create_dir_all(&cfg.runtime_root)
            .map_err(|e| SupervisorError::io("create", &cfg.runtime_root, e))?;
        std::fs::create_dir_all(&cfg.secrets_root)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&cfg.secrets_root, std::fs::Permissions::from_mode(0o700))
            })
            .map_err(|e| SupervisorError::io("create", &cfg.secrets_root, e))?;
        berth_runtime::cgroups::prepare_parent(Path::new(&cfg.cgroup_parent)).map_err(
            |source| SupervisorError::CgroupParent {
                parent: cfg.cgroup_parent.clone(),
                source,
            },
        )?;
        let runtime = oci::OciRuntime {
            cli: runtime::Runtime {
                binary: cfg.runtime.clone(),
                root: cfg.runtime_root.clone(),
            },
            shim: launch::ShimLaunch {
                command: cfg.shim.clone(),
                runtime: cfg.runtime.clone(),
                runtime_root: cfg.runtime_root.clone(),
                limits: cfg.log_limits,
            },
            pidfds: watch::Pidfds::default(),
        };
        let drivers = Drivers {
            runtime: Arc::new(runtime),
            images: Arc::new(images::StoreImages {
                store: cfg.images,
                pull: cfg.pull,
                metrics: cfg.metrics.clone(),
            }),
            network: cfg.network,
            health: Arc::new(ContainerProbe {
                runtime: cfg.runtime.clone(),
                runtime_root: cfg.runtime_root.clone(),
            }),
            exec_runtime: Some((
                runtime::Runtime {
                    binary: cfg.runtime.clone(),
                    root: cfg.runtime_root.clone(),
                },
                cfg.shim.clone(),
            )),
            cgroup_parent: cfg.cgroup_parent,
            default_stop_grace: cfg.default_stop_grace,
            secrets_root: cfg.secrets_root,
            node_name: cfg.node_name,
            init_binary: cfg.init_binary,
            metrics: cfg.metrics,
        };
        Supervisor::open_with(data_dir, drivers).await
    }

    /// `open` with the runtime, images and network given (tests give fakes).
    pub(crate) async fn open_with(
        data_dir: &Path,
        drivers: Drivers,
    ) -> Result<(Supervisor, StatusUpdates)> {
        let state = StateDir::open(data_dir)?;
        let logs_dir = data_dir.join("logs");
        std::fs::create_dir_all(&logs_dir)
            .map_err(|e| SupervisorError::io("create", &logs_dir, e))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            drivers,
            payloads: Mutex::new(files::Payloads::default()),
            state,
            logs_dir,
            volumes: VolumeStore::new(data_dir),
            tasks: Mutex::new(HashMap::new()),
            updates: tx,
            endpoints: tokio_watch::channel(drain::Endpoints::default()).0,
            applied_everywhere: tokio_watch::channel(0).0,
            followers: followers::Followers::default(),
        });
        let (records, broken) = inner.state.load_all()?;
        for dir in broken {
            let Some(id) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            warn!(task = %id, "no readable record: removing what the task left");
            task::cleanup(&inner, &id).await;
            inner.forget(&id);
        }
        for record in records {
            let id = record.task_id.clone();
            match record.phase {
                Phase::Done => {
                    let (desired, _) = tokio_watch::channel(Desired::Stop { drain_to: None });
                    inner.lock().insert(
                        id,
                        Entry {
                            status: (&record.status).into(),
                            desired,
                            done: true,
                            container: None,
                            worker: None,
                        },
                    );
                }
                Phase::Preparing | Phase::Creating => {
                    info!(task = %id, "the agent stopped while the task was starting: starting afresh");
                    task::cleanup(&inner, &record.container_id).await;
                    inner.forget(&id);
                }
                Phase::Running => match inner.state.load_task(&id) {
                    Ok(task) => {
                        info!(task = %id, container = %record.container_id, pid = record.init_pid, "re-adopting");
                        Inner::spawn_worker(&inner, task, Some(record));
                    }
                    Err(e) => {
                        warn!(task = %id, error = %e, "cannot re-adopt without the task: removing it");
                        task::cleanup(&inner, &record.container_id).await;
                        inner.forget(&id);
                    }
                },
            }
        }
        Ok((Supervisor { inner }, rx))
    }

    /// Makes this node run exactly `tasks` (the complete desired set): tasks
    /// whose desired state is RUNNING (or earlier) run; those with a later
    /// desired state, and every task missing from the set, are stopped (SIGTERM,
    /// grace, SIGKILL) and their containers deleted. Tasks missing from the set
    /// are forgotten once stopped. Idempotent; returns at once, the work runs
    /// concurrently per task.
    pub fn reconcile(&self, tasks: Vec<Task>) {
        let inner = &self.inner;
        let endpoints = inner.endpoints.borrow().clone();
        let mut wanted = HashSet::new();
        let mut to_start = Vec::new();
        let mut to_forget = Vec::new();
        {
            let mut map = inner.lock();
            for task in tasks {
                wanted.insert(task.id.clone());
                let run = task.desired_state <= TaskState::Running as i32;
                match map.get_mut(&task.id) {
                    Some(e) if !run && !e.done && *e.desired.borrow() == Desired::Run => {
                        e.desired.send_replace(Desired::Stop {
                            drain_to: endpoints.drain_target(&task.service_id),
                        });
                    }
                    Some(_) => {}
                    None if run => to_start.push(task),
                    None => {}
                }
            }
            for (id, e) in map.iter_mut() {
                if wanted.contains(id) {
                    continue;
                }
                if e.done {
                    to_forget.push(id.clone());
                } else if *e.desired.borrow() != Desired::Remove {
                    e.desired.send_replace(Desired::Remove);
                }
            }
        }
        for id in to_forget {
            inner.forget(&id);
        }
        for task in to_start {
            Inner::spawn_worker(inner, task, None);
        }
    }

    /// What the current assignment set says about endpoints, and the shared
    /// sequence every live node has applied: a task stopped by the next
    /// `reconcile` first waits for its service's change to reach every node
    /// (see drain.rs). Call before `reconcile`.
    pub fn set_endpoints(&self, endpoints: Endpoints, applied_everywhere: u64) {
        self.inner.endpoints.send_replace(endpoints);
        self.inner
            .applied_everywhere
            .send_replace(applied_everywhere);
    }

    /// The secret values and config data of the node's current assignment
    /// set: what tasks that start from now on get. Call before `reconcile`.
    pub fn set_payloads(&self, secrets: Vec<SecretValue>, configs: Vec<ConfigValue>) {
        self.inner.payloads().replace(secrets, configs);
    }

    /// The current status of every task this node knows (for re-sending after
    /// a reconnect).
    pub fn statuses(&self) -> Vec<TaskStatusUpdate> {
        let mut out: Vec<TaskStatusUpdate> = self
            .inner
            .lock()
            .iter()
            .map(|(id, e)| TaskStatusUpdate {
                task_id: id.clone(),
                status: Some(e.status.clone()),
            })
            .collect();
        out.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        out
    }

    /// The lines of a task's container output: the last `tail` (all if None),
    /// then, with `follow`, new ones as they come until the container's output
    /// ends or the stream is dropped.
    pub async fn logs(
        &self,
        task_id: &str,
        follow: bool,
        tail: Option<usize>,
    ) -> Result<LogStreamOf> {
        if !self.inner.lock().contains_key(task_id) {
            return Err(SupervisorError::UnknownTask {
                task: task_id.to_string(),
            });
        }
        let dir = self.inner.logs_dir.join(task_id);
        let d = dir.clone();
        let (lines, cursor) = tokio::task::spawn_blocking(move || logs::read_all(&d, tail))
            .await
            .map_err(|e| SupervisorError::Task {
                task: task_id.to_string(),
                reason: format!("log reader failed: {e}"),
            })??;
        let (tx, rx) = mpsc::channel(256);
        let inner = self.inner.clone();
        let task = task_id.to_string();
        if follow {
            inner.followers.start(&task);
        }
        tokio::spawn(async move {
            let mut sent = true;
            for l in lines {
                if tx.send(Ok(l)).await.is_err() {
                    sent = false;
                    break;
                }
            }
            if follow {
                if sent {
                    logs::follow(dir.clone(), cursor, tx).await;
                }
                if inner.followers.end(&task) {
                    inner.remove_logs(&task);
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }

    /// `berth exec`: runs `req` in the running task `task_id`'s container
    /// through the runtime's `exec`. Returns once the process runs (or with
    /// why it cannot); `out` then gets its output and, last, its exit status.
    pub async fn exec(
        &self,
        task_id: &str,
        req: ExecRequest,
        input: mpsc::Receiver<IoInput>,
        out: mpsc::Sender<IoOutput>,
    ) -> Result<()> {
        self.require_running(task_id)?;
        let files = self.inner.files(task_id);
        let Some((runtime, shim)) = &self.inner.drivers.exec_runtime else {
            return Err(SupervisorError::Task {
                task: task_id.to_string(),
                reason: "this supervisor has no runtime to exec with".into(),
            });
        };
        let rootfs = bundle_rootfs(&files.bundle).ok_or_else(|| SupervisorError::Task {
            task: task_id.to_string(),
            reason: format!("no rootfs in {}", files.bundle.display()),
        })?;
        let target = exec::ExecTarget {
            runtime: runtime.binary.clone(),
            runtime_root: runtime.root.clone(),
            shim: shim.clone(),
            container_id: files.id.clone(),
            rootfs,
            scratch: files.state_dir.clone(),
        };
        exec::start(target, req, input, out).await
    }

    /// `berth attach`: connects to the running task `task_id`'s own process
    /// through its shim. Returns whether the task runs on a terminal; `out`
    /// gets its output from now on and, once it ended, its exit status.
    /// `stdin`: pass input on (to a task with open_stdin or tty).
    pub async fn attach(
        &self,
        task_id: &str,
        stdin: bool,
        size: Option<(u16, u16)>,
        input: mpsc::Receiver<IoInput>,
        out: mpsc::Sender<IoOutput>,
    ) -> Result<bool> {
        self.require_running(task_id)?;
        let files = self.inner.files(task_id);
        let (tty, open_stdin) = shim_io::bundle_stdio(&files.bundle);
        // As Docker: stdin goes nowhere for a task without a terminal or an
        // open stdin.
        let stdin = stdin && (tty || open_stdin);
        let conn = attach::connect(task_id, &files.state_dir).await?;
        let inner = self.inner.clone();
        let id = task_id.to_string();
        tokio::spawn(async move {
            attach::run(conn, stdin, size, input, out.clone()).await;
            match inner.final_exit_code(&id).await {
                Some(code) => {
                    let _ = out.send(IoOutput::Exit(code)).await;
                }
                None => {
                    let text = format!("task {id} ended; its exit status is not known\n");
                    let _ = out.send(IoOutput::Stderr(text.into_bytes())).await;
                }
            }
        });
        Ok(tty)
    }

    /// Ok if the task runs here now.
    fn require_running(&self, task_id: &str) -> Result<()> {
        let map = self.inner.lock();
        let Some(e) = map.get(task_id) else {
            return Err(SupervisorError::UnknownTask {
                task: task_id.to_string(),
            });
        };
        if e.done || e.status.state != TaskState::Running as i32 {
            let state = TaskState::try_from(e.status.state)
                .map(|s| {
                    s.as_str_name()
                        .trim_start_matches("TASK_STATE_")
                        .to_lowercase()
                })
                .unwrap_or_else(|_| "unknown".into());
            return Err(SupervisorError::NotRunning {
                task: task_id.to_string(),
                state,
            });
        }
        Ok(())
    }

    /// The node's named volumes.
    /// The tasks whose container runs now (what per-task metrics read).
    pub fn running_tasks(&self) -> Vec<crate::metrics::RunningTask> {
        let tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks
            .iter()
            .filter_map(|(id, entry)| {
                let running = entry.container.as_ref()?;
                Some(crate::metrics::RunningTask {
                    task_id: id.clone(),
                    service: running.service.clone(),
                    container_id: running.container_id.clone(),
                })
            })
            .collect()
    }

    /// The cgroup every container's cgroup goes below.
    pub fn cgroup_parent(&self) -> &str {
        &self.inner.drivers.cgroup_parent
    }

    pub fn volumes(&self) -> &VolumeStore {
        &self.inner.volumes
    }

    /// The tasks of this node, not finished, whose spec mounts volume `name`.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        let ids: Vec<String> = self
            .inner
            .lock()
            .iter()
            .filter(|(_, e)| !e.done)
            .map(|(id, _)| id.clone())
            .collect();
        let mut users: Vec<String> = ids
            .into_iter()
            .filter(|id| {
                self.inner.state.load_task(id).is_ok_and(|t| {
                    t.spec
                        .as_ref()
                        .is_some_and(|s| berth_proto::mounts::volume_names(s).contains(name))
                })
            })
            .collect();
        users.sort();
        users
    }

    /// The directory of a task's log files.
    pub fn log_dir(&self, task_id: &str) -> PathBuf {
        self.inner.logs_dir.join(task_id)
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for e in self.inner.lock().values_mut() {
            if let Some(w) = e.worker.take() {
                w.abort();
            }
        }
    }
}

impl Inner {
    /// Where the container of task `container_id` lives on the host.
    fn files(&self, container_id: &str) -> ContainerFiles {
        let state_dir = self.state.task_dir(container_id);
        ContainerFiles {
            id: container_id.to_string(),
            bundle: state_dir.join("bundle"),
            state_dir,
            log_dir: self.logs_dir.join(container_id),
            cgroup: Path::new(self.drivers.cgroup_parent.trim_matches('/')).join(container_id),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn payloads(&self) -> std::sync::MutexGuard<'_, files::Payloads> {
        self.payloads.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn_worker(inner: &Arc<Inner>, task: Task, adopt: Option<state::Record>) {
        let (desired, rx) = tokio_watch::channel(Desired::Run);
        let id = task.id.clone();
        let status = adopt
            .as_ref()
            .map(|r| TaskStatus::from(&r.status))
            .unwrap_or_else(|| TaskStatus {
                state: TaskState::Assigned as i32,
                timestamp_ms: now_ms(),
                ..TaskStatus::default()
            });
        let mut map = inner.lock();
        map.insert(
            id.clone(),
            Entry {
                status,
                desired,
                done: false,
                container: None,
                worker: None,
            },
        );
        let worker = tokio::spawn(task::run(inner.clone(), task, rx, adopt));
        if let Some(e) = map.get_mut(&id) {
            e.worker = Some(worker);
        }
    }

    /// Records and sends a task's new status.
    fn report(&self, task_id: &str, status: TaskStatus) {
        if let Some(e) = self.lock().get_mut(task_id) {
            e.status = status.clone();
        }
        let _ = self.updates.send(TaskStatusUpdate {
            task_id: task_id.to_string(),
            status: Some(status),
        });
    }

    /// Marks a worker finished with its final status (sent after the entry is
    /// done, so a `reconcile` that sees the status sees a finished task); true
    /// if the task is to be forgotten.
    fn finish(&self, task_id: &str, status: Option<TaskStatus>) -> bool {
        let forget = {
            let mut map = self.lock();
            match map.get_mut(task_id) {
                Some(e) => {
                    e.done = true;
                    e.container = None;
                    e.worker = None;
                    if let Some(s) = &status {
                        e.status = s.clone();
                    }
                    *e.desired.borrow() == Desired::Remove
                }
                None => true,
            }
        };
        if let Some(status) = status {
            let _ = self.updates.send(TaskStatusUpdate {
                task_id: task_id.to_string(),
                status: Some(status),
            });
        }
        forget
    }

    /// The exit status of a task whose container ended, once its worker
    /// reported it (at most `FINAL_STATUS_WAIT`); None if it never did.
    async fn final_exit_code(&self, task_id: &str) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + FINAL_STATUS_WAIT;
        loop {
            {
                let map = self.lock();
                let status = &map.get(task_id)?.status;
                if status.state > TaskState::Running as i32 {
                    return status.exit_code;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Drops everything of a finished task: entry, state and logs.
    fn forget(&self, task_id: &str) {
        self.lock().remove(task_id);
        if let Err(e) = self.state.remove(task_id) {
            warn!(task = task_id, error = %e, "failed to remove the task's state");
        }
        if self.followers.forget(task_id) {
            self.remove_logs(task_id);
        }
    }

    fn remove_logs(&self, task_id: &str) {
        let logs = self.logs_dir.join(task_id);
        if let Err(e) = std::fs::remove_dir_all(&logs)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(task = task_id, error = %e, "failed to remove the task's logs");
        }
    }

    /// The worker's word on its container: running (Some) or not any more.
    pub(crate) fn set_running(&self, task_id: &str, container: Option<Running>) {
        if let Some(e) = self.lock().get_mut(task_id) {
            e.container = container;
        }
    }
}

/// How long an attach waits for a task's worker to report how it ended.
const FINAL_STATUS_WAIT: Duration = Duration::from_secs(30);

/// The rootfs a bundle's config.json names.
fn bundle_rootfs(bundle: &Path) -> Option<PathBuf> {
    let text = std::fs::read(bundle.join("config.json")).ok()?;
    let spec: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let root = PathBuf::from(spec["root"]["path"].as_str()?);
    Some(if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    })
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
