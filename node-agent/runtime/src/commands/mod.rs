//! One function per subcommand; main.rs dispatches.

pub mod exec;
pub mod lifecycle;
pub mod query;

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::state::{self, StateError};

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
    #[error("unknown signal {0:?}")]
    BadSignal(String),
    #[error("container {id}: failed to {what}: {source}")]
    Sys {
        id: String,
        what: &'static str,
        source: nix::errno::Errno,
    },
    #[error("container {id}: {message}")]
    Exec { id: String, message: String },
    #[error("invalid --user {0:?}: expected UID or UID:GID")]
    BadUser(String),
    #[error("unknown format {0:?}: use table or json")]
    BadFormat(String),
}

/// Waits until the process (checked against its start time) is gone.
pub fn wait_gone(pid: i32, start: u64, timeout: Duration) -> bool {
    if !state::pid_alive(pid, start) {
        return true;
    }
    // SAFETY: pidfd_open with integer arguments; the fd is owned below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return !state::pid_alive(pid, start);
    }
    // SAFETY: the syscall returned a fresh fd.
    let fd: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) };
    // The pid may have been reused between the check and the open.
    if !state::pid_alive(pid, start) {
        return true;
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return !state::pid_alive(pid, start);
        }
        let ms = left.as_millis().min(60_000) as u16;
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => return true,
            _ => {}
        }
    }
}

/// `SIGTERM`, `TERM`, `15`, `kill` → the signal number.
pub fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal, CommandError> {
    use std::str::FromStr;
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n)
            .map_err(|_| CommandError::BadSignal(s.into()));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    nix::sys::signal::Signal::from_str(&name).map_err(|_| CommandError::BadSignal(s.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn signals_parse() {
        assert_eq!(parse_signal("SIGKILL").expect("kill"), Signal::SIGKILL);
        assert_eq!(parse_signal("term").expect("term"), Signal::SIGTERM);
        assert_eq!(parse_signal("9").expect("9"), Signal::SIGKILL);
        assert!(parse_signal("SIGNOPE").is_err());
    }
}
