//! `berth-shim exec-wait PIDFILE RUNTIME ARGS...`: waits for a process
//! that `RUNTIME ... exec -d --pid-file PIDFILE` started and exits with its
//! status. runc takes a console socket on exec only with `--detach`; the
//! detached process is then nobody's child. This helper (single-threaded,
//! started by the agent for `berth exec -t`) is a child subreaper, so that
//! process is reparented to it when the runtime exits, and `waitpid` gives
//! its status. The same path serves berth-runtime.

use std::ffi::OsString;

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

/// The first argument that selects this helper in `berth-shim`.
pub(crate) const EXEC_WAIT: &str = "exec-wait";

/// The helper's status for its own failures (the runtime's are passed on).
const FAILED: i32 = 125;

/// Entry point: `args` are the arguments after `exec-wait`. Exits the
/// process with the status (the shim's entry maps codes to 0 and 1).
pub(crate) fn main_exec_wait(args: Vec<OsString>) -> ! {
    std::process::exit(exec_wait(args))
}

fn exec_wait(args: Vec<OsString>) -> i32 {
    let mut args = args.into_iter();
    let (Some(pid_file), Some(runtime)) = (args.next(), args.next()) else {
        eprintln!("berth exec-wait: usage: exec-wait PIDFILE RUNTIME ARGS...");
        return FAILED;
    };
    // SAFETY: prctl with integer arguments on this single-threaded process.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
    }
    let status = match std::process::Command::new(&runtime).args(args).status() {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "berth exec-wait: cannot run {}: {e}",
                runtime.to_string_lossy()
            );
            return FAILED;
        }
    };
    if !status.success() {
        // The runtime said why on stderr (ours); its status is the exec's.
        return shell_status(status);
    }
    let pid = match std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
    {
        Some(pid) => Pid::from_raw(pid),
        None => {
            eprintln!("berth exec-wait: no pid in {}", pid_file.to_string_lossy());
            return FAILED;
        }
    };
    let _ = std::fs::remove_file(&pid_file);
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => return code,
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => {
                return 128 + sig as i32;
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                eprintln!("berth exec-wait: process {pid} was not ours to wait for: {e}");
                return FAILED;
            }
        }
    }
}

fn shell_status(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or(status.signal().map(|s| 128 + s))
        .unwrap_or(FAILED)
}
