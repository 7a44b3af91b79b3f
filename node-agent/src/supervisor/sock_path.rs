//! Unix socket paths that fit: a socket's path must be shorter than 108
//! bytes, and a task's state directory can be longer than that. A directory
//! held open as an O_PATH fd is reachable as `/proc/PID/fd/N/`, a short path
//! that this process and its children (the runtime) can bind and connect to.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// A directory held open for short socket paths into it.
pub(crate) struct ShortDir {
    fd: OwnedFd,
}

impl ShortDir {
    pub(crate) fn open(dir: &Path) -> std::io::Result<ShortDir> {
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(ShortDir { fd })
    }

    /// `name` in the directory, valid while this lives.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}/{name}",
            std::process::id(),
            self.fd.as_raw_fd()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_in_a_deep_directory_is_reachable() {
        let top = tempfile::tempdir().unwrap();
        let deep = top.path().join("d".repeat(120));
        std::fs::create_dir(&deep).unwrap();
        let dir = ShortDir::open(&deep).unwrap();
        let path = dir.path("s.sock");
        assert!(path.as_os_str().len() < 100);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(deep.join("s.sock").exists());
        let _client = std::os::unix::net::UnixStream::connect(dir.path("s.sock")).unwrap();
        listener.accept().unwrap();
    }
}
