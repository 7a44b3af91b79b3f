//! berth-init, the container's minimal init (`init/berth_init.rs`, built by
//! build.rs): a static executable of a few KB that the runtime carries in
//! its own binary and execs from a sealed memfd. A running container then
//! keeps a few pages for its PID 1 instead of a fork of the whole runtime.
//!
//! Why a memfd: the container's rootfs needs no file for it (any image, a
//! read-only rootfs, nothing to bind-mount or clean up), the memfd is made
//! before pivot_root and exec'd through its fd after it, and it is sealed, so
//! nothing in the container can alter the init's code (not even through
//! /proc/1/exe).

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction};

use crate::process::Command;

/// The executable, or empty when build.rs does not support the target.
static IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/berth-init"));

/// The memfd's name: the init's `comm` and /proc/PID/exe show it.
const NAME: &CStr = c"berth-init";

/// A sealed memfd holding berth-init, or why there is none. Call before
/// pivot_root and before the seccomp filter is installed; the fd is
/// close-on-exec.
pub fn load() -> Result<OwnedFd, Errno> {
    if IMAGE.is_empty() {
        return Err(Errno::ENOSYS);
    }
    // MFD_EXEC (Linux 6.3) keeps it executable where vm.memfd_noexec would
    // make memfds non-executable by default; older kernels refuse the flag.
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    let fd = match memfd_create(base | MFD_EXEC) {
        Err(Errno::EINVAL) => memfd_create(base)?,
        other => other?,
    };
    let mut written = 0;
    while written < IMAGE.len() {
        match nix::unistd::write(&fd, &IMAGE[written..]) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => written += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on an fd we own with integer arguments.
    Errno::result(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(fd)
}

const MFD_EXEC: libc::c_uint = 0x10;

/// Whether the container's seccomp profile lets `execveat` through, or at
/// worst fails it with an error (then the in-process init runs instead): not
/// when it would kill the process or trap, which would end the container.
pub fn seccomp_permits(profile: Option<&LinuxSeccomp>) -> bool {
    use LinuxSeccompAction::*;
    let Some(profile) = profile else {
        return true;
    };
    let fatal = |a: LinuxSeccompAction| {
        matches!(
            a,
            ScmpActKill | ScmpActKillThread | ScmpActKillProcess | ScmpActTrap | ScmpActNotify
        )
    };
    let rules = profile.syscalls().as_deref().unwrap_or_default();
    let naming: Vec<_> = rules
        .iter()
        .filter(|r| r.names().iter().any(|n| n == "execveat"))
        .collect();
    // A rule with conditions may or may not match: any fatal one is a risk.
    if naming.iter().any(|r| fatal(r.action())) {
        return false;
    }
    let unconditional = naming
        .iter()
        .any(|r| r.args().as_ref().is_none_or(|a| a.is_empty()));
    unconditional || !fatal(profile.default_action())
}

fn memfd_create(flags: libc::c_uint) -> Result<OwnedFd, Errno> {
    // SAFETY: a NUL-terminated name and integer flags.
    let fd = unsafe { libc::memfd_create(NAME.as_ptr(), flags) };
    Errno::result(fd)?;
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The arguments berth-init takes: `berth-init -- PROGRAM ARGV...`, PROGRAM
/// being the path `lookup` resolved and ARGV the process's args.
fn argv(command: &Command) -> Vec<CString> {
    let mut argv = vec![NAME.to_owned(), c"--".to_owned(), command.path.clone()];
    argv.extend(command.args.iter().cloned());
    argv
}

/// Replaces the process with berth-init from `image`, which runs `command`;
/// returns only on failure (the caller falls back to the in-process init).
pub fn exec(image: &OwnedFd, command: &Command) -> Errno {
    let argv = argv(command);
    let mut args: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    args.push(std::ptr::null());
    let mut env: Vec<*const libc::c_char> = command.env.iter().map(|e| e.as_ptr()).collect();
    env.push(std::ptr::null());
    // SAFETY: NUL-terminated strings in NULL-terminated arrays that outlive
    // the call; an empty path with AT_EMPTY_PATH execs the fd itself.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            image.as_raw_fd(),
            c"".as_ptr(),
            args.as_ptr(),
            env.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    Errno::last()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_is_a_static_elf() {
        assert!(
            IMAGE.starts_with(b"\x7fELF"),
            "berth-init is not an ELF file"
        );
        assert!(
            IMAGE.len() < 64 * 1024,
            "berth-init is {} bytes",
            IMAGE.len()
        );
    }

    #[test]
    fn loads_sealed() {
        let fd = load().expect("memfd");
        // SAFETY: fcntl on a live fd.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        assert_eq!(seals & libc::F_SEAL_WRITE, libc::F_SEAL_WRITE);
        assert_eq!(seals & libc::F_SEAL_SEAL, libc::F_SEAL_SEAL);
        assert!(nix::unistd::write(&fd, b"x").is_err());
        let len = nix::sys::stat::fstat(&fd).expect("fstat").st_size;
        assert_eq!(len as usize, IMAGE.len());
    }

    #[test]
    fn seccomp_that_would_kill_execveat_keeps_the_in_process_init() {
        use oci_spec::runtime::{LinuxSeccompBuilder, LinuxSyscallBuilder};
        let rule = |name: &str, action| {
            LinuxSyscallBuilder::default()
                .names(vec![name.to_string()])
                .action(action)
                .build()
                .expect("rule")
        };
        let profile = |default, rules| {
            LinuxSeccompBuilder::default()
                .default_action(default)
                .syscalls(rules)
                .build()
                .expect("profile")
        };
        use LinuxSeccompAction::*;
        assert!(seccomp_permits(None));
        // Docker's shape: errno by default, execveat allowed.
        let docker = profile(ScmpActErrno, vec![rule("execveat", ScmpActAllow)]);
        assert!(seccomp_permits(Some(&docker)));
        // Refused with an error: the fallback runs.
        assert!(seccomp_permits(Some(&profile(ScmpActErrno, vec![]))));
        // Killed: never try.
        let kill = profile(ScmpActKillProcess, vec![rule("execve", ScmpActAllow)]);
        assert!(!seccomp_permits(Some(&kill)));
        let listed = profile(ScmpActKillProcess, vec![rule("execveat", ScmpActAllow)]);
        assert!(seccomp_permits(Some(&listed)));
        let trapped = profile(ScmpActAllow, vec![rule("execveat", ScmpActTrap)]);
        assert!(!seccomp_permits(Some(&trapped)));
    }

    #[test]
    fn argv_puts_the_program_after_dashes() {
        let command = Command::new(
            std::path::Path::new("/bin/sleep"),
            &["sleep".into(), "5".into()],
            &["A=1".into()],
        )
        .expect("command");
        let argv: Vec<String> = argv(&command)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(argv, ["berth-init", "--", "/bin/sleep", "sleep", "5"]);
    }
}
