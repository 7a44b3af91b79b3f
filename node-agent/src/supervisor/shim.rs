//! The per-container shim: a tiny detached process (its own session) that
//! creates the container through the runtime, owns its stdout/stderr and writes
//! them to the rotating log files, and reaps init and records its exit status.
//!
//! Why a shim: the container's output must keep being captured, and the
//! container must keep running, while the agent restarts or crashes. The shim
//! does not depend on the agent at all after it reported the init pid.
//!
//! It is the only process berth keeps per container, so it is kept small:
//! its own binary (`berth-shim`, not the agent's), single-threaded, no async
//! runtime, no argument parser, no buffers beyond a read buffer on the stack.
//! berth-runtime forks no monitor for it (`BERTH_RUNTIME_NO_MONITOR`): the
//! shim, a child subreaper, is init's parent once `create` returns, as with
//! runc. See docs/design/agent.md ("Per-container processes").
//!
//! - stdout and stderr are named FIFOs in the task's state directory. The
//!   container gets them opened read-write, so it never sees EPIPE or SIGPIPE,
//!   even if the shim itself dies: it blocks once the 64 KiB pipe buffer is
//!   full, and a new shim (`--attach PID`, started by the re-adopting agent)
//!   reopens the FIFOs by path and drains them.
//! - The shim is a child subreaper, so init (whose parent, `runc create` or
//!   `berth-runtime create`, exits) is reparented to it and its exit status is
//!   caught by `waitpid` and written to `exit.json`.
//! - The end of the output is init's exit (a pidfd), not EOF: when init of a
//!   pid namespace dies, the kernel kills the rest, the FIFOs are drained, and
//!   a `closed` marker ends `logs --follow`.
//! - A tty task (`process.terminal` in its bundle) runs on a terminal: the
//!   runtime sends its master to `console.sock` during `create`, and the
//!   shim logs what the master shows as stdout. An `open_stdin` task (the
//!   bundle's `run.berth.open-stdin` annotation) gets a pipe as stdin whose
//!   write end the shim keeps. `berth attach` reaches both through
//!   `attach.sock` (see `shim_io.rs`).

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::attach_wire;
use super::error::{Result, SupervisorError};
use super::logs::{self, LogLimits, LogStream, LogWriter};
use super::runtime::last_message;
use super::shim_io::{self, Attach, read_available};
use super::sock_path::ShortDir;

/// The shim's binary, installed beside berth-agent (and berth).
pub const SHIM_BINARY: &str = "berth-shim";
pub(crate) const STDOUT_FIFO: &str = "stdout.fifo";
pub(crate) const STDERR_FIFO: &str = "stderr.fifo";
pub(crate) const EXIT_FILE: &str = "exit.json";
pub(crate) const PID_FILE: &str = "init.pid";
pub(crate) const SHIM_PID_FILE: &str = "shim.pid";
/// Asks berth-runtime's `create` for no monitor process (see its `main.rs`).
const NO_MONITOR_ENV: &str = "BERTH_RUNTIME_NO_MONITOR";

/// Arguments of `berth-shim` (internal: the supervisor starts it). Parsed by
/// hand: the shim runs once per container for its whole life, and an argument
/// parser's code and tables would stay resident in every one of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShimArgs {
    /// The OCI runtime binary (`--runtime`).
    pub runtime: PathBuf,
    /// The runtime's --root (`--runtime-root`).
    pub runtime_root: PathBuf,
    /// The bundle to create the container from (`--bundle`).
    pub bundle: PathBuf,
    /// Container id (`--id`).
    pub id: String,
    /// The task's state directory: FIFOs, pid and exit files (`--state-dir`).
    pub state_dir: PathBuf,
    /// The task's log directory (`--log-dir`).
    pub log_dir: PathBuf,
    /// `--log-max-bytes`.
    pub log_max_bytes: u64,
    /// `--log-max-files`.
    pub log_max_files: u32,
    /// Do not create: attach to the running container whose init has this
    /// pid (`--attach PID`).
    pub attach: Option<i32>,
}

impl ShimArgs {
    /// Parses `--flag VALUE` pairs; every flag but `--attach` and the log
    /// limits is required.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> std::result::Result<Self, String> {
        let mut runtime = None;
        let mut runtime_root = None;
        let mut bundle = None;
        let mut id = None;
        let mut state_dir = None;
        let mut log_dir = None;
        let defaults = LogLimits::default();
        let (mut log_max_bytes, mut log_max_files) = (defaults.max_bytes, defaults.max_files);
        let mut attach = None;
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let flag = flag.to_string_lossy().into_owned();
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let text = || {
                value
                    .to_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{flag}: {value:?} is not UTF-8"))
            };
            let number = |what: &str| format!("{flag}: {value:?} is not {what}");
            match flag.as_str() {
                "--runtime" => runtime = Some(PathBuf::from(&value)),
                "--runtime-root" => runtime_root = Some(PathBuf::from(&value)),
                "--bundle" => bundle = Some(PathBuf::from(&value)),
                "--id" => id = Some(text()?),
                "--state-dir" => state_dir = Some(PathBuf::from(&value)),
                "--log-dir" => log_dir = Some(PathBuf::from(&value)),
                "--log-max-bytes" => {
                    log_max_bytes = text()?.parse().map_err(|_| number("a byte count"))?;
                }
                "--log-max-files" => {
                    log_max_files = text()?.parse().map_err(|_| number("a file count"))?;
                }
                "--attach" => attach = Some(text()?.parse().map_err(|_| number("a pid"))?),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        let need = |v: Option<PathBuf>, flag: &str| v.ok_or_else(|| format!("{flag} is required"));
        Ok(ShimArgs {
            runtime: need(runtime, "--runtime")?,
            runtime_root: need(runtime_root, "--runtime-root")?,
            bundle: need(bundle, "--bundle")?,
            id: id.ok_or("--id is required")?,
            state_dir: need(state_dir, "--state-dir")?,
            log_dir: need(log_dir, "--log-dir")?,
            log_max_bytes,
            log_max_files,
            attach,
        })
    }
}

/// How init ended, as the shim saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// Entry point of the shim process: `args` are the arguments after `shim`.
pub fn main_shim(args: Vec<OsString>) -> ExitCode {
    if args
        .first()
        .is_some_and(|a| a == super::exec_wait::EXEC_WAIT)
    {
        super::exec_wait::main_exec_wait(args.into_iter().skip(1).collect());
    }
    let args = match ShimArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("berth-shim: {e}");
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
    let (tty, open_stdin) = shim_io::bundle_stdio(&args.bundle);
    let mut terminal = None;
    let mut stdin = None;
    let pid = match args.attach {
        Some(pid) => pid,
        None => match create(args, &out_path, &err_path, tty, open_stdin) {
            Ok(created) => {
                terminal = created.terminal;
                stdin = created.stdin;
                let pid = created.pid;
                report(&format!("ok {pid}"));
                pid
            }
            Err(reason) => {
                report(&format!("err {}", reason.replace('\n', " ")));
                let mut out = Output {
                    writer: &mut writer,
                    attach: None,
                };
                out.drain(
                    &[
                        (&read_out, LogStream::Stdout),
                        (&read_err, LogStream::Stderr),
                    ],
                    Duration::from_millis(200),
                );
                close(&mut writer, &args.log_dir);
                return Ok(());
            }
        },
    };
    let mut attach = Attach::open(&args.state_dir, terminal.as_ref(), stdin);
    // A terminal carries all of the process's output; the FIFOs only what
    // the runtime itself may write.
    let sources: Vec<(&OwnedFd, LogStream)> = match &terminal {
        Some(t) => vec![(t, LogStream::Stdout)],
        None => vec![
            (&read_out, LogStream::Stdout),
            (&read_err, LogStream::Stderr),
        ],
    };
    let pidfd = berth_runtime::proc::pidfd(pid, None);
    let mut out = Output {
        writer: &mut writer,
        attach: Some(&mut attach),
    };
    pump(args, &mut out, &sources, pid, pidfd.as_ref());
    out.drain(&sources, Duration::from_secs(2));
    drop(attach);
    let _ = std::fs::remove_file(args.state_dir.join(shim_io::ATTACH_SOCKET));
    close(&mut writer, &args.log_dir);
    Ok(())
}

/// Where the container's output goes: the log, and attached clients.
struct Output<'a> {
    writer: &'a mut LogWriter,
    attach: Option<&'a mut Attach>,
}

impl Output<'_> {
    /// Copies what `fd` has; true at its end.
    fn copy(&mut self, fd: &OwnedFd, stream: LogStream) -> bool {
        let kind = match stream {
            LogStream::Stdout => attach_wire::STDOUT,
            LogStream::Stderr => attach_wire::STDERR,
        };
        read_available(fd, |data| {
            let _ = self.writer.write(stream, data);
            if let Some(a) = self.attach.as_deref_mut() {
                a.broadcast(kind, data);
            }
        })
    }

    /// After init ended: reads until every writer is gone or `max` passed.
    fn drain(&mut self, sources: &[(&OwnedFd, LogStream)], max: Duration) {
        let deadline = Instant::now() + max;
        let mut eof = vec![false; sources.len()];
        while eof.iter().any(|e| !e) && Instant::now() < deadline {
            for (i, (fd, stream)) in sources.iter().enumerate() {
                if !eof[i] {
                    eof[i] = self.copy(fd, *stream);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
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

/// A created container: init's pid, and what the shim keeps of its stdio.
struct Created {
    pid: i32,
    /// A tty task's terminal master.
    terminal: Option<OwnedFd>,
    /// The write end of an open_stdin task's stdin.
    stdin: Option<OwnedFd>,
}

/// Runs `runtime create`; the container, or why it failed.
fn create(
    args: &ShimArgs,
    out_path: &Path,
    err_path: &Path,
    tty: bool,
    open_stdin: bool,
) -> Result<Created, String> {
    let out = open_fifo(out_path, libc::O_RDWR).map_err(|e| e.to_string())?;
    let err = open_fifo(err_path, libc::O_RDWR).map_err(|e| e.to_string())?;
    let log = args.state_dir.join("runtime.log");
    let pid_file = args.state_dir.join(PID_FILE);
    let _ = std::fs::remove_file(&pid_file);
    let mut cmd = std::process::Command::new(&args.runtime);
    // berth-runtime then forks no monitor: init becomes this subreaper's
    // child once `create` exits, as runc's does (other runtimes ignore it).
    cmd.env(NO_MONITOR_ENV, "1");
    cmd.arg("--root")
        .arg(&args.runtime_root)
        .arg("--log")
        .arg(&log)
        .arg("create")
        .arg("--bundle")
        .arg(&args.bundle)
        .arg("--pid-file")
        .arg(&pid_file);
    let console = args.state_dir.join(shim_io::CONSOLE_SOCKET);
    let console_listener = if tty {
        let _ = std::fs::remove_file(&console);
        let dir = ShortDir::open(&args.state_dir)
            .map_err(|e| format!("cannot open {}: {e}", args.state_dir.display()))?;
        let short = dir.path(shim_io::CONSOLE_SOCKET);
        let listener = std::os::unix::net::UnixListener::bind(&short)
            .map_err(|e| format!("cannot listen on {}: {e}", console.display()))?;
        cmd.arg("--console-socket").arg(&short);
        Some((listener, dir))
    } else {
        None
    };
    let mut stdin_writer = None;
    let stdin = if open_stdin && !tty {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| format!("cannot make the stdin pipe: {e}"))?;
        stdin_writer = Some(w);
        Stdio::from(r)
    } else {
        Stdio::null()
    };
    cmd.arg(&args.id)
        .stdin(stdin)
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
    let pid = text
        .trim()
        .parse()
        .map_err(|_| format!("pid file {} holds {text:?}", pid_file.display()))?;
    let terminal = match &console_listener {
        Some((l, _dir)) => {
            let master = shim_io::receive_master(l, Duration::from_secs(10));
            let _ = std::fs::remove_file(&console);
            Some(master?)
        }
        None => None,
    };
    Ok(Created {
        pid,
        terminal,
        stdin: stdin_writer,
    })
}

/// Copies output to the log (and attached clients) until init exits, and
/// serves attaches meanwhile.
fn pump(
    args: &ShimArgs,
    out: &mut Output,
    sources: &[(&OwnedFd, LogStream)],
    pid: i32,
    pidfd: Option<&OwnedFd>,
) {
    let mut eof = vec![false; sources.len()];
    loop {
        let mut fds = Vec::new();
        if let Some(p) = pidfd {
            fds.push(libc::pollfd {
                fd: p.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        for (i, (fd, _)) in sources.iter().enumerate() {
            if !eof[i] {
                fds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        if let Some(a) = out.attach.as_deref() {
            for (fd, events) in a.poll_fds() {
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
            }
        }
        // SAFETY: a valid array of pollfds.
        unsafe {
            libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1000);
        }
        for (i, (fd, stream)) in sources.iter().enumerate() {
            if !eof[i] && out.copy(fd, *stream) {
                eof[i] = true;
            }
        }
        if let Some(a) = out.attach.as_deref_mut() {
            a.service();
        }
        reap(args, pid);
        let exited = match pidfd {
            Some(_) => fds.first().is_some_and(|p| p.revents & libc::POLLIN != 0),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    const REQUIRED: [&str; 12] = [
        "--runtime",
        "/usr/bin/berth-runtime",
        "--runtime-root",
        "/run/r",
        "--bundle",
        "/b",
        "--id",
        "web-1",
        "--state-dir",
        "/s",
        "--log-dir",
        "/l",
    ];

    #[test]
    fn the_agents_arguments_are_parsed() {
        let mut list = REQUIRED.to_vec();
        list.extend([
            "--log-max-bytes",
            "1024",
            "--log-max-files",
            "2",
            "--attach",
            "42",
        ]);
        let parsed = ShimArgs::parse(args(&list)).expect("parsed");
        assert_eq!(parsed.runtime, PathBuf::from("/usr/bin/berth-runtime"));
        assert_eq!(parsed.id, "web-1");
        assert_eq!(parsed.state_dir, PathBuf::from("/s"));
        assert_eq!((parsed.log_max_bytes, parsed.log_max_files), (1024, 2));
        assert_eq!(parsed.attach, Some(42));
        let defaults = ShimArgs::parse(args(&REQUIRED)).expect("parsed");
        assert_eq!(defaults.log_max_bytes, LogLimits::default().max_bytes);
        assert_eq!(defaults.attach, None);
    }

    #[test]
    fn bad_arguments_are_named() {
        let err = |list: &[&str]| ShimArgs::parse(args(list)).expect_err("refused");
        assert_eq!(err(&REQUIRED[2..]), "--runtime is required");
        let mut unknown = REQUIRED.to_vec();
        unknown.extend(["--tty", "yes"]);
        assert_eq!(err(&unknown), "unknown argument \"--tty\"");
        let mut missing = REQUIRED.to_vec();
        missing.push("--attach");
        assert_eq!(err(&missing), "--attach needs a value");
        let mut bad = REQUIRED.to_vec();
        bad.extend(["--attach", "x"]);
        assert_eq!(err(&bad), "--attach: \"x\" is not a pid");
    }
}
