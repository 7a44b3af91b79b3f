//! The seam between a task's worker and the host: every effect the worker has
//! on containers goes through [`ContainerRuntime`], so its state machine can be
//! tested against a fake (`fake.rs`) without root or real containers. The real
//! implementation is `OciRuntime` (oci.rs): a shim that runs the OCI
//! runtime's `create`, the runtime's command line for the rest, pidfds to
//! watch init.

use std::path::PathBuf;

use async_trait::async_trait;

use super::error::Result;

/// A container's init process: its host pid and its start time, which
/// guards against a reused pid (`None`: not known, any live process counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Init {
    pub pid: i32,
    pub start: Option<u64>,
}

/// Where one task's container lives on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerFiles {
    /// The container id (the task id).
    pub id: String,
    /// The OCI bundle (config.json).
    pub bundle: PathBuf,
    /// The task's state directory (FIFOs, pid and exit files).
    pub state_dir: PathBuf,
    /// The task's log directory.
    pub log_dir: PathBuf,
    /// The container's cgroup, relative to the hierarchy roots.
    pub cgroup: PathBuf,
}

/// How a container ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitInfo {
    /// The shell-style status (code, or 128 + signal); None if nobody saw it.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
}

/// What a task's worker does to containers. Calls for one container come
/// from its worker alone, in order; different containers' calls run
/// concurrently.
#[async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Creates the container from its bundle, with something that keeps
    /// draining its output into the log files; returns its init, not started.
    async fn create(&self, c: &ContainerFiles) -> Result<Init>;

    /// Starts the user process of the created container `id`.
    async fn start(&self, id: &str) -> Result<()>;

    /// Sends `signal` (a runtime signal name such as SIGTERM) to the container
    /// `id` whose init is `init`. Fine if it is gone already.
    async fn kill(&self, id: &str, init: Init, signal: &str) -> Result<()>;

    /// Returns once `init` has exited (at once if it has).
    async fn wait_exit(&self, init: Init);

    /// Called every few seconds while the container runs: makes sure its
    /// output is still drained (a new log shim if the old one died).
    fn keep_logging(&self, c: &ContainerFiles, init: Init) -> Result<()>;

    /// How the container ended; call after `wait_exit`, before `delete`.
    async fn exit_info(&self, c: &ContainerFiles) -> ExitInfo;

    /// Deletes the container (killing what still runs of it) once its output
    /// is drained; fine if it never existed or is gone.
    async fn delete(&self, c: &ContainerFiles) -> Result<()>;
}
