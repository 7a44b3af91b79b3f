//! The optional minimal init: PID 1 of the container forks the real process,
//! forwards the signals it gets to it, reaps every zombie, and exits with the
//! real process's status.

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use crate::process::Command;
use crate::process::setup::exit;

/// Never returns: either execs the command (child) or runs the init loop.
pub fn run(command: &Command) -> ! {
    let all = SigSet::all();
    let mut old = SigSet::empty();
    if sigprocmask(SigmaskHow::SIG_SETMASK, Some(&all), Some(&mut old)).is_err() {
        exit(1);
    }
    // SAFETY: this process is single-threaded.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
            let err = command.exec();
            eprintln!("berth-runtime init: {err}");
            exit(crate::process::exec_failure_code(&err))
        }
        Ok(ForkResult::Parent { child }) => supervise(child, &all),
        Err(e) => {
            eprintln!("berth-runtime init: fork: {e}");
            exit(1)
        }
    }
}

fn supervise(child: Pid, set: &SigSet) -> ! {
    loop {
        let Ok(sig) = set.wait() else { continue };
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        // Reap everything that has exited; stop when the main child is among them.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => exit(code),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => exit(128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}
