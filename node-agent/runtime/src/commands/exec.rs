//! exec: a further process in a running container. The runtime joins the
//! container's namespaces (the pid one for its child), forks, and the child joins
//! the cgroup, takes the container process's attributes and execs.
//!
//! Without a terminal the process inherits the caller's stdin, stdout and
//! stderr. With `tty` it runs on a new PTY whose master goes to the console
//! socket (see [`crate::console`]). The exit status is the process's; a
//! command that is not found exits 127 and one that cannot be invoked 126,
//! with the reason on stderr, as runc and Docker report them.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::Mode;
use nix::unistd::{ForkResult, Pid, fork};
use oci_spec::runtime::Spec;

use super::CommandError;
use crate::cgroups::Cgroup;
use crate::process::ProcessError;
use crate::process::setup::{SetupError, exit, prepare_process};
use crate::state::{Dir, Status};

const NAMESPACES: &[&str] = &["cgroup", "ipc", "uts", "net", "pid", "mnt"];

/// The shell's status for a command that is found but cannot be run.
pub const CANNOT_INVOKE: i32 = 126;
/// The shell's status for a command that is not found.
pub const NOT_FOUND: i32 = 127;

/// Writes `pid` to `name` in `dir` (atomically: a temporary, then a rename).
fn write_pid_file(dir: &OwnedFd, name: &str, pid: i32) -> nix::Result<()> {
    let tmp = format!("{name}.berth-tmp");
    let fd = nix::fcntl::openat(
        dir,
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )?;
    nix::unistd::write(&fd, pid.to_string().as_bytes())?;
    nix::fcntl::renameat(dir, tmp.as_str(), dir, name)
}

/// 127 when the command does not exist, 126 when it cannot be run.
fn start_failure_code(err: &ProcessError) -> i32 {
    match err {
        ProcessError::NotFound(_)
        | ProcessError::Exec {
            source: nix::errno::Errno::ENOENT,
            ..
        } => NOT_FOUND,
        _ => CANNOT_INVOKE,
    }
}

/// A further process to run in a running container: what `exec` takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecConfig {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Extra environment variables (KEY=VALUE), after the container's.
    pub env: Vec<String>,
    /// Working directory inside the container; the container process's if None.
    pub cwd: Option<String>,
    /// (uid, gid) to run as; the container process's if None.
    pub user: Option<(u32, u32)>,
    /// Run on a new terminal whose master goes to `console_socket`.
    pub tty: bool,
    /// runc's `--console-socket` (required with `tty`).
    pub console_socket: Option<PathBuf>,
    /// Return once the process runs instead of waiting for it (its status is
    /// then its parent's to collect: a subreaper above the caller).
    pub detach: bool,
    /// Where to write the process's host pid once it runs.
    pub pid_file: Option<PathBuf>,
}

/// Runs `config`'s command in the running container `id`, waits for it and
/// returns its exit status for the shell. Forks: call it from a
/// single-threaded process (it refuses to run in any other).
pub fn exec(root: &Path, id: &str, config: &ExecConfig) -> Result<i32, CommandError> {
    let ExecConfig {
        command,
        env,
        cwd,
        user,
        tty,
        console_socket,
        detach,
        pid_file,
    } = config;
    let user = *user;
    let threads = crate::proc::own_threads();
    if threads > 1 {
        return Err(CommandError::Exec {
            id: id.into(),
            message: format!(
                "not run from a process with {threads} threads: exec forks, which only a \
                 single-threaded process may do"
            ),
        });
    }
    let console = match (console_socket, tty) {
        (Some(path), true) => {
            Some(
                crate::console::connect(path).map_err(|e| CommandError::Exec {
                    id: id.into(),
                    message: e.to_string(),
                })?,
            )
        }
        (None, false) => None,
        (None, true) => {
            return Err(CommandError::Exec {
                id: id.into(),
                message: "--tty needs --console-socket to receive the terminal's master".into(),
            });
        }
        (Some(_), false) => {
            return Err(CommandError::Exec {
                id: id.into(),
                message: "--console-socket is for --tty".into(),
            });
        }
    };
    // The pid file is a host path: its directory is opened before this
    // process enters the container's mount namespace.
    let pid_dir = match pid_file {
        Some(path) => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| CommandError::Exec {
                    id: id.into(),
                    message: format!("pid file {} has no file name", path.display()),
                })?;
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let fd = open(
                parent,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| CommandError::Exec {
                id: id.into(),
                message: format!(
                    "cannot open the pid file's directory {}: {e}",
                    parent.display()
                ),
            })?;
            Some((fd, name))
        }
        None => None,
    };
    let dir = Dir::new(root, id)?;
    let record = dir.load()?;
    if dir.status(&record) != Status::Running {
        return Err(CommandError::NotRunning(id.into()));
    }
    let spec = std::fs::read(dir.config())
        .ok()
        .and_then(|t| serde_json::from_slice::<Spec>(&t).ok())
        .unwrap_or_default();
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(command.to_vec()));
    if let Some(cwd) = cwd {
        process.set_cwd(cwd.into());
    }
    let sys = |what| {
        move |source| CommandError::Sys {
            id: id.into(),
            what,
            source,
        }
    };
    let cgroup =
        Cgroup::from_paths(&record.cgroup_paths).map_err(|source| CommandError::Cgroup {
            id: id.into(),
            source,
        })?;
    let procs = cgroup.open_procs().map_err(|source| CommandError::Cgroup {
        id: id.into(),
        source,
    })?;
    // Open every namespace first: after joining the mount one, /proc/PID is gone.
    let own = |ns: &str| std::fs::metadata(format!("/proc/self/ns/{ns}")).ok();
    let mut fds: Vec<(OwnedFd, &str)> = Vec::new();
    for ns in NAMESPACES {
        let path = format!("/proc/{}/ns/{ns}", record.pid);
        let theirs = std::fs::metadata(&path).ok();
        let same = match (own(ns), theirs) {
            (Some(a), Some(b)) => {
                use std::os::unix::fs::MetadataExt;
                a.ino() == b.ino() && a.dev() == b.dev()
            }
            _ => false,
        };
        // pid_for_children is what a fork lands in; compare with the container's.
        if same && *ns != "pid" {
            continue;
        }
        let fd = open(
            path.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys("open a namespace of init"))?;
        fds.push((fd, ns));
    }
    // The user namespace is joined by the child, last: the runtime keeps the
    // host's rights (for the pid file) and the other joins need them.
    let user_ns_path = PathBuf::from(format!("/proc/{}/ns/user", record.pid));
    let user_ns = if crate::userns::differs_from_own(&user_ns_path) {
        Some(
            open(
                &user_ns_path,
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(sys("open the user namespace of init"))?,
        )
    } else {
        None
    };
    // The container's root: for a container without a mount namespace.
    let root_fd = open(
        format!("/proc/{}/root", record.pid).as_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open the root of init"))?;
    for (fd, _) in &fds {
        setns(fd, CloneFlags::empty()).map_err(sys("join a namespace of init"))?;
    }
    // A mount namespace join already moved us to its root; otherwise chroot.
    if !fds.iter().any(|(_, ns)| *ns == "mnt") {
        nix::unistd::fchdir(&root_fd).map_err(sys("chdir to the container root"))?;
        nix::unistd::chroot(".").map_err(sys("chroot to the container root"))?;
    }
    drop(root_fd);
    let (report_r, report_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("make a pipe"))?;
    // SAFETY: this process is single-threaded.
    match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            crate::process::set_not_dumpable();
            drop(report_r);
            let mut report = std::fs::File::from(report_w);
            for mut f in procs {
                if let Err(e) = f.write_all(b"0") {
                    let _ = write!(report, "failed to join the cgroup: {e}");
                    exit(CANNOT_INVOKE);
                }
            }
            if let Some(fd) = &user_ns
                && let Err(e) = crate::userns::join(fd)
            {
                let _ = write!(report, "failed to join the user namespace: {e}");
                exit(CANNOT_INVOKE);
            }
            if let Some(socket) = &console {
                let owner = user.unwrap_or((process.user().uid(), process.user().gid()));
                if let Err(e) = crate::console::setup(socket, None, owner) {
                    let _ = write!(report, "terminal: {e}");
                    exit(CANNOT_INVOKE);
                }
            }
            drop(console);
            let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
            match prepare_process(&process, seccomp, env, user) {
                Ok(cmd) => {
                    crate::process::setup::close_range_cloexec(3);
                    let err = cmd.exec();
                    let _ = write!(report, "{err}");
                    exit(start_failure_code(&err))
                }
                Err(e) => {
                    let code = match &e {
                        SetupError::Process(p) => start_failure_code(p),
                        _ => CANNOT_INVOKE,
                    };
                    let _ = write!(report, "{e}");
                    exit(code)
                }
            }
        }
        ForkResult::Parent { child } => {
            drop(procs);
            drop(user_ns);
            drop(report_w);
            drop(console);
            let mut message = String::new();
            let _ = std::io::Read::read_to_string(&mut std::fs::File::from(report_r), &mut message);
            // The report pipe closed without a message: the exec succeeded.
            if message.is_empty() {
                if let Some((dir, name)) = &pid_dir {
                    write_pid_file(dir, name, child.as_raw()).map_err(|e| CommandError::Exec {
                        id: id.into(),
                        message: format!("failed to write the pid file {name:?}: {e}"),
                    })?;
                }
                if *detach {
                    return Ok(0);
                }
            }
            let status = crate::container::wait_for(Pid::from_raw(child.as_raw()));
            let code = match status {
                nix::sys::wait::WaitStatus::Exited(_, code) => code,
                nix::sys::wait::WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
                _ => 255,
            };
            if !message.is_empty() {
                return Err(CommandError::Start {
                    id: id.into(),
                    message,
                    code,
                });
            }
            Ok(code)
        }
    }
}
