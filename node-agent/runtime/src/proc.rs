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

/// `struct pidfd_info` of linux/pidfd.h, as far as its first size
/// (`PIDFD_INFO_SIZE_VER0`, 64 bytes, which holds `exit_code`).
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    ids: [u32; 11],
    exit_code: i32,
}

/// `PIDFD_INFO_EXIT`: ask for (and, in the answer, have) the exit status.
const PIDFD_INFO_EXIT: u64 = 1 << 3;
/// `PIDFD_GET_INFO`: `_IOWR(0xFF, 11, struct pidfd_info)` for the 64 bytes.
const PIDFD_GET_INFO: libc::c_ulong = (3 << 30) | (64 << 16) | (0xFF << 8) | 11;

/// How a process ended, from a pidfd opened while it lived: its exit code,
/// or the signal that killed it. It works for a process that is not our
/// child, once its parent (whoever that is) has reaped it. None while it
/// runs or is not reaped yet, and on kernels before 6.15 (no
/// `PIDFD_INFO_EXIT`).
pub fn reaped_status(pidfd: &impl AsFd) -> Option<(Option<i32>, Option<i32>)> {
    use std::os::fd::AsRawFd;
    let mut info = PidfdInfo {
        mask: PIDFD_INFO_EXIT,
        ..PidfdInfo::default()
    };
    // SAFETY: the ioctl writes at most the 64 bytes its number names into `info`.
    let rc = unsafe {
        libc::ioctl(
            pidfd.as_fd().as_raw_fd(),
            PIDFD_GET_INFO,
            &mut info as *mut PidfdInfo,
        )
    };
    if rc != 0 || info.mask & PIDFD_INFO_EXIT == 0 {
        return None;
    }
    // A wait(2) status.
    let status = info.exit_code;
    Some(if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (Some(libc::WEXITSTATUS(status)), None)
    })
}

/// True on kernels whose pidfds keep the exit status (Linux 6.15 and later),
/// which [`reaped_status`] needs.
pub fn pidfds_keep_exit_status() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']);
    let mut next = || {
        parts
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    };
    (next(), next()) >= (6, 15)
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

    #[test]
    fn the_status_of_a_reaped_process_is_read_from_its_pidfd() {
        for (script, want) in [
            ("exit 7", (Some(7), None)),
            ("kill -9 $$", (None, Some(libc::SIGKILL))),
        ] {
            let mut child = std::process::Command::new("sh")
                .args(["-c", &format!("read _; {script}")])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("sh");
            let pid = child.id() as i32;
            let fd = pidfd(pid, start_time(pid)).expect("pidfd");
            assert_eq!(reaped_status(&fd), None, "still running");
            drop(child.stdin.take());
            child.wait().expect("wait");
            if pidfds_keep_exit_status() {
                assert_eq!(reaped_status(&fd), Some(want), "{script}");
            } else {
                assert_eq!(reaped_status(&fd), None);
            }
        }
    }
}
