//! The container process's attributes: user and groups, rlimits, umask,
//! oom_score_adj, no_new_privs, the executable's lookup, and the final exec.

pub mod setup;

use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::resource::{Resource, setrlimit};
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType, Process};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("failed to set rlimit {name}: {source}")]
    Rlimit { name: String, source: Errno },
    #[error("failed to set user {uid}:{gid}: {source}")]
    User { uid: u32, gid: u32, source: Errno },
    #[error("failed to set additional groups {gids:?}: {source}")]
    Groups { gids: Vec<u32>, source: Errno },
    #[error("failed to write oom_score_adj {value}: {source}")]
    OomScore { value: i32, source: std::io::Error },
    #[error("failed to set no_new_privs: {0}")]
    NoNewPrivs(Errno),
    #[error("executable file {0:?} not found in $PATH")]
    NotFound(String),
    // The wording of these two is what the agent maps to Docker's 127 and
    // 126 (`supervisor/invocation.rs`): keep "executable", "not found",
    // "permission denied" and "is a directory" in them.
    #[error("executable file {0:?} not found: no such file or directory")]
    Missing(String),
    #[error("executable file {path:?} cannot be run: {why}")]
    NotExecutable { path: String, why: &'static str },
    #[error("cannot change to working directory {}: {source}", path.display())]
    Cwd { path: PathBuf, source: Errno },
    #[error("argument or environment holds a NUL byte")]
    Nul,
    #[error("failed to exec {}: {source}", path.display())]
    Exec { path: PathBuf, source: Errno },
}

type Result<T> = std::result::Result<T, ProcessError>;

fn resource(t: PosixRlimitType) -> Option<Resource> {
    Some(match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

pub fn set_rlimits(limits: &[PosixRlimit]) -> Result<()> {
    for l in limits {
        if let Some(r) = resource(l.typ()) {
            setrlimit(r, l.soft(), l.hard()).map_err(|source| ProcessError::Rlimit {
                name: format!("{:?}", l.typ()),
                source,
            })?;
        }
    }
    Ok(())
}

pub fn set_oom_score_adj(value: Option<i32>) -> Result<()> {
    if let Some(value) = value {
        std::fs::write("/proc/self/oom_score_adj", value.to_string())
            .map_err(|source| ProcessError::OomScore { value, source })?;
    }
    Ok(())
}

pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    Errno::result(rc)
        .map(drop)
        .map_err(ProcessError::NoNewPrivs)
}

/// Runtime code inside a container is not dumpable: container processes cannot
/// ptrace it or open its /proc entries (exe, mem, fds). execve of the user's
/// program makes the new image dumpable again as usual.
pub fn set_not_dumpable() {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

pub fn set_keep_caps(on: bool) {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(on), 0, 0, 0);
    }
}

/// Sets groups, gid and uid (keep-caps must be on to keep the permitted set).
pub fn set_user(uid: u32, gid: u32, additional: &[u32]) -> Result<()> {
    let gids: Vec<Gid> = additional.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&gids).map_err(|source| ProcessError::Groups {
        gids: additional.to_vec(),
        source,
    })?;
    let err = |source| ProcessError::User { uid, gid, source };
    setresgid(Gid::from_raw(gid), Gid::from_raw(gid), Gid::from_raw(gid)).map_err(err)?;
    setresuid(Uid::from_raw(uid), Uid::from_raw(uid), Uid::from_raw(uid)).map_err(err)
}

/// The value of PATH in `env`, or the usual default.
fn path_var(env: &[String]) -> &str {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

/// Finds `arg0` as execve would after a PATH search (call inside the
/// container, in its working directory). A path is checked as runc's
/// `exec.LookPath` checks it, so a missing or unrunnable program fails the
/// create, not the start.
pub fn lookup(arg0: &str, env: &[String]) -> Result<PathBuf> {
    if arg0.contains('/') {
        return check_path(arg0);
    }
    for dir in path_var(env).split(':') {
        let candidate = Path::new(if dir.is_empty() { "." } else { dir }).join(arg0);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(ProcessError::NotFound(arg0.to_string()))
}

fn check_path(arg0: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = PathBuf::from(arg0);
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(ProcessError::NotExecutable {
                path: arg0.to_string(),
                why: "permission denied",
            })
        }
        Err(_) => Err(ProcessError::Missing(arg0.to_string())),
        Ok(m) if m.is_dir() => Err(ProcessError::NotExecutable {
            path: arg0.to_string(),
            why: "is a directory",
        }),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err(ProcessError::NotExecutable {
            path: arg0.to_string(),
            why: "permission denied",
        }),
        Ok(_) => Ok(path),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Everything execve needs, built before the point of no return.
pub struct Command {
    pub path: CString,
    pub args: Vec<CString>,
    pub env: Vec<CString>,
}

impl Command {
    pub fn new(path: &Path, args: &[String], env: &[String]) -> Result<Command> {
        let c = |s: &str| CString::new(s).map_err(|_| ProcessError::Nul);
        Ok(Command {
            path: c(&path.to_string_lossy())?,
            args: args.iter().map(|a| c(a)).collect::<Result<_>>()?,
            env: env.iter().map(|e| c(e)).collect::<Result<_>>()?,
        })
    }

    /// Replaces the process; returns only on failure.
    pub fn exec(&self) -> ProcessError {
        match nix::unistd::execve(&self.path, &self.args, &self.env) {
            Err(source) => ProcessError::Exec {
                path: PathBuf::from(self.path.to_string_lossy().into_owned()),
                source,
            },
            Ok(never) => match never {},
        }
    }
}

/// The shell's code for an exec that failed: 126 when the file is there but
/// cannot be run, 127 when it is not (as sh and Docker say).
pub fn exec_failure_code(err: &ProcessError) -> i32 {
    match err {
        ProcessError::Exec {
            source: Errno::EACCES | Errno::ENOEXEC | Errno::EISDIR,
            ..
        } => 126,
        _ => 127,
    }
}

/// The process's env with the spec's defaults (HOME is added when missing).
pub fn environment(process: &Process, extra: &[String]) -> Vec<String> {
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    for e in extra {
        let key = e.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push("HOME=/".to_string());
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_uses_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        let found = lookup("sh", &env).expect("sh");
        assert!(found.ends_with("sh"));
        assert!(matches!(
            lookup("no-such-binary-xyz", &env),
            Err(ProcessError::NotFound(_))
        ));
        assert!(matches!(
            lookup("/x/y", &env),
            Err(ProcessError::Missing(_))
        ));
        assert!(lookup("/bin/sh", &env).is_ok());
        assert!(matches!(
            lookup("/etc", &env),
            Err(ProcessError::NotExecutable {
                why: "is a directory",
                ..
            })
        ));
        let plain = std::env::temp_dir().join(format!("berth-lookup-{}", std::process::id()));
        std::fs::write(&plain, b"not a program").expect("write");
        let found = lookup(&plain.to_string_lossy(), &env);
        let _ = std::fs::remove_file(&plain);
        assert!(matches!(
            found,
            Err(ProcessError::NotExecutable {
                why: "permission denied",
                ..
            })
        ));
    }

    #[test]
    fn env_overrides() {
        let mut p = Process::default();
        p.set_env(Some(vec!["A=1".into(), "B=2".into()]));
        let env = environment(&p, &["A=3".into()]);
        assert_eq!(env, vec!["B=2", "A=3", "HOME=/"]);
    }
}
