//! A probe run in a forked child of the test process: for state a process can
//! never undo (a seccomp filter, dropped capabilities), so the test runner
//! itself stays untouched.

/// Forks, runs `probe` in the child and exits with what it returns (0-255);
/// returns that code, or 128 + the signal that killed the child. The child
/// must only make syscalls (the test process has other threads, whose locks
/// a forked child must not wait for).
pub fn exit_code_in_child(probe: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child runs `probe`, which only makes syscalls, and _exits.
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            let code = probe();
            // SAFETY: ends the child without running the parent's atexit work.
            unsafe { libc::_exit(code) }
        }
        pid => {
            let mut status = 0;
            // SAFETY: waits for our own child.
            if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
                panic!("waitpid: {}", std::io::Error::last_os_error());
            }
            if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            }
        }
    }
}

/// The errno of the last failed call, for a probe's exit code.
pub fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(255)
}
