//! Docker's default seccomp profile as the agent builds it for a task and
//! berth-runtime compiles it, installed in a forked child of this test that
//! then makes the real syscalls: what Docker blocks is blocked (keyctl,
//! unshare, mount), clone3 says ENOSYS, plain fork still works, and a
//! capability the service adds brings its syscalls back.

use berth_agent::supervisor::seccomp_profile;
use berth_runtime::seccomp::BpfProgram;
use berth_testhost::forked::{exit_code_in_child, outcome, set_no_new_privs};

fn programs(cap_add: &[&str]) -> Vec<BpfProgram> {
    let add: Vec<String> = cap_add.iter().map(|s| s.to_string()).collect();
    let caps = berth_proto::capabilities::effective(&add, &[]).expect("caps");
    let profile = seccomp_profile::for_service(None, &caps)
        .expect("convert")
        .expect("Docker's profile");
    berth_runtime::seccomp::compile(&profile).expect("berth-runtime compiles it")
}

/// `probe` under the filters, installed as the runtime does for a task.
fn under(programs: &[BpfProgram], probe: fn() -> i32) -> i32 {
    exit_code_in_child(|| {
        match set_no_new_privs() && berth_runtime::seccomp::install(programs).is_ok() {
            true => probe(),
            false => 202,
        }
    })
}

// SAFETY (every probe below): raw syscalls with integer or null arguments in
// the forked child, which exits right after.

fn keyctl() -> i32 {
    // KEYCTL_GET_KEYRING_ID of the session keyring, creating none.
    outcome(unsafe { libc::syscall(libc::SYS_keyctl, 0, -3i64, 0) })
}

fn unshare_user_ns() -> i32 {
    outcome(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) })
}

fn mount_tmpfs() -> i32 {
    outcome(unsafe {
        libc::syscall(
            libc::SYS_mount,
            c"none".as_ptr(),
            c"/".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            0,
        )
    })
}

fn clone3() -> i32 {
    outcome(unsafe { libc::syscall(libc::SYS_clone3, 0, 0) })
}

fn getpid() -> i32 {
    outcome(unsafe { libc::syscall(libc::SYS_getpid) })
}

fn personality_query() -> i32 {
    outcome(unsafe { libc::syscall(libc::SYS_personality, 0xffff_ffffu64) })
}

/// fork (clone without namespace flags) and the grandchild's exit code.
fn fork_and_wait() -> i32 {
    match unsafe { libc::fork() } {
        -1 => 100,
        0 => unsafe { libc::_exit(7) },
        pid => {
            let mut status = 0;
            if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
                return 99;
            }
            libc::WEXITSTATUS(status)
        }
    }
}

#[test]
fn dockers_profile_blocks_what_docker_blocks() {
    let default = programs(&[]);
    assert_eq!(under(&default, || 0), 0, "the profile installs");
    assert_eq!(under(&default, getpid), 0);
    assert_eq!(under(&default, personality_query), 0);
    assert_eq!(under(&default, fork_and_wait), 7, "a plain fork works");
    assert_eq!(under(&default, keyctl), libc::EPERM);
    assert_eq!(under(&default, unshare_user_ns), libc::EPERM);
    assert_eq!(under(&default, mount_tmpfs), libc::EPERM);
    // ENOSYS, so that libcs fall back to clone (which the profile masks).
    assert_eq!(under(&default, clone3), libc::ENOSYS);
    // Outside any profile keyctl and unshare work: the filter said no above.
    assert_eq!(exit_code_in_child(keyctl), 0);
    assert_eq!(exit_code_in_child(unshare_user_ns), 0);
}

#[test]
fn an_added_capability_brings_its_syscalls_back() {
    let admin = programs(&["SYS_ADMIN"]);
    assert_eq!(under(&admin, unshare_user_ns), 0);
    assert_eq!(under(&admin, fork_and_wait), 7);
    // Never in Docker's profile, whatever the capabilities.
    assert_eq!(under(&admin, keyctl), libc::EPERM);
}
