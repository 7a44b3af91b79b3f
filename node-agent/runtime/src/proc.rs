//! Processes named by pid and start time, so that a reused pid is never
//! mistaken for the process meant: liveness, and a pidfd that becomes readable
//! when the process exits (it works for processes that are not our children,
//! such as a container's init after its creator exited). Used by the runtime's
//! commands and by berth-agent, which watches containers it did not fork.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Start time of `pid` in clock ticks after boot (field 22 of
/// /proc/PID/stat); `None` if no such process runs or it is a zombie.
pub fn start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // After ')' come fields 3.. ; starttime is field 22.
    fields.nth(22 - 4)?.parse().ok()
}

/// True while `pid` runs (not a zombie) and, if `start` is given, is the
/// process that started then.
pub fn alive(pid: i32, start: Option<u64>) -> bool {
    match (start_time(pid), start) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(now), Some(then)) => now == then,
    }
}

/// A pidfd of the process `pid` that started at `start`; `None` if it has
/// exited already (or the kernel has no pidfds). Checked again after the
/// open, which pins the process, so the fd never refers to a newer process
/// that reused the pid.
pub fn pidfd(pid: i32, start: Option<u64>) -> Option<OwnedFd> {
    if pid <= 0 {
        return None;
    }
    // SAFETY: pidfd_open with integer arguments; the fd is owned below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the syscall returned a fresh fd nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    alive(pid, start).then_some(fd)
}

/// Blocks until the process `pid` that started at `start` is gone, at most
/// `timeout`; true if it is gone.
pub fn wait_gone(pid: i32, start: Option<u64>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let Some(fd) = pidfd(pid, start) else {
        // Gone, or a kernel without pidfds (before 5.3): poll.
        while alive(pid, start) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        return !alive(pid, start);
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return !alive(pid, start);
        }
        let ms = left.as_millis().min(60_000) as u16;
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        if let Ok(n) = poll(&mut fds, PollTimeout::from(ms))
            && n > 0
        {
            return true;
        }
    }
}

/// How many threads this process has (from /proc/self/status; 0 if unreadable).
/// Forking a container from a multi-threaded process is unsound (a lock held by
/// another thread stays locked in the child forever), so the calls that fork
/// check it first.
pub fn own_threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_read() {
        let pid = std::process::id() as i32;
        let start = start_time(pid).expect("own stat");
        assert!(alive(pid, Some(start)));
        assert!(alive(pid, None));
        assert!(!alive(pid, Some(start + 1)));
        assert!(!alive(0, None));
    }

    #[test]
    fn threads_are_counted() {
        let before = own_threads();
        assert!(before >= 1);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        assert!(own_threads() > before);
        drop(tx);
        let _ = t.join();
    }

    #[test]
    fn an_exit_of_a_non_child_is_seen() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .expect("sleep");
        let pid = child.id() as i32;
        let start = start_time(pid);
        assert!(pidfd(pid, start).is_some());
        assert!(pidfd(pid, start.map(|s| s + 1)).is_none());
        // Reaped by another thread, as a process that is not ours would be.
        let reaper = std::thread::spawn(move || child.wait());
        assert!(wait_gone(pid, start, Duration::from_secs(5)));
        reaper.join().expect("reaper").expect("wait");
        assert!(!alive(pid, start));
    }
}
