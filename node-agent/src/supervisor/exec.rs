//! `berth exec` on the agent: a further process in a running task, run by the
//! OCI runtime's `exec` as a child process of the agent (which never forks a
//! container process itself), so it joins the task's namespaces and cgroup as
//! berth-runtime or runc do it. With a terminal the runtime sends the PTY's
//! master to a console socket of ours (`exec --tty --console-socket`); without
//! one the process gets pipes. Input and output travel as [`IoInput`] and
//! [`IoOutput`] messages, whatever carries them further (gRPC in `api/`).

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::error::{Result, SupervisorError};
use super::sock_path::ShortDir;

/// What to run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecRequest {
    pub command: Vec<String>,
    /// "KEY=VALUE" entries added to the task's environment.
    pub env: Vec<String>,
    /// `uid[:gid]` or names from the image; empty: the task's user.
    pub user: String,
    /// Empty: the task's working directory.
    pub workdir: String,
    pub tty: bool,
    /// Keep stdin open for `IoInput::Stdin` (else the process reads EOF).
    pub stdin: bool,
    /// Rows and cols of the terminal at start.
    pub size: Option<(u16, u16)>,
}

/// What the caller sends while a process runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoInput {
    Stdin(Vec<u8>),
    /// Rows and cols.
    Resize(u16, u16),
    CloseStdin,
}

/// What the caller gets: output, then the exit status last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoOutput {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(i32),
}

/// How long output may still come after the process exited (a background
/// child can hold a pipe or the terminal open forever).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// How long the runtime may take to send the terminal.
const CONSOLE_WAIT: Duration = Duration::from_secs(30);

/// Where and how a task's container runs exec.
pub(crate) struct ExecTarget {
    pub runtime: PathBuf,
    pub runtime_root: PathBuf,
    /// The shim command (program and leading arguments), whose `exec-wait`
    /// waits for a detached exec (`exec_wait.rs`).
    pub shim: Vec<OsString>,
    pub container_id: String,
    /// The container's rootfs (users are resolved in its /etc/passwd).
    pub rootfs: PathBuf,
    /// A directory of the task's for the console socket.
    pub scratch: PathBuf,
}

/// Runs `req` in the target's container: starts it (errors before the
/// process runs are returned), then streams until it exited.
pub(crate) async fn start(
    target: ExecTarget,
    req: ExecRequest,
    input: mpsc::Receiver<IoInput>,
    out: mpsc::Sender<IoOutput>,
) -> Result<()> {
    let err = |reason: String| SupervisorError::Task {
        task: target.container_id.clone(),
        reason,
    };
    if req.command.is_empty() {
        return Err(err("exec needs a command".into()));
    }
    // RUNTIME --root ROOT exec FLAGS... ID CMD...
    let mut exec: Vec<OsString> = vec![
        "--root".into(),
        target.runtime_root.clone().into(),
        "exec".into(),
    ];
    for e in &req.env {
        if !e.contains('=') || e.starts_with('=') {
            return Err(err(format!("environment entry {e:?} is not KEY=VALUE")));
        }
        exec.extend(["--env".into(), e.into()]);
    }
    if !req.workdir.is_empty() {
        if !req.workdir.starts_with('/') {
            return Err(err(format!(
                "working directory {:?} is not absolute",
                req.workdir
            )));
        }
        exec.extend(["--cwd".into(), req.workdir.clone().into()]);
    }
    if !req.user.is_empty() {
        let user = super::user::resolve_user(&target.rootfs, &req.user).map_err(err)?;
        exec.extend(["--user".into(), format!("{}:{}", user.uid, user.gid).into()]);
    }
    let console = if req.tty {
        let name = format!("exec-{}", uuid_like());
        let path = target.scratch.join(format!("{name}.sock"));
        let pid_file = target.scratch.join(format!("{name}.pid"));
        let dir = ShortDir::open(&target.scratch)
            .map_err(|e| SupervisorError::io("open", &target.scratch, e))?;
        let socket = dir.path(&format!("{name}.sock"));
        let listener = tokio::net::UnixListener::bind(&socket)
            .map_err(|e| SupervisorError::io("listen on", &path, e))?;
        // runc takes a console socket on exec only detached: the helper
        // waits for the detached process (see exec_wait.rs).
        exec.extend([
            "--detach".into(),
            "--pid-file".into(),
            pid_file.clone().into(),
            "--tty".into(),
            "--console-socket".into(),
            socket.into(),
        ]);
        Some((listener, path, dir, pid_file))
    } else {
        None
    };
    exec.push(target.container_id.clone().into());
    exec.extend(req.command.iter().map(OsString::from));
    let mut cmd = match &console {
        Some((.., pid_file)) => {
            let (program, lead) = target
                .shim
                .split_first()
                .ok_or_else(|| err("no shim command configured".into()))?;
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(lead)
                .arg(super::exec_wait::EXEC_WAIT)
                .arg(pid_file)
                .arg(&target.runtime)
                .args(&exec);
            cmd
        }
        None => {
            let mut cmd = tokio::process::Command::new(&target.runtime);
            cmd.args(&exec);
            cmd
        }
    };
    cmd.kill_on_drop(true).stderr(Stdio::piped());
    if req.tty {
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
    } else {
        cmd.stdin(if req.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| err(format!("cannot run {}: {e}", target.runtime.display())))?;
    match console {
        Some((listener, path, _dir, pid_file)) => {
            let master = tokio::select! {
                accepted = tokio::time::timeout(CONSOLE_WAIT, listener.accept()) => {
                    let _ = std::fs::remove_file(&path);
                    let (conn, _) = accepted
                        .map_err(|_| err("the runtime sent no terminal".into()))?
                        .map_err(|e| err(format!("console socket: {e}")))?;
                    receive_master(conn).await.map_err(err)?
                }
                status = child.wait() => {
                    let _ = std::fs::remove_file(&path);
                    let _ = std::fs::remove_file(&pid_file);
                    // The runtime failed before the process ran: its stderr says why.
                    let mut text = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut text).await;
                    }
                    let code = status.map(shell_code).unwrap_or(255);
                    let _ = out.send(IoOutput::Stderr(text.into_bytes())).await;
                    let _ = out.send(IoOutput::Exit(code)).await;
                    return Ok(());
                }
            };
            tokio::spawn(run_tty(child, master, req.size, input, out));
        }
        None => {
            tokio::spawn(run_pipes(child, input, out));
        }
    }
    Ok(())
}

/// A name for a console socket no other exec uses at the same time.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

async fn receive_master(conn: tokio::net::UnixStream) -> std::result::Result<OwnedFd, String> {
    let conn = conn.into_std().map_err(|e| e.to_string())?;
    conn.set_nonblocking(false).map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || {
        berth_runtime::console::recv_master(&conn).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The shell's status of an exited process.
fn shell_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or(status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

/// A terminal's master, non-blocking, for tokio.
pub(crate) struct Pty(AsyncFd<OwnedFd>);

impl Pty {
    pub(crate) fn new(master: OwnedFd) -> std::io::Result<Pty> {
        super::shim_io::set_nonblocking(&master).map_err(std::io::Error::from)?;
        // SAFETY: the OwnedFd moves into the AsyncFd, which keeps it open and
        // unchanged while it is registered.
        unsafe { AsyncFd::register(master) }
            .map(Pty)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// What the terminal shows; 0 once its slave side is closed.
    pub(crate) async fn read(&self, buf: &mut [u8]) -> usize {
        loop {
            let Ok(mut guard) = self.0.readable().await else {
                return 0;
            };
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(Into::into)) {
                Ok(Ok(n)) => return n,
                // EIO: no slave left.
                Ok(Err(_)) => return 0,
                Err(_would_block) => continue,
            }
        }
    }

    pub(crate) async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.0.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(Into::into)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    pub(crate) fn resize(&self, rows: u16, cols: u16) {
        let size = berth_runtime::console::WindowSize { rows, cols };
        let _ = berth_runtime::console::resize(self.0.get_ref(), size);
    }
}

async fn run_tty(
    mut child: tokio::process::Child,
    master: OwnedFd,
    size: Option<(u16, u16)>,
    mut input: mpsc::Receiver<IoInput>,
    out: mpsc::Sender<IoOutput>,
) {
    let pty = match Pty::new(master) {
        Ok(p) => std::sync::Arc::new(p),
        Err(e) => {
            let _ = out
                .send(IoOutput::Stderr(format!("terminal: {e}\n").into_bytes()))
                .await;
            let _ = child.kill().await;
            let _ = out.send(IoOutput::Exit(255)).await;
            return;
        }
    };
    if let Some((rows, cols)) = size {
        pty.resize(rows, cols);
    }
    let writer = pty.clone();
    let typing = tokio::spawn(async move {
        while let Some(msg) = input.recv().await {
            match msg {
                IoInput::Stdin(data) => {
                    if writer.write_all(&data).await.is_err() {
                        return;
                    }
                }
                IoInput::Resize(rows, cols) => writer.resize(rows, cols),
                IoInput::CloseStdin => {}
            }
        }
    });
    let stderr = child.stderr.take();
    let errors = tokio::spawn(copy(stderr, out.clone(), IoOutput::Stderr));
    let reader = pty.clone();
    let out2 = out.clone();
    let mut showing = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = reader.read(&mut buf).await;
            if n == 0
                || out2
                    .send(IoOutput::Stdout(buf[..n].to_vec()))
                    .await
                    .is_err()
            {
                return;
            }
        }
    });
    let status = tokio::select! {
        status = child.wait() => status,
        // The client went away: the process loses its terminal.
        _ = out.closed() => {
            let _ = child.kill().await;
            typing.abort();
            showing.abort();
            return;
        }
    };
    let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, &mut showing).await;
    showing.abort();
    typing.abort();
    let _ = errors.await;
    let code = status.map(shell_code).unwrap_or(255);
    let _ = out.send(IoOutput::Exit(code)).await;
}

async fn run_pipes(
    mut child: tokio::process::Child,
    mut input: mpsc::Receiver<IoInput>,
    out: mpsc::Sender<IoOutput>,
) {
    let stdin = child.stdin.take();
    let typing = tokio::spawn(async move {
        let Some(mut stdin) = stdin else {
            return;
        };
        while let Some(msg) = input.recv().await {
            match msg {
                IoInput::Stdin(data) => {
                    if stdin.write_all(&data).await.is_err() {
                        return;
                    }
                }
                IoInput::Resize(..) => {}
                IoInput::CloseStdin => return,
            }
        }
    });
    let stdout = tokio::spawn(copy(child.stdout.take(), out.clone(), IoOutput::Stdout));
    let stderr = tokio::spawn(copy(child.stderr.take(), out.clone(), IoOutput::Stderr));
    let status = tokio::select! {
        status = child.wait() => status,
        _ = out.closed() => {
            let _ = child.kill().await;
            typing.abort();
            return;
        }
    };
    typing.abort();
    for mut reader in [stdout, stderr] {
        if tokio::time::timeout(DRAIN_AFTER_EXIT, &mut reader)
            .await
            .is_err()
        {
            reader.abort();
        }
    }
    let code = status.map(shell_code).unwrap_or(255);
    let _ = out.send(IoOutput::Exit(code)).await;
}

/// Copies a pipe into output messages until its end.
async fn copy<R: AsyncRead + Unpin>(
    from: Option<R>,
    out: mpsc::Sender<IoOutput>,
    wrap: fn(Vec<u8>) -> IoOutput,
) {
    let Some(mut from) = from else {
        return;
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.send(wrap(buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    }
}
