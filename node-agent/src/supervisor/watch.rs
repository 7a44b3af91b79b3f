//! Watching a container's init, which is not the agent's child (the shim
//! parents it; after an agent restart nothing of ours does): berth-runtime's
//! pidfd, guarded against pid reuse by the process start time, made awaitable.
//! How it ended comes from the shim's `exit.json` (the shim reaps init), else
//! from the pidfd itself (a shim killed before init ended: whoever reaped
//! init, the kernel kept the status for the pidfd, from Linux 6.15), else from
//! the runtime's `state` (a container made before the shim reaped init, when
//! berth-runtime's monitor did and recorded it there), with the cgroup's
//! OOM-kill counter.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::time::Duration;

use berth_runtime::{cgroups, proc};
use tokio::io::unix::AsyncFd;

use super::container_runtime::{ContainerFiles, ExitInfo, Init};
use super::launch;
use super::runtime::Runtime;

/// The pidfds of the inits being watched, by pid: held from the first wait
/// until the exit is collected, so that the status can be read from the pidfd
/// when no shim was left to record it.
#[derive(Default)]
pub struct Pidfds(Mutex<HashMap<i32, (Init, OwnedFd)>>);

impl Pidfds {
    /// A copy of init's pidfd, opened on the first call; None once it is gone
    /// (or a kernel without pidfds).
    fn get(&self, init: Init) -> Option<OwnedFd> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((held, fd)) = map.get(&init.pid)
            && *held == init
        {
            return fd.try_clone().ok();
        }
        let fd = proc::pidfd(init.pid, init.start)?;
        let copy = fd.try_clone().ok();
        map.insert(init.pid, (init, fd));
        copy
    }

    /// Lets go of init's pidfd, returning it.
    fn take(&self, pid: i32) -> Option<OwnedFd> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&pid).map(|(_, fd)| fd)
    }
}

/// Waits until `init` has exited.
pub async fn wait_exit(pidfds: &Pidfds, init: Init) {
    // SAFETY: an OwnedFd moved into the AsyncFd: open and unchanged while it lives.
    if let Some(fd) = pidfds.get(init)
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

/// Lets go of the pidfd of the container `c`'s init, if one is held.
pub fn forget(pidfds: &Pidfds, c: &ContainerFiles) -> Option<OwnedFd> {
    pidfds.take(launch::read_init_pid(&c.state_dir)?)
}

/// How long after init's exit its status may take to be recorded (by
/// berth-runtime's monitor or by the shim) on a loaded machine.
const RECORD_WAIT: Duration = Duration::from_secs(5);

/// Collects how the container `c` ended (call before deleting it).
pub async fn exit_info(runtime: &Runtime, pidfds: &Pidfds, c: &ContainerFiles) -> ExitInfo {
    let oom_cgroup = cgroups::oom_kills_at(&c.cgroup) > 0;
    let pidfd = forget(pidfds, c);
    let deadline = tokio::time::Instant::now() + RECORD_WAIT;
    loop {
        // The shim, init's reaper, writes the status it got.
        if let Some(e) = launch::read_exit(&c.state_dir) {
            return ExitInfo {
                code: shell_code(e.code, e.signal),
                signal: e.signal,
                oom_killed: oom_cgroup,
            };
        }
        // A shim killed before init ended: the kernel's record in the pidfd.
        if let Some((code, signal)) = pidfd.as_ref().and_then(proc::reaped_status) {
            return ExitInfo {
                code: shell_code(code, signal),
                signal,
                oom_killed: oom_cgroup,
            };
        }
        // A container made with a berth-runtime monitor (before the shim
        // reaped init): the monitor records init's status in the state.
        if let Ok(Some(state)) = runtime.state(&c.id).await
            && let Some(e) = state.exit
        {
            return ExitInfo {
                code: shell_code(e.code, e.signal),
                signal: e.signal,
                oom_killed: e.oom_killed || oom_cgroup,
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
        tokio::time::timeout(Duration::from_secs(5), wait_exit(&Pidfds::default(), init))
            .await
            .unwrap();
        reaper.join().unwrap().unwrap();
        assert!(!proc::alive(pid, init.start));
    }
}
