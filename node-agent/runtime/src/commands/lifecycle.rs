//! start, kill, delete, run.

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::signal::kill as send;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use super::CommandError;
use std::os::fd::{AsFd, OwnedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::cgroups::Cgroup;
use crate::container::{self, CreateConfig, CreateMode};
use crate::hooks::{self, Kind};
use crate::proc::wait_gone;
use crate::state::{Dir, Status};

/// Lets a created container's process exec: runs the startContainer hooks
/// (in init) and, once the process runs, the poststart hooks. A failing
/// startContainer hook destroys the container and is the error.
pub fn start(root: &Path, id: &str) -> Result<(), CommandError> {
    let dir = Dir::new(root, id)?;
    let record = dir.load()?;
    if dir.status(&record) != Status::Created {
        return Err(CommandError::NotCreated(id.into()));
    }
    let sys = |what| {
        move |source| CommandError::Sys {
            id: id.into(),
            what,
            source,
        }
    };
    // Non-blocking: with init gone there is no reader and this fails (ENXIO).
    let writer = open(
        &dir.fifo(),
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ENXIO | Errno::ENOENT => CommandError::NotRunning(id.into()),
        other => sys("open the exec fifo")(other),
    })?;
    let reader = open(
        &dir.fifo(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open the exec fifo"))?;
    nix::unistd::write(&writer, &[0]).map_err(sys("write the exec fifo"))?;
    drop(writer);
    let said = wait_exec(&reader).map_err(sys("wait for the process to start"))?;
    let _ = std::fs::remove_file(dir.fifo());
    match said.as_slice() {
        [] => {}
        // Our own byte: init ended before it read it.
        [0] => return Err(CommandError::NotRunning(id.into())),
        message => {
            let message = String::from_utf8_lossy(message).into_owned();
            // runtime.md: stop the container, destroy it, run poststop.
            delete(root, id, true)?;
            return Err(CommandError::Hook {
                id: id.into(),
                message,
            });
        }
    }
    if let Some(spec) = dir.saved_spec() {
        let state = record.hook_state(Status::Running);
        hooks::run_warning(
            id,
            Kind::Poststart,
            hooks::of(&spec, Kind::Poststart),
            &state,
        );
    }
    Ok(())
}

/// Waits until nobody holds the exec fifo open for writing but `reader`:
/// init exec'd (its fd is close-on-exec) or ended. Returns what is left in
/// the fifo: nothing, our own byte (init never read it) or the error init
/// wrote back.
fn wait_exec(reader: &OwnedFd) -> Result<Vec<u8>, Errno> {
    loop {
        // No events asked: poll reports POLLHUP (no writers left) anyway.
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::empty())];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) | Ok(0) => continue,
            Err(e) => return Err(e),
            Ok(_) => break,
        }
    }
    let mut said = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(reader, &mut buf) {
            Ok(0) | Err(Errno::EAGAIN) => return Ok(said),
            Ok(n) => said.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Sends `sig` (a name or number) to init, or with `all` to every process
/// of the container; with `grace` (seconds), SIGKILLs all of it if init is
/// still there after that long.
pub fn kill(
    root: &Path,
    id: &str,
    sig: &str,
    all: bool,
    grace: Option<f64>,
) -> Result<(), CommandError> {
    let signal = crate::signal::parse(sig)?;
    let dir = Dir::new(root, id)?;
    let record = dir.load()?;
    if dir.status(&record) == Status::Stopped {
        return Err(CommandError::NotRunning(id.into()));
    }
    let cgroup =
        Cgroup::from_paths(&record.cgroup_paths).map_err(|source| CommandError::Cgroup {
            id: id.into(),
            source,
        })?;
    if all {
        for pid in cgroup.pids() {
            let _ = send(Pid::from_raw(pid), signal);
        }
    } else {
        send(Pid::from_raw(record.pid), signal).map_err(|source| CommandError::Sys {
            id: id.into(),
            what: "signal init",
            source,
        })?;
    }
    if let Some(grace) = grace {
        let secs = if grace.is_finite() && grace > 0.0 {
            grace
        } else {
            0.0
        };
        let start = Some(record.pid_start);
        if !wait_gone(record.pid, start, Duration::from_secs_f64(secs)) {
            let _ = send(Pid::from_raw(record.pid), Signal::SIGKILL);
            cgroup.kill_all().map_err(|source| CommandError::Cgroup {
                id: id.into(),
                source,
            })?;
            wait_gone(record.pid, start, Duration::from_secs(10));
        }
    }
    Ok(())
}

/// Removes a stopped container (with `force` a running one, killed first)
/// and everything it owns; fine if it is gone already.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), CommandError> {
    let dir = Dir::new(root, id)?;
    if !dir.exists() {
        return Ok(());
    }
    let record = match dir.load() {
        Ok(r) => r,
        // A state directory without a record: a create that died mid-way.
        Err(crate::state::StateError::NotFound(_)) => {
            dir.remove()?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let status = dir.status(&record);
    // runtime.md: deleting a container that is not stopped is an error (and
    // changes nothing); --force kills it first.
    match status {
        Status::Running if !force => return Err(CommandError::StillRunning(id.into())),
        Status::Created | Status::Creating if !force => {
            return Err(CommandError::NotStopped(id.into()));
        }
        _ => {}
    }
    let cgroup =
        Cgroup::from_paths(&record.cgroup_paths).map_err(|source| CommandError::Cgroup {
            id: id.into(),
            source,
        })?;
    if status != Status::Stopped {
        let _ = send(Pid::from_raw(record.pid), Signal::SIGKILL);
    }
    let cg_err = |source| CommandError::Cgroup {
        id: id.into(),
        source,
    };
    cgroup.kill_all().map_err(cg_err)?;
    wait_gone(record.pid, Some(record.pid_start), Duration::from_secs(10));
    if record.monitor_pid > 0
        && let Some(start) = crate::proc::start_time(record.monitor_pid)
    {
        // Only our monitor: its start time is not before init's.
        if start <= record.pid_start {
            wait_gone(record.monitor_pid, Some(start), Duration::from_secs(10));
        }
    }
    cgroup.destroy().map_err(cg_err)?;
    let spec = dir.saved_spec();
    dir.remove()?;
    if let Some(spec) = spec {
        let state = record.hook_state(Status::Stopped);
        hooks::run_warning(id, Kind::Poststop, hooks::of(&spec, Kind::Poststop), &state);
    }
    Ok(())
}

static RUN_CHILD: AtomicI32 = AtomicI32::new(0);
/// A signal that came before the container's pid was known: delivered once
/// it is (the state says "running" before `start` returns here).
static RUN_PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = RUN_CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    } else {
        RUN_PENDING.store(sig, Ordering::SeqCst);
    }
}

/// create + start + wait + delete; returns the exit status for the shell.
/// With `detach`: create + start, returning 0 at once.
pub fn run(root: &Path, args: &CreateConfig, detach: bool) -> Result<i32, CommandError> {
    if detach {
        container::create(root, args, CreateMode::Create)?;
        start(root, &args.id)?;
        return Ok(0);
    }
    // Forwarding is set up first: a signal during create/start is held and
    // delivered once the container's pid is known.
    let action = SigAction::new(
        SigHandler::Handler(forward),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        // SAFETY: the handler only calls kill(2) or stores an integer.
        let _ = unsafe { sigaction(sig, &action) };
    }
    let created = container::create(root, args, CreateMode::Run)?;
    start(root, &args.id)?;
    RUN_CHILD.store(created.record.pid, Ordering::SeqCst);
    let pending = RUN_PENDING.swap(0, Ordering::SeqCst);
    if pending > 0 {
        // SAFETY: kill(2) on the container's init.
        unsafe {
            libc::kill(created.record.pid, pending);
        }
    }
    let status = container::wait_for(Pid::from_raw(created.record.pid));
    let exit = container::exit_of(status, &created.cgroup);
    if exit.oom_killed {
        eprintln!(
            "berth-runtime: container {} was OOM-killed (memory limit reached)",
            args.id
        );
    }
    // What delete does: the cgroup, the state, the poststop hooks.
    delete(root, &args.id, true)?;
    Ok(exit.shell_status())
}
