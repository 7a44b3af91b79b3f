//! Watching a container's init, which is not the agent's child (runc and the
//! shim parent it; after an agent restart nothing of ours does): berth-runtime's
//! pidfd, guarded against pid reuse by the process start time, made awaitable.
//! How it ended comes from the runtime's `state` (berth-runtime records it),
//! else from the shim's `exit.json` (runc), with the cgroup's OOM-kill counter
//! for runc containers.

use std::time::Duration;

use berth_runtime::{cgroups, proc};
use tokio::io::unix::AsyncFd;

use super::container_runtime::{ContainerFiles, ExitInfo, Init};
use super::launch;
use super::runtime::Runtime;

/// Waits until `init` has exited.
pub async fn wait_exit(init: Init) {
    // SAFETY: an OwnedFd moved into the AsyncFd: open and unchanged while it lives.
    if let Some(fd) = proc::pidfd(init.pid, init.start)
        && let Ok(afd) =
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
    {
        let _ = afd.readable().await;
        return;
    }
    // Gone already, or no pidfds (or no reactor for them): poll.
    while proc::alive(init.pid, init.start) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How long after init's exit its status may take to be recorded (by
/// berth-runtime's monitor or by the shim) on a loaded machine.
const RECORD_WAIT: Duration = Duration::from_secs(5);

/// Collects how the container `c` ended (call before deleting it).
pub async fn exit_info(runtime: &Runtime, c: &ContainerFiles) -> ExitInfo {
    let oom_cgroup = cgroups::oom_kills_at(&c.cgroup) > 0;
    let deadline = tokio::time::Instant::now() + RECORD_WAIT;
    loop {
        // berth-runtime: its monitor records init's status in the state.
        if let Ok(Some(state)) = runtime.state(&c.id).await
            && let Some(e) = state.exit
        {
            return ExitInfo {
                code: shell_code(e.code, e.signal),
                signal: e.signal,
                oom_killed: e.oom_killed || oom_cgroup,
            };
        }
        // runc: the shim, init's reaper, writes the status it got.
        if let Some(e) = launch::read_exit(&c.state_dir) {
            return ExitInfo {
                code: shell_code(e.code, e.signal),
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

/// The code, or 128 + the signal; None if neither is known.
fn shell_code(code: Option<i32>, signal: Option<i32>) -> Option<i32> {
    code.or(signal.map(|s| 128 + s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_exit_of_a_non_child_is_seen() {
        let me = std::process::id() as i32;
        assert!(proc::start_time(me).is_some());
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let init = Init {
            pid,
            start: proc::start_time(pid),
        };
        let reaper = std::thread::spawn(move || child.wait());
        tokio::time::timeout(Duration::from_secs(5), wait_exit(init))
            .await
            .unwrap();
        reaper.join().unwrap().unwrap();
        assert!(!proc::alive(pid, init.start));
    }
}
