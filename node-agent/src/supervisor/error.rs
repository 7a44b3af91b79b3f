//! The supervisor's error type.

use std::path::PathBuf;

pub type Result<T, E = SupervisorError> = std::result::Result<T, E>;

/// What can go wrong while supervising tasks, with the task, container or file
/// it concerns.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt supervisor state in {}: {reason}", path.display())]
    CorruptState { path: PathBuf, reason: String },
    #[error("task {task}: {reason}")]
    Task { task: String, reason: String },
    #[error("bundle of container {container}: {reason}")]
    Bundle { container: String, reason: String },
    #[error("runtime {} {command} of container {container}: {reason}", runtime.display())]
    Runtime {
        runtime: PathBuf,
        command: &'static str,
        container: String,
        reason: String,
    },
    #[error("shim of container {container}: {reason}")]
    Shim { container: String, reason: String },
    #[error("cgroup parent {parent}: {source}")]
    CgroupParent {
        parent: String,
        #[source]
        source: berth_runtime::cgroups::CgroupError,
    },
    #[error("no task {task} on this node")]
    UnknownTask { task: String },
    #[error("task {task} is not running: it is {state}")]
    NotRunning { task: String, state: String },
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
}

impl SupervisorError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SupervisorError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
