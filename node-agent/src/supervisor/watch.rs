//! Watching a container's init, which is not the agent's child (runc and the
//! shim parent it; after an agent restart nothing of ours does): a pidfd that
//! becomes readable when the process exits, guarded against pid reuse by the
//! process start time. How it ended comes from the runtime's `state`
//! (berth-runtime records it), else from the shim's `exit.json` (runc), with the
//! cgroup's OOM-kill counter for runc containers.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use super::launch;
use super::runtime::Runtime;

/// Start time of `pid` (clock ticks after boot), if it runs.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // Field 22 overall is the 20th after the name.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True while `pid` is the process that started at `start` and is not a zombie.
pub fn alive(pid: i32, start: Option<u64>) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let zombie = stat
        .rfind(')')
        .and_then(|i| stat[i + 2..].split_whitespace().next())
        .is_some_and(|s| s == "Z" || s == "X");
    !zombie && (start.is_none() || start_time(pid) == start)
}

/// Waits until the process `pid` that started at `start` has exited.
pub async fn wait_exit(pid: i32, start: Option<u64>) {
    // SAFETY: plain syscall; the fd is owned below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return; // gone already
    }
    // SAFETY: a fresh fd nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // Opened after the check could race with a reuse: check again now that the
    // pidfd pins the process.
    if !alive(pid, start) {
        return;
    }
    // SAFETY: an OwnedFd moved into the AsyncFd: open and unchanged while it lives.
    match unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) } {
        Ok(afd) => {
            let _ = afd.readable().await;
        }
        Err(_) => {
            while alive(pid, start) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// How a container ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitInfo {
    /// The shell-style status (code, or 128 + signal); None if nobody saw it.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
}

/// How long after init's exit its status may take to be recorded (by
/// berth-runtime's monitor or by the shim) on a loaded machine.
const RECORD_WAIT: Duration = Duration::from_secs(5);

/// Collects how the container `id` ended (call before deleting it).
pub async fn exit_info(runtime: &Runtime, id: &str, state_dir: &Path, cgroup: &Path) -> ExitInfo {
    let oom_cgroup = oom_kills(cgroup) > 0;
    let deadline = tokio::time::Instant::now() + RECORD_WAIT;
    loop {
        // berth-runtime: its monitor records init's status in the state.
        if let Ok(Some(state)) = runtime.state(id).await
            && let Some(e) = state.exit
        {
            return ExitInfo {
                code: e.code.or(e.signal.map(|s| 128 + s)),
                signal: e.signal,
                oom_killed: e.oom_killed || oom_cgroup,
            };
        }
        // runc: the shim, init's reaper, writes the status it got.
        if let Some(e) = launch::read_exit(state_dir) {
            return ExitInfo {
                code: e.code.or(e.signal.map(|s| 128 + s)),
                signal: e.signal,
                oom_killed: oom_cgroup,
            };
        }
        if tokio::time::Instant::now() >= deadline {
            return ExitInfo {
                code: None,
                signal: None,
                oom_killed: oom_cgroup,
            };
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// OOM kills recorded for the cgroup at `path` (relative to the hierarchy
/// root), in the v1 memory controller or the v2 unified hierarchy.
fn oom_kills(path: &Path) -> u64 {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let read = |file: &Path| std::fs::read_to_string(file).ok();
    let v1 = Path::new("/sys/fs/cgroup/memory")
        .join(rel)
        .join("memory.oom_control");
    let v2 = Path::new("/sys/fs/cgroup").join(rel).join("memory.events");
    read(&v1)
        .or_else(|| read(&v2))
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_exit_of_a_non_child_is_seen() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some());
        assert!(alive(me, start_time(me)));
        assert!(!alive(me, start_time(me).map(|t| t + 1)));
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let start = start_time(pid);
        let reaper = std::thread::spawn(move || child.wait());
        tokio::time::timeout(Duration::from_secs(5), wait_exit(pid, start))
            .await
            .unwrap();
        reaper.join().unwrap().unwrap();
        assert!(!alive(pid, start));
    }
}
