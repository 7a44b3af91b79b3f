//! The per-container shim: a tiny detached process (its own session) that
//! creates the container through the runtime, owns its stdout/stderr and writes
//! them to the rotating log files, and records init's exit status.
//!
//! Why a shim: the container's output must keep being captured, and the
//! container must keep running, while the agent restarts or crashes. The shim
//! does not depend on the agent at all after it reported the init pid.
//!
//! - stdout and stderr are named FIFOs in the task's state directory. The
//!   container gets them opened read-write, so it never sees EPIPE or SIGPIPE,
//!   even if the shim itself dies: it blocks once the 64 KiB pipe buffer is
//!   full, and a new shim (`--attach PID`, started by the re-adopting agent)
//!   reopens the FIFOs by path and drains them.
//! - The shim is a child subreaper, so runc's init (whose parent `runc create`
//!   exits) is reparented to it and its exit status is caught by `waitpid` and
//!   written to `exit.json`. berth-runtime records the exit in its own `state`.
//! - The end of the output is init's exit (a pidfd), not EOF: when init of a
//!   pid namespace dies, the kernel kills the rest, the FIFOs are drained, and
//!   a `closed` marker ends `logs --follow`.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde::{Deserialize, Serialize};

use super::error::{Result, SupervisorError};
use super::logs::{self, LogLimits, LogStream, LogWriter};
use super::runtime::last_message;

pub(crate) const STDOUT_FIFO: &str = "stdout.fifo";
pub(crate) const STDERR_FIFO: &str = "stderr.fifo";
pub(crate) const EXIT_FILE: &str = "exit.json";
pub(crate) const PID_FILE: &str = "init.pid";
pub(crate) const SHIM_PID_FILE: &str = "shim.pid";

/// Arguments of `berth-agent shim` (internal: the supervisor starts it).
#[derive(Clone, Debug, Parser)]
#[command(name = "shim")]
pub struct ShimArgs {
    /// The OCI runtime binary.
    #[arg(long)]
    pub runtime: PathBuf,
    /// The runtime's --root.
    #[arg(long)]
    pub runtime_root: PathBuf,
    /// The bundle to create the container from.
    #[arg(long)]
    pub bundle: PathBuf,
    /// Container id.
    #[arg(long)]
    pub id: String,
    /// The task's state directory (FIFOs, pid and exit files).
    #[arg(long)]
    pub state_dir: PathBuf,
    /// The task's log directory.
    #[arg(long)]
    pub log_dir: PathBuf,
    #[arg(long, default_value_t = LogLimits::default().max_bytes)]
    pub log_max_bytes: u64,
    #[arg(long, default_value_t = LogLimits::default().max_files)]
    pub log_max_files: u32,
    /// Do not create: attach to the running container whose init has this pid.
    #[arg(long)]
    pub attach: Option<i32>,
}

/// How init ended, as the shim saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// Entry point of the shim process: `args` are the arguments after `shim`.
pub fn main_shim(args: Vec<OsString>) -> ExitCode {
    let argv = std::iter::once(OsString::from("shim")).chain(args);
    let args = match ShimArgs::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth shim {}: {e}", args.id);
            ExitCode::FAILURE
        }
    }
}

fn shim_err(args: &ShimArgs, reason: impl Into<String>) -> SupervisorError {
    SupervisorError::Shim {
        container: args.id.clone(),
        reason: reason.into(),
    }
}

/// Tells the agent how creation went (one line on stdout), then lets go of stdout.
fn report(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        // SAFETY: dup2 onto our own stdout.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
}

fn run(args: &ShimArgs) -> Result<()> {
    // SAFETY: plain syscalls on this single-threaded process.
    unsafe {
        libc::setsid();
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
    }
    let _ = std::fs::write(
        args.state_dir.join(SHIM_PID_FILE),
        std::process::id().to_string(),
    );
    let out_path = args.state_dir.join(STDOUT_FIFO);
    let err_path = args.state_dir.join(STDERR_FIFO);
    for p in [&out_path, &err_path] {
        match nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(shim_err(args, format!("mkfifo {}: {e}", p.display()))),
        }
    }
    let read_out = open_fifo(&out_path, libc::O_RDONLY | libc::O_NONBLOCK)?;
    let read_err = open_fifo(&err_path, libc::O_RDONLY | libc::O_NONBLOCK)?;
    let limits = LogLimits {
        max_bytes: args.log_max_bytes,
        max_files: args.log_max_files,
    };
    let mut writer = LogWriter::open(&args.log_dir, limits)?;
    let _ = std::fs::remove_file(args.log_dir.join(logs::CLOSED));
    let pid = match args.attach {
        Some(pid) => pid,
        None => match create(args, &out_path, &err_path) {
            Ok(pid) => {
                report(&format!("ok {pid}"));
                pid
            }
            Err(reason) => {
                report(&format!("err {}", reason.replace('\n', " ")));
                drain(
                    &mut writer,
                    &read_out,
                    &read_err,
                    Duration::from_millis(200),
                );
                close(&mut writer, &args.log_dir);
                return Ok(());
            }
        },
    };
    let pidfd = berth_runtime::proc::pidfd(pid, None);
    pump(args, &mut writer, &read_out, &read_err, pid, pidfd.as_ref());
    drain(&mut writer, &read_out, &read_err, Duration::from_secs(2));
    close(&mut writer, &args.log_dir);
    Ok(())
}

fn close(writer: &mut LogWriter, log_dir: &Path) {
    let _ = writer.flush_partial();
    let _ = std::fs::write(log_dir.join(logs::CLOSED), b"");
}

fn open_fifo(path: &Path, flags: i32) -> Result<OwnedFd> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| SupervisorError::io("open", path, std::io::Error::other(e)))?;
    // SAFETY: a NUL-terminated path; the fd is owned below.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(SupervisorError::io(
            "open",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a fresh fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs `runtime create`; the container's pid, or why it failed.
fn create(args: &ShimArgs, out_path: &Path, err_path: &Path) -> Result<i32, String> {
    let out = open_fifo(out_path, libc::O_RDWR).map_err(|e| e.to_string())?;
    let err = open_fifo(err_path, libc::O_RDWR).map_err(|e| e.to_string())?;
    let log = args.state_dir.join("runtime.log");
    let pid_file = args.state_dir.join(PID_FILE);
    let _ = std::fs::remove_file(&pid_file);
    let mut cmd = std::process::Command::new(&args.runtime);
    cmd.arg("--root")
        .arg(&args.runtime_root)
        .arg("--log")
        .arg(&log)
        .arg("create")
        .arg("--bundle")
        .arg(&args.bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&args.id)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    let status = cmd
        .status()
        .map_err(|e| format!("failed to run {}: {e}", args.runtime.display()))?;
    drop(cmd);
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let msg = last_message(&text).unwrap_or("no message").to_string();
        return Err(format!(
            "{} create: {status}: {msg}",
            args.runtime.display()
        ));
    }
    let text = std::fs::read_to_string(&pid_file)
        .map_err(|e| format!("pid file {}: {e}", pid_file.display()))?;
    text.trim()
        .parse()
        .map_err(|_| format!("pid file {} holds {text:?}", pid_file.display()))
}

/// Copies output to the log until init exits.
fn pump(
    args: &ShimArgs,
    writer: &mut LogWriter,
    out: &OwnedFd,
    err: &OwnedFd,
    pid: i32,
    pidfd: Option<&OwnedFd>,
) {
    let mut eof = [false, false];
    loop {
        let mut fds = Vec::new();
        for (i, fd) in [out, err].iter().enumerate() {
            if !eof[i] {
                fds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        if let Some(p) = pidfd {
            fds.push(libc::pollfd {
                fd: p.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: a valid array of pollfds.
        unsafe {
            libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1000);
        }
        for (i, (fd, stream)) in [(out, LogStream::Stdout), (err, LogStream::Stderr)]
            .into_iter()
            .enumerate()
        {
            if !eof[i] && copy_available(writer, fd, stream) {
                eof[i] = true;
            }
        }
        reap(args, pid);
        let exited = match pidfd {
            Some(_) => fds.last().is_some_and(|p| p.revents & libc::POLLIN != 0),
            // No pidfd (pid already gone when attaching): poll the pid.
            None => !berth_runtime::proc::alive(pid, None),
        };
        if exited {
            // Give waitpid a moment to catch runc's init, our child.
            let deadline = Instant::now() + Duration::from_millis(500);
            while !args.state_dir.join(EXIT_FILE).exists() && Instant::now() < deadline {
                if !reap(args, pid) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            return;
        }
    }
}

/// Reaps children; records init's status if it is one of them. False when
/// there are no children left.
fn reap(args: &ShimArgs, init: i32) -> bool {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) => {
                if p.as_raw() == init {
                    write_exit(args, Some(code), None);
                }
            }
            Ok(WaitStatus::Signaled(p, sig, _)) => {
                if p.as_raw() == init {
                    write_exit(args, None, Some(sig as i32));
                }
            }
            Ok(WaitStatus::StillAlive) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

fn write_exit(args: &ShimArgs, code: Option<i32>, signal: Option<i32>) {
    let exit = ShimExit { code, signal };
    if let Ok(data) = serde_json::to_vec(&exit) {
        let _ = super::state::write_atomic(&args.state_dir.join(EXIT_FILE), &data);
    }
}

/// Reads what the FIFO has; true at EOF (no writer left).
fn copy_available(writer: &mut LogWriter, fd: &OwnedFd, stream: LogStream) -> bool {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match nix::unistd::read(fd.as_fd(), &mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                let _ = writer.write(stream, &buf[..n]);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
}

/// After init ended: reads until every writer is gone or `max` passed.
fn drain(writer: &mut LogWriter, out: &OwnedFd, err: &OwnedFd, max: Duration) {
    let deadline = Instant::now() + max;
    let mut eof = [false, false];
    while !(eof[0] && eof[1]) && Instant::now() < deadline {
        for (i, (fd, stream)) in [(out, LogStream::Stdout), (err, LogStream::Stderr)]
            .into_iter()
            .enumerate()
        {
            if !eof[i] {
                eof[i] = copy_available(writer, fd, stream);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
