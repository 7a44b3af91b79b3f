//! What the container's init process does between fork and exec, in order:
//! cgroup, namespaces, hostname, rootfs, pivot_root, masked and read-only paths,
//! then the process attributes; report `Ready`, wait for `start`, exec.

use std::os::fd::OwnedFd;

use nix::sys::stat::{Mode, umask};
use nix::unistd::{chdir, sethostname};
use oci_spec::runtime::{LinuxSeccomp, Process, Spec};

use super::{Command, ProcessError};
use crate::caps::{CapsError, Sets};
use crate::cgroups::{Cgroup, CgroupError};
use crate::console::{self, ConsoleError, WindowSize};
use crate::hooks::{self, DefaultEnv, Kind};
use crate::namespaces::{NamespaceError, Plan};
use crate::rootfs::{self, CgroupView, RootfsError};
use crate::seccomp::{self, SeccompError};
use crate::spec::Bundle;
use crate::sync::{self, Msg};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    #[error("namespaces: {0}")]
    Namespace(#[from] NamespaceError),
    #[error("rootfs: {0}")]
    Rootfs(#[from] RootfsError),
    #[error("capabilities: {0}")]
    Caps(#[from] CapsError),
    #[error("process: {0}")]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error("failed to set hostname or domainname {name:?}: {source}")]
    Hostname {
        name: String,
        source: nix::errno::Errno,
    },
    #[error("terminal: {0}")]
    Console(#[from] ConsoleError),
    #[error("the runtime did not move init into its cgroup")]
    NotJoined,
    #[error("failed to write sysctl {key}: {source}")]
    Sysctl { key: String, source: std::io::Error },
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error("{0}")]
    Sync(crate::sync::SyncError),
    #[error("unexpected message from the runtime: {0}")]
    Unexpected(String),
}

pub struct Context<'a> {
    pub id: &'a str,
    pub bundle: &'a Bundle,
    pub plan: &'a Plan,
    pub cgroup: &'a Cgroup,
    pub cgroup_views: &'a [CgroupView],
    /// The exec fifo, opened read-write (so opening never blocks and `start`
    /// finds a reader): init execs when `start` writes a byte into it. `start`
    /// learns that init exec'd when this fd closes (close-on-exec), and reads
    /// what init wrote back into it when a startContainer hook failed.
    pub gate: Option<OwnedFd>,
    pub sync: OwnedFd,
    /// Readable once the runtime has moved init into its cgroup.
    pub join_gate: OwnedFd,
    pub preserve_fds: u32,
    /// The namespaces were made before init was forked (`userns`); init
    /// only makes the cgroup one.
    pub namespaces_entered: bool,
    /// The connected console socket when `process.terminal` is true.
    pub console: Option<OwnedFd>,
}

/// Annotation that asks for berth's minimal init as PID 1.
pub const INIT_ANNOTATION: &str = "run.berth.init";

/// The init process's body; never returns.
pub fn run_init(mut ctx: Context) -> ! {
    super::set_not_dumpable();
    let wants_init = ctx
        .bundle
        .spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(INIT_ANNOTATION))
        .is_some_and(|v| v == "true");
    // berth-init is exec'd from a memfd made here, before pivot_root and
    // the seccomp filter; without one, the in-process init runs instead.
    let seccomp = ctx
        .bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref());
    let init_image = if wants_init && crate::init_image::seccomp_permits(seccomp) {
        crate::init_image::load().ok()
    } else {
        None
    };
    match setup(&ctx) {
        Ok((command, state)) => {
            if sync::send(&ctx.sync, &Msg::Ready).is_err() {
                exit(1);
            }
            let Some(gate) = ctx.gate.take() else { exit(1) };
            let mut byte = [0u8; 1];
            loop {
                match nix::unistd::read(&gate, &mut byte) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    Ok(1) => break,
                    // The fifo went away without a start: give up.
                    _ => exit(1),
                }
            }
            let spec = &ctx.bundle.spec;
            let start_hooks = hooks::of(spec, Kind::StartContainer);
            if !start_hooks.is_empty() {
                let state = with_status(state.as_deref().unwrap_or("{}"), "created");
                let env: Vec<String> = command
                    .env
                    .iter()
                    .map(|e| e.to_string_lossy().into_owned())
                    .collect();
                if let Err(e) = hooks::run(
                    Kind::StartContainer,
                    start_hooks,
                    state.as_bytes(),
                    DefaultEnv::Process(&env),
                ) {
                    // `start` reads it once this fd is closed.
                    let _ = nix::unistd::write(&gate, e.to_string().as_bytes());
                    exit(1);
                }
            }
            // berth's init does not exec itself: close the gate for it, so
            // `start` sees the fifo closed.
            drop(gate);
            if wants_init {
                // Exec'd at the point the command would be, with the
                // container's final privileges; it execs the command itself.
                if let Some(image) = &init_image {
                    let _ = crate::init_image::exec(image, &command);
                }
                crate::init::run(&command);
            }
            let err = command.exec();
            eprintln!("berth-runtime: container {}: {err}", ctx.id);
            exit(super::exec_failure_code(&err));
        }
        Err(e) => {
            let _ = sync::send(&ctx.sync, &Msg::Error(e.to_string()));
            exit(1);
        }
    }
}

/// The state JSON `state` with its status set to `status`.
fn with_status(state: &str, status: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(state) {
        Ok(mut value) => {
            value["status"] = serde_json::Value::from(status);
            value.to_string()
        }
        Err(_) => state.to_string(),
    }
}

/// At the hook point (namespaces made, mounts done, before pivot_root): lets
/// the runtime run prestart and createRuntime, then runs createContainer
/// here, in the container's mount namespace. Returns the state JSON the
/// runtime sent, for startContainer.
fn create_hooks(ctx: &Context, joined: &mut bool) -> Result<Option<String>, SetupError> {
    let spec = &ctx.bundle.spec;
    if !hooks::init_takes_part(spec) {
        return Ok(None);
    }
    // The runtime's hooks see the container in its cgroup.
    if !*joined {
        wait_joined(ctx)?;
        *joined = true;
    }
    sync::send(&ctx.sync, &Msg::Hooks).map_err(SetupError::Sync)?;
    let state = match sync::recv(&ctx.sync).map_err(SetupError::Sync)? {
        Msg::State(state) => state,
        other => return Err(SetupError::Unexpected(format!("{other:?}"))),
    };
    let process = spec.process().as_ref().cloned().unwrap_or_default();
    let env = super::environment(&process, &[]);
    hooks::run(
        Kind::CreateContainer,
        hooks::of(spec, Kind::CreateContainer),
        state.as_bytes(),
        DefaultEnv::Process(&env),
    )?;
    Ok(Some(state))
}

pub fn exit(code: i32) -> ! {
    // SAFETY: _exit skips atexit handlers and stdio flushing of the forked copy.
    unsafe { libc::_exit(code) }
}

fn setup(ctx: &Context) -> Result<(Command, Option<String>), SetupError> {
    let spec = &ctx.bundle.spec;
    umask(Mode::empty());
    if !ctx.namespaces_entered {
        ctx.plan.enter_rest()?;
    }
    // The runtime moves init into its cgroup while init unshares (moving a task
    // waits for an RCU grace period on cgroup v1): wait for that before the
    // cgroup namespace is made, or at the latest before reporting ready.
    let mut joined = false;
    if ctx.plan.new_cgroup_ns() {
        wait_joined(ctx)?;
        joined = true;
        ctx.plan.enter_cgroup_ns()?;
    }
    if ctx.plan.new_uts()
        && let Some(name) = spec.hostname()
    {
        sethostname(name).map_err(|source| SetupError::Hostname {
            name: name.clone(),
            source,
        })?;
    }
    if ctx.plan.new_uts()
        && let Some(name) = spec.domainname()
    {
        // SAFETY: the pointer and length describe a live byte string.
        let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
        nix::errno::Errno::result(rc).map_err(|source| SetupError::Hostname {
            name: name.clone(),
            source,
        })?;
    }
    let state;
    if ctx.plan.new_mount_ns() {
        let new_cgroup_ns = ctx.plan.new_cgroup_ns();
        rootfs::prepare(&rootfs::Setup {
            spec,
            rootfs: &ctx.bundle.rootfs,
            bundle: &ctx.bundle.dir,
            cgroups: ctx.cgroup_views,
            new_cgroup_ns,
        })?;
        state = create_hooks(ctx, &mut joined)?;
        let propagation = spec
            .linux()
            .as_ref()
            .and_then(|l| l.rootfs_propagation().as_deref());
        rootfs::pivot(&ctx.bundle.rootfs, propagation)?;
        write_sysctls(spec)?;
        rootfs::finalize(spec)?;
    } else if ctx.plan.joins_mount_ns() && !ctx.bundle.rootfs.is_dir() {
        // A joined mount namespace is someone else's: change nothing in it.
        // Without the rootfs path there (another container's, after its
        // pivot_root), use its root as it is (setns moved us there).
        state = create_hooks(ctx, &mut joined)?;
    } else {
        // No mount namespace of its own, or a joined one that has the rootfs
        // path (a copy of the host's): enter the rootfs, change nothing else.
        state = create_hooks(ctx, &mut joined)?;
        nix::unistd::chroot(&ctx.bundle.rootfs).map_err(|source| RootfsError::Sys {
            what: "chroot to",
            path: ctx.bundle.rootfs.clone(),
            source,
        })?;
    }
    if !joined {
        wait_joined(ctx)?;
    }
    let process = spec.process().as_ref().cloned().unwrap_or_default();
    if let Some(socket) = &ctx.console {
        let size = process.console_size().as_ref().map(|b| WindowSize {
            rows: u16::try_from(b.height()).unwrap_or(u16::MAX),
            cols: u16::try_from(b.width()).unwrap_or(u16::MAX),
        });
        let user = process.user();
        console::setup(socket, size, (user.uid(), user.gid()))?;
    }
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let command = prepare_process(&process, seccomp, &[], None)?;
    // Only stdio and the preserved fds go through exec.
    close_range_cloexec(3 + ctx.preserve_fds);
    Ok((command, state))
}

/// Blocks until the runtime wrote a byte into the join gate.
fn wait_joined(ctx: &Context) -> Result<(), SetupError> {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(&ctx.join_gate, &mut byte) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(1) => return Ok(()),
            _ => return Err(SetupError::NotJoined),
        }
    }
}

fn write_sysctls(spec: &Spec) -> Result<(), SetupError> {
    let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (key, value) in sysctl {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|source| SetupError::Sysctl {
            key: key.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Process attributes shared by init and exec: rlimits, oom_score_adj,
/// capabilities, user, cwd, the executable, umask, no_new_privs and seccomp.
/// `user` overrides uid:gid.
pub fn prepare_process(
    process: &Process,
    seccomp: Option<&LinuxSeccomp>,
    extra_env: &[String],
    user: Option<(u32, u32)>,
) -> Result<Command, SetupError> {
    let filters = seccomp.map(seccomp::compile).transpose()?;
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    super::set_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
    super::set_oom_score_adj(process.oom_score_adj())?;
    // Without no_new_privs, installing a filter takes CAP_SYS_ADMIN: do it while
    // init still has every capability (the profile must allow what follows).
    if !no_new_privs && let Some(filters) = &filters {
        seccomp::install(filters)?;
    }
    let sets = Sets::from_spec(process.capabilities().as_ref())?;
    sets.apply_bounding()?;
    let spec_user = process.user();
    let (uid, gid) = user.unwrap_or((spec_user.uid(), spec_user.gid()));
    let groups = spec_user.additional_gids().clone().unwrap_or_default();
    super::set_keep_caps(true);
    super::set_user(uid, gid, &groups)?;
    super::set_keep_caps(false);
    sets.apply_rest()?;
    let cwd = process.cwd();
    chdir(cwd.as_path()).map_err(|source| ProcessError::Cwd {
        path: cwd.clone(),
        source,
    })?;
    let env = super::environment(process, extra_env);
    let args = process.args().clone().unwrap_or_default();
    let arg0 = args.first().map(String::as_str).unwrap_or("");
    let path = super::lookup(arg0, &env)?;
    umask(Mode::from_bits_truncate(spec_user.umask().unwrap_or(0o022)));
    reset_signals();
    let command = Command::new(&path, &args, &env)?;
    if no_new_privs {
        super::set_no_new_privs()?;
        if let Some(filters) = &filters {
            seccomp::install(filters)?;
        }
    }
    Ok(command)
}

/// Marks every fd from `first` on close-on-exec.
pub fn close_range_cloexec(first: u32) {
    // SAFETY: close_range with integer arguments; CLOEXEC only flags the fds.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}

/// Default dispositions and an empty mask, so the runtime's choices do not leak.
pub fn reset_signals() {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal, sigprocmask};
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no code of ours.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}
