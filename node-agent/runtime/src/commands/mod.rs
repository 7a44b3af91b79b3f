//! The operations behind runc's subcommands, one function each, typed: they
//! return what the command line prints (the binary formats it).

pub mod exec;
pub mod lifecycle;
pub mod query;

use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Create(#[from] crate::container::CreateError),
    #[error("container {id}: {source}")]
    Cgroup {
        id: String,
        source: crate::cgroups::CgroupError,
    },
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is not in the created state")]
    NotCreated(String),
    #[error("container {0} is still running; stop it first or use --force")]
    StillRunning(String),
    #[error("container {0} is created, not stopped; kill it first or use --force")]
    NotStopped(String),
    #[error(transparent)]
    BadSignal(#[from] crate::signal::UnknownSignal),
    #[error("container {id}: failed to {what}: {source}")]
    Sys {
        id: String,
        what: &'static str,
        source: nix::errno::Errno,
    },
    #[error("container {id}: {message}")]
    Exec { id: String, message: String },
    /// A startContainer hook failed; the container was destroyed.
    #[error("container {id}: {message}")]
    Hook { id: String, message: String },
    /// The process could not be started; `code` is its shell status (126 or 127).
    #[error("container {id}: exec failed: {message}")]
    Start {
        id: String,
        message: String,
        code: i32,
    },
}

impl CommandError {
    /// The exit status the command line should end with for this error:
    /// the failed process's (126, 127) or 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            CommandError::Start { code, .. } => *code,
            _ => 1,
        }
    }
}
