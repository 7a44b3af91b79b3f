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

/// What a raw syscall's return value says, as a probe's exit code: 0 for
/// success, else the errno.
pub fn outcome(rc: libc::c_long) -> i32 {
    if rc < 0 {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(255)
    } else {
        0
    }
}

/// Sets no_new_privs on the calling (child) process, as runtimes do before
/// they install a seccomp filter without CAP_SYS_ADMIN; false if it failed.
pub fn set_no_new_privs() -> bool {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 }
}
