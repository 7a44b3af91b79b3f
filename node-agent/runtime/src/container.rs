//! Creating a container: the runtime forks a monitor, the monitor enters the pid
//! namespace and forks init, init sets the container up and reports over the sync
//! socket. Under `run` the runtime itself is the monitor. A failed create leaves
//! nothing behind: init is killed, the cgroup and the state directory removed.
//!
//! ```no_run
//! use berth_runtime::container::{self, CreateConfig, CreateMode};
//! let config = CreateConfig::new("web-1", "/var/lib/bundles/web-1").pid_file("/run/web-1.pid");
//! let created = container::create("/run/berth-runtime".as_ref(), &config, CreateMode::Create)?;
//! println!("init is {}", created.record.pid);
//! # Ok::<(), container::CreateError>(())
//! ```

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::{SigHandler, Signal, kill, signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, mkfifo};

use crate::cgroups::{self, Cgroup, CgroupError};
use crate::hooks::{self, DefaultEnv, HookError, Kind};
use crate::namespaces::{NamespaceError, Plan};
use crate::process::setup::{self, Context, exit};
use crate::rootfs::CgroupView;
use crate::spec::{Bundle, SpecError};
use crate::state::{self, Dir, Exit, Record, StateError, Status};
use crate::sync::{self, Msg, SyncError};
use crate::userns::{self, Mappings};

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("container {id}: {source}")]
    Namespace { id: String, source: NamespaceError },
    #[error("container {id}: cgroup: {source}")]
    Cgroup { id: String, source: CgroupError },
    #[error("container {id}: {source}")]
    Sync { id: String, source: SyncError },
    #[error("container {id}: failed to {what}: {source}")]
    Sys {
        id: String,
        what: &'static str,
        source: nix::errno::Errno,
    },
    #[error("container {id}: failed to write {what}: {source}")]
    Write {
        id: String,
        what: String,
        source: std::io::Error,
    },
    #[error("container {id}: {message}")]
    Init { id: String, message: String },
    #[error("container {id}: {source}")]
    Console {
        id: String,
        source: crate::console::ConsoleError,
    },
    #[error("container {id}: {reason}")]
    Terminal { id: String, reason: &'static str },
    #[error("container {id}: {source}")]
    Hook { id: String, source: HookError },
    #[error("container {id}: {source}")]
    Userns {
        id: String,
        source: userns::UsernsError,
    },
    #[error(
        "container {id}: not created from a process with {threads} threads: create forks, \
         which only a single-threaded process may do (run the berth-runtime binary instead)"
    )]
    MultiThreaded { id: String, threads: usize },
}

/// What to create: the container's id and bundle, and how the caller wants
/// it handed over. The command line's `create` and `run` fill one in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateConfig {
    /// Container id (see [`crate::id::validate`]).
    pub id: String,
    /// The bundle: a directory with config.json and (usually) the rootfs.
    pub bundle: PathBuf,
    /// Where to write init's host pid once it is set up.
    pub pid_file: Option<PathBuf>,
    /// How many file descriptors after stdio (3, 4, ...) the process keeps.
    pub preserve_fds: u32,
    /// runc's `--console-socket`: where the master of the process's terminal
    /// goes (required when `process.terminal` is true, refused otherwise).
    pub console_socket: Option<PathBuf>,
}

impl CreateConfig {
    /// The container `id` from the bundle directory `bundle`.
    pub fn new(id: impl Into<String>, bundle: impl Into<PathBuf>) -> CreateConfig {
        CreateConfig {
            id: id.into(),
            bundle: bundle.into(),
            pid_file: None,
            preserve_fds: 0,
            console_socket: None,
        }
    }

    /// Writes init's pid to `path` (atomically) once it is set up.
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> CreateConfig {
        self.pid_file = Some(path.into());
        self
    }

    /// Sends the master of the process's terminal to the Unix socket `path`.
    pub fn console_socket(mut self, path: impl Into<PathBuf>) -> CreateConfig {
        self.console_socket = Some(path.into());
        self
    }

    /// Passes fds 3 .. 3 + `n` on to the container's process.
    pub fn preserve_fds(mut self, n: u32) -> CreateConfig {
        self.preserve_fds = n;
        self
    }
}

/// Who waits for the container's init.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateMode {
    /// `create`: a monitor process waits for init; `start` releases it.
    Create,
    /// `run`: this process is the monitor; init execs at once.
    Run,
    /// `create` without a monitor (`BERTH_RUNTIME_NO_MONITOR=1`): this
    /// process forks init and returns; once it exits, init is reparented to
    /// the caller's child subreaper, which reaps it (runc's model). Nothing
    /// records the exit in the state: the reaper owns it. For a caller that
    /// keeps one process per container anyway (berth's shim), this saves the
    /// second one.
    Handoff,
}

/// A created container: its state directory, what was recorded in it, and
/// its cgroup.
pub struct Created {
    pub dir: Dir,
    pub record: Record,
    pub cgroup: Cgroup,
}

/// Undoes a half-made container unless disarmed.
struct Guard {
    dir: Dir,
    cgroup: Option<Cgroup>,
    init: Option<Pid>,
    monitor: Option<Pid>,
    /// Once the create hooks are under way, a failure goes on to the
    /// poststop hooks (runtime.md's lifecycle, step 13): they and the state
    /// they read.
    poststop: Option<(Vec<oci_spec::runtime::Hook>, Vec<u8>)>,
    armed: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(init) = self.init {
            let _ = kill(init, Signal::SIGKILL);
        }
        // Init is our child under run and handoff, the monitor's under create.
        for pid in [self.init, self.monitor].into_iter().flatten() {
            let _ = waitpid(pid, None);
        }
        if let Some(cgroup) = &self.cgroup
            && let Err(e) = cgroup.destroy()
        {
            eprintln!("berth-runtime: container {}: cleanup: {e}", self.dir.id);
        }
        if let Err(e) = self.dir.remove() {
            eprintln!("berth-runtime: cleanup: {e}");
        }
        if let Some((poststop, state)) = &self.poststop {
            hooks::run_warning(&self.dir.id, Kind::Poststop, poststop, state);
        }
    }
}

/// Creates the container `config` describes below the state root `root`.
/// Forks (the monitor and init): call it from a single-threaded process (it
/// refuses to run in any other).
pub fn create(
    root: &Path,
    config: &CreateConfig,
    mode: CreateMode,
) -> Result<Created, CreateError> {
    let id = config.id.as_str();
    let threads = crate::proc::own_threads();
    if threads > 1 {
        return Err(CreateError::MultiThreaded {
            id: id.to_string(),
            threads,
        });
    }
    let dir = Dir::new(root, id)?;
    if dir.exists() {
        return Err(StateError::Exists(id.to_string()).into());
    }
    let bundle = Bundle::load(&config.bundle)?;
    for part in bundle.ignored() {
        eprintln!(
            "berth-runtime: container {id}: warning: {part} in config.json is not supported yet and ignored"
        );
    }
    let terminal = bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    // As runc: a terminal's master needs somewhere to go, and a socket
    // without a terminal is a caller's mistake.
    let console = match (&config.console_socket, terminal) {
        (Some(path), true) => {
            Some(
                crate::console::connect(path).map_err(|source| CreateError::Console {
                    id: id.to_string(),
                    source,
                })?,
            )
        }
        (None, false) => None,
        (None, true) => {
            return Err(CreateError::Terminal {
                id: id.to_string(),
                reason: "process.terminal is true: give --console-socket to receive the \
                         terminal's master",
            });
        }
        (Some(_), false) => {
            return Err(CreateError::Terminal {
                id: id.to_string(),
                reason: "--console-socket given but process.terminal is false",
            });
        }
    };
    let linux = bundle.spec.linux().clone().unwrap_or_default();
    let ns_err = |source| CreateError::Namespace {
        id: id.to_string(),
        source,
    };
    let plan = Plan::new(linux.namespaces().as_deref().unwrap_or_default()).map_err(ns_err)?;
    let cg_err = |source| CreateError::Cgroup {
        id: id.to_string(),
        source,
    };
    let rel = cgroups::relative_path(linux.cgroups_path().as_deref(), id).map_err(cg_err)?;
    let cgroup = Cgroup::for_container(&rel).map_err(cg_err)?;
    dir.create()?;
    let mut guard = Guard {
        dir: dir.clone(),
        cgroup: Some(cgroup.clone()),
        init: None,
        monitor: None,
        poststop: None,
        armed: true,
    };
    cgroup.create(linux.resources().as_ref()).map_err(cg_err)?;
    if plan.new_user
        && let Some(root) = Mappings::from_spec(&linux).root()
    {
        userns::delegate_cgroup(&cgroup.paths(), root).map_err(|source| CreateError::Userns {
            id: id.to_string(),
            source,
        })?;
    }
    let spec_json = serde_json::to_vec(&bundle.spec).unwrap_or_default();
    std::fs::write(dir.config(), spec_json).map_err(|source| CreateError::Write {
        id: id.to_string(),
        what: dir.config().display().to_string(),
        source,
    })?;
    let sys = |what| {
        move |source| CreateError::Sys {
            id: id.to_string(),
            what,
            source,
        }
    };
    // `start` releases init through the exec fifo, also under `run`.
    mkfifo(&dir.fifo(), Mode::from_bits_truncate(0o600)).map_err(sys("create the exec fifo"))?;
    let gate = nix::fcntl::open(
        &dir.fifo(),
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open the exec fifo"))?;
    let views = cgroup_views(&cgroup);
    let sync_err = |source| CreateError::Sync {
        id: id.to_string(),
        source,
    };
    let (parent_sock, child_sock) = sync::pair().map_err(sync_err)?;
    let (join_gate, join_release) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("make the join pipe"))?;
    let ctx = Context {
        id,
        bundle: &bundle,
        plan: &plan,
        cgroup: &cgroup,
        cgroup_views: &views,
        gate: Some(gate),
        sync: child_sock,
        join_gate,
        preserve_fds: config.preserve_fds,
        namespaces_entered: false,
        console,
    };
    let mut init = None;
    match mode {
        CreateMode::Run | CreateMode::Handoff => {
            match spawn_init(ctx, &[parent_sock.as_raw_fd(), join_release.as_raw_fd()]) {
                Ok(child) => {
                    guard.init = Some(child);
                    init = Some(child);
                    release(&cgroup, child, join_release).map_err(cg_err)?;
                }
                Err(Some(message)) => {
                    return Err(CreateError::Init {
                        id: id.to_string(),
                        message,
                    });
                }
                // The intermediate reported why on the sync socket (read below).
                Err(None) => {}
            }
        }
        CreateMode::Create => {
            // SAFETY: this process is single-threaded.
            match unsafe { fork() }.map_err(sys("fork the monitor"))? {
                ForkResult::Child => {
                    drop(parent_sock);
                    monitor(ctx, join_release, &dir)
                }
                ForkResult::Parent { child } => {
                    drop(ctx);
                    drop(join_release);
                    guard.monitor = Some(child);
                }
            }
        }
    }
    let mut record = Record {
        id: id.to_string(),
        pid: init.map(Pid::as_raw).unwrap_or(0),
        pid_start: 0,
        monitor_pid: guard.monitor.map(Pid::as_raw).unwrap_or(0),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: state::now_rfc3339(),
        cgroup_paths: cgroup.paths(),
        annotations: bundle.spec.annotations().clone().unwrap_or_default(),
    };
    loop {
        match sync::recv(&parent_sock).map_err(sync_err)? {
            Msg::Pid(pid) => {
                guard.init = Some(Pid::from_raw(pid));
                record.pid = pid;
            }
            Msg::Hooks => {
                let state = record.hook_state(Status::Creating);
                guard.poststop = Some((
                    hooks::of(&bundle.spec, Kind::Poststop).to_vec(),
                    record.hook_state(Status::Stopped),
                ));
                for kind in [Kind::Prestart, Kind::CreateRuntime] {
                    hooks::run(
                        kind,
                        hooks::of(&bundle.spec, kind),
                        &state,
                        DefaultEnv::Inherit,
                    )
                    .map_err(|source| CreateError::Hook {
                        id: id.to_string(),
                        source,
                    })?;
                }
                let state = String::from_utf8_lossy(&state).into_owned();
                sync::send(&parent_sock, &Msg::State(state)).map_err(sync_err)?;
            }
            Msg::Ready => break,
            Msg::Error(message) => {
                return Err(CreateError::Init {
                    id: id.to_string(),
                    message,
                });
            }
            Msg::State(_) => return Err(sync_err(SyncError::Garbled)),
        }
    }
    let pid = record.pid;
    record.pid_start = crate::proc::start_time(pid).unwrap_or(0);
    dir.save(&record)?;
    if let Some(pid_file) = &config.pid_file {
        let tmp = pid_file.with_extension("berth-tmp");
        std::fs::write(&tmp, pid.to_string())
            .and_then(|()| std::fs::rename(&tmp, pid_file))
            .map_err(|source| CreateError::Write {
                id: id.to_string(),
                what: pid_file.display().to_string(),
                source,
            })?;
    }
    guard.armed = false;
    Ok(Created {
        dir,
        record,
        cgroup,
    })
}

/// The monitor: enters the pid namespace, forks init, reports its pid, then
/// waits for it and records how it ended.
fn monitor(ctx: Context, join_release: OwnedFd, dir: &Dir) -> ! {
    // A session of its own: signals meant for the caller's process group or
    // terminal (Ctrl-C, a supervisor stopping its group) do not reach the
    // monitor or the container.
    let _ = nix::unistd::setsid();
    let cgroup = ctx.cgroup.clone();
    let Ok(report) = ctx.sync.try_clone() else {
        exit(1)
    };
    let child = match spawn_init(ctx, &[join_release.as_raw_fd()]) {
        Ok(child) => child,
        Err(message) => {
            if let Some(message) = message {
                let _ = sync::send(&report, &Msg::Error(message));
            }
            exit(1);
        }
    };
    let _ = sync::send(&report, &Msg::Pid(child.as_raw()));
    if let Err(e) = release(&cgroup, child, join_release) {
        let _ = sync::send(&report, &Msg::Error(format!("cgroup: {e}")));
        let _ = kill(child, Signal::SIGKILL);
    }
    drop(report);
    detach_stdio();
    for sig in [
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGQUIT,
        Signal::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN runs no code.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    let status = wait_for(child);
    let exit_info = exit_of(status, &cgroup);
    let _ = dir.save_exit(&exit_info);
    exit(exit_info.shell_status())
}

/// Forks init into its pid namespace (through `userns` when the container
/// has a user namespace) and returns its host pid; `close_in_child` are fds
/// of this process that init must not keep.
fn spawn_init(ctx: Context, close_in_child: &[RawFd]) -> Result<Pid, userns::SpawnError> {
    if ctx.plan.has_user() {
        let linux = ctx.bundle.spec.linux().clone().unwrap_or_default();
        return userns::spawn_init(ctx, &Mappings::from_spec(&linux), close_in_child);
    }
    // Entering the pid namespace is for init only: this process's later
    // children (hooks under `run`) belong in the runtime's namespace, and
    // after init ends no process can be forked into the container's.
    let own_pid_ns = nix::fcntl::open(
        "/proc/self/ns/pid",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Some(format!("open the runtime's pid namespace: {e}")))?;
    ctx.plan.enter_pid().map_err(|e| Some(e.to_string()))?;
    // SAFETY: this process is single-threaded.
    let forked = unsafe { fork() };
    if !matches!(forked, Ok(ForkResult::Child)) {
        nix::sched::setns(&own_pid_ns, nix::sched::CloneFlags::CLONE_NEWPID)
            .map_err(|e| Some(format!("return to the runtime's pid namespace: {e}")))?;
    }
    match forked {
        Ok(ForkResult::Child) => {
            drop(own_pid_ns);
            for fd in close_in_child {
                // SAFETY: closing the parent's fds in this copy of the process.
                unsafe {
                    libc::close(*fd);
                }
            }
            setup::run_init(ctx)
        }
        Ok(ForkResult::Parent { child }) => Ok(child),
        Err(e) => Err(Some(format!("fork init: {e}"))),
    }
}

/// Moves init into its cgroup and lets it go on.
fn release(cgroup: &Cgroup, child: Pid, join_release: OwnedFd) -> Result<(), CgroupError> {
    cgroup.join(child.as_raw())?;
    // Init may have failed already; then nobody reads and that is fine.
    let _ = nix::unistd::write(&join_release, &[1]);
    Ok(())
}

/// The monitor must not hold the caller's stdout or stderr open.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe {
                libc::dup2(null.as_raw_fd(), fd);
            }
        }
    }
}

/// Waits for our child `child` to exit or be killed.
pub fn wait_for(child: Pid) -> WaitStatus {
    loop {
        match waitpid(child, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return s,
            Err(_) => return WaitStatus::StillAlive,
            Ok(_) => continue,
        }
    }
}

/// How init ended, with the OOM verdict from the cgroup.
pub fn exit_of(status: WaitStatus, cgroup: &Cgroup) -> Exit {
    let (code, signal) = match status {
        WaitStatus::Exited(_, code) => (Some(code), None),
        WaitStatus::Signaled(_, sig, _) => (None, Some(sig as i32)),
        _ => (None, None),
    };
    let killed = signal == Some(libc::SIGKILL) || code == Some(128 + libc::SIGKILL);
    Exit {
        code,
        signal,
        oom_killed: killed && cgroup.oom_kills() > 0,
    }
}

/// What the container's cgroup mount shows, per hierarchy.
fn cgroup_views(cgroup: &Cgroup) -> Vec<CgroupView> {
    match cgroup {
        Cgroup::V2(v2) => vec![CgroupView {
            name: String::new(),
            fstype: "cgroup2",
            data: String::new(),
            host_dir: v2.path.clone(),
        }],
        Cgroup::V1(_) => crate::cgroups::v1_views(cgroup),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_built_step_by_step() {
        let c = CreateConfig::new("c1", "/b").pid_file("/p").preserve_fds(2);
        assert_eq!(c.id, "c1");
        assert_eq!(c.bundle, Path::new("/b"));
        assert_eq!(c.pid_file.as_deref(), Some(Path::new("/p")));
        assert_eq!(c.preserve_fds, 2);
    }

    #[test]
    fn a_multi_threaded_process_cannot_create() {
        // The test harness runs this on a thread of its own.
        let config = CreateConfig::new("c1", "/nonexistent");
        let err = create(Path::new("/nonexistent"), &config, CreateMode::Create).err();
        assert!(
            matches!(err, Some(CreateError::MultiThreaded { threads, .. }) if threads > 1),
            "{err:?}"
        );
    }
}
