//! `berth exec` and `berth attach` end to end (#14): the CLI on the client
//! host, the controller that resolves the task and proxies the stream, the
//! agent that runs `berth-runtime exec` in the task's namespaces and cgroup
//! (or connects to the task's shim), real containers. The interactive cases
//! drive the CLI through a PTY the test opens, as a user's terminal would.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_proto::v1::{CreateServiceRequest, ReplicatedMode, ServiceSpec, service_spec::Mode};
use berth_testhost::cluster::Cluster;
use berth_testhost::{bin_path, controllers, wait_until};

const CONVERGE: Duration = Duration::from_secs(60);
/// How long a terminal may take to show what the test waits for.
const SHOW: Duration = Duration::from_secs(30);

/// `berth ARGS...` on the client host with the admin bundle: (exit code,
/// stdout, stderr).
fn berth(cluster: &Cluster, args: &[&str]) -> Result<(i32, String, String)> {
    let out = cluster.berth_env(0, &[], args)?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A `berth ARGS...` command for the client host, stdio left to the caller.
fn berth_command(cluster: &Cluster, args: &[&str]) -> Result<std::process::Command> {
    let addr = cluster.c.address(0);
    let tls_dir = cluster.c.admin_dir().to_string_lossy().into_owned();
    let mut full = vec!["--controller", addr.as_str(), "--tls-dir", tls_dir.as_str()];
    full.extend_from_slice(args);
    cluster
        .c
        .net
        .host(cluster.c.client_host())
        .command(&bin_path("berth").to_string_lossy(), &full)
}

/// `berth ARGS...` with `input` on its stdin, then its end.
fn berth_with_stdin(cluster: &Cluster, args: &[&str], input: &[u8]) -> Result<Output> {
    let mut child = berth_command(cluster, args)?
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all(input)?;
    Ok(child.wait_with_output()?)
}

/// A PTY the test holds the master of; `berth` runs on its slave, which is
/// its controlling terminal (so a window change sends it SIGWINCH).
struct Terminal {
    master: OwnedFd,
    seen: Vec<u8>,
}

impl Terminal {
    fn spawn(mut cmd: std::process::Command, rows: u16, cols: u16) -> Result<(Terminal, Child)> {
        let pty = nix::pty::openpty(
            Some(&nix::pty::Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            }),
            None,
        )?;
        let slave = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and an ioctl on stdin between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().context("starting berth on the PTY")?;
        Ok((
            Terminal {
                master: pty.master,
                seen: Vec::new(),
            },
            child,
        ))
    }

    fn type_in(&self, bytes: &[u8]) -> Result<()> {
        let mut file = std::fs::File::from(self.master.try_clone()?);
        file.write_all(bytes)?;
        Ok(())
    }

    /// Reads until `want` shows up after what was consumed so far; what was
    /// read up to its end is consumed.
    fn expect(&mut self, want: &str) -> Result<()> {
        let deadline = Instant::now() + SHOW;
        loop {
            let text = String::from_utf8_lossy(&self.seen).into_owned();
            if let Some(at) = text.find(want) {
                let end = at + want.len();
                self.seen = text.as_bytes()[end..].to_vec();
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the terminal never showed {want:?}; it showed {text:?}");
            }
            self.read_some(Duration::from_millis(500))?;
        }
    }

    /// Reads what comes within `wait`.
    fn read_some(&mut self, wait: Duration) -> Result<()> {
        let mut fds = [nix::poll::PollFd::new(
            self.master.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms))? > 0 {
            let mut buf = [0u8; 4096];
            let mut file = std::fs::File::from(self.master.try_clone()?);
            match file.read(&mut buf) {
                Ok(n) => self.seen.extend_from_slice(&buf[..n]),
                // EIO: berth exited and closed the slave.
                Err(_) => std::thread::sleep(wait),
            }
        }
        Ok(())
    }

    /// Changes the window size, as a terminal emulator whose window is resized.
    fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
        if unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
            bail!("resize: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Creates a service through the API (for fields the CLI has no flag for).
fn create_through_api(cluster: &Cluster, spec: ServiceSpec) -> Result<()> {
    let addr = cluster.c.address(0);
    let security = cluster.c.security();
    cluster.c.run(async move {
        let mut client = controllers::connect(&addr, &security).await?;
        client
            .create_service(CreateServiceRequest {
                spec: Some(spec),
                no_resolve_image: false,
            })
            .await?;
        anyhow::Ok(())
    })
}

/// Waits for `child` (berth) to exit; its code.
fn exit_code(mut child: Child) -> Result<i32> {
    let status = wait_until("berth to exit", CONVERGE, || {
        child.try_wait().ok().flatten()
    })?;
    Ok(status.code().unwrap_or(-1))
}

#[test]
fn exec_runs_in_the_task_and_returns_its_status() -> Result<()> {
    let cluster = Cluster::start("exec", 1, 1, 0)?;
    cluster.create_service("web", &[], &["sleep", "3600"])?;
    cluster.wait_running("web", 1, CONVERGE)?;
    let task = cluster.ps("web")?.remove(0);

    // The task's filesystem (the image's busybox, none of the host's files),
    // hostname and network.
    let (code, out, err) = berth(
        &cluster,
        &[
            "exec",
            "web.1",
            "sh",
            "-c",
            "test -x /bin/busybox && test ! -e /etc/debian_version && echo image-fs",
        ],
    )?;
    assert!(std::path::Path::new("/etc/debian_version").exists());
    assert_eq!((code, out.as_str()), (0, "image-fs\n"), "{err}");
    let (code, out, err) = berth(&cluster, &["exec", "web", "hostname"])?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), &task.id[..12]);
    let (code, out, err) = berth(&cluster, &["exec", &task.id[..8], "ip", "-4", "addr"])?;
    assert_eq!(code, 0, "{err}");
    let address = task
        .addresses
        .values()
        .next()
        .context("an overlay address")?;
    assert!(out.contains(&address.to_string()), "{address} not in {out}");

    // Exit codes come back as they are; not found is 127, with the reason.
    let (code, _, _) = berth(&cluster, &["exec", "web.1", "true"])?;
    assert_eq!(code, 0);
    let (code, _, _) = berth(&cluster, &["exec", "web.1", "sh", "-c", "exit 3"])?;
    assert_eq!(code, 3);
    let (code, _, err) = berth(&cluster, &["exec", "web.1", "no-such-command"])?;
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("no-such-command"), "{err}");
    let (code, _, err) = berth(&cluster, &["exec", "web.1", "/bin"])?;
    assert_eq!(code, 126, "{err}");

    // -e, -w, -u, and stdout and stderr kept apart.
    let (code, out, err) = berth(
        &cluster,
        &[
            "exec",
            "-e",
            "GREETING=hi",
            "-w",
            "/bin",
            "-u",
            "1000:1000",
            "web.1",
            "sh",
            "-c",
            "echo $GREETING; pwd; id -u; echo to-stderr >&2",
        ],
    )?;
    assert_eq!((code, out.as_str()), (0, "hi\n/bin\n1000\n"), "{err}");
    assert_eq!(err, "to-stderr\n");

    // -i: stdin goes through, its end is the process's EOF.
    let out = berth_with_stdin(
        &cluster,
        &["exec", "-i", "web.1", "sh", "-c", "cat; exit 5"],
        b"through stdin\n",
    )?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through stdin\n");
    assert_eq!(out.status.code(), Some(5));

    // A task that is not running is refused, naming it and its state; berth's
    // own failure is 125.
    cluster.create_service("once", &["--restart-condition", "none"], &["true"])?;
    wait_until("once.1 complete", CONVERGE, || {
        let rows = cluster.ps("once").ok()?;
        rows.iter().any(|t| t.state == "complete").then_some(())
    })?;
    let (code, _, err) = berth(&cluster, &["exec", "once.1", "true"])?;
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("task once.1 ("), "{err}");
    assert!(err.contains("is not running: it is complete"), "{err}");
    let (code, _, err) = berth(&cluster, &["exec", "nothing-by-this-name", "true"])?;
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("not found"), "{err}");
    Ok(())
}

#[test]
fn exec_with_a_terminal_is_interactive_and_follows_resizes() -> Result<()> {
    let cluster = Cluster::start("exec_tty", 1, 1, 0)?;
    cluster.create_service("web", &[], &["sleep", "3600"])?;
    cluster.wait_running("web", 1, CONVERGE)?;
    let cmd = berth_command(&cluster, &["exec", "-it", "web.1", "sh"])?;
    let (mut term, child) = Terminal::spawn(cmd, 30, 90)?;
    // A prompt, a command and its output; the size at start.
    term.expect("# ")?;
    term.type_in(b"echo sum-$((40+2)); stty size\n")?;
    term.expect("sum-42")?;
    term.expect("30 90")?;
    // The window grows: SIGWINCH, and the process's terminal follows.
    term.resize(41, 132)?;
    wait_until("the remote terminal resized", SHOW, || {
        term.type_in(b"stty size\n").ok()?;
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            term.read_some(Duration::from_millis(200)).ok()?;
        }
        let seen = String::from_utf8_lossy(&term.seen).into_owned();
        term.seen.clear();
        seen.contains("41 132").then_some(())
    })?;
    // Ctrl-C goes through the local raw terminal to the process.
    // (Again until the prompt is back: a Ctrl-C that comes before the shell
    // started sleep interrupts the shell instead.)
    term.type_in(b"sleep 600\n")?;
    term.expect("sleep 600")?;
    wait_until("Ctrl-C to stop sleep", SHOW, || {
        term.type_in(b"\x03").ok()?;
        term.read_some(Duration::from_secs(1)).ok()?;
        String::from_utf8_lossy(&term.seen)
            .contains("# ")
            .then_some(())
    })?;
    term.seen.clear();
    term.type_in(b"echo status-$?\n")?;
    term.expect("status-130")?;
    term.type_in(b"exit 7\n")?;
    assert_eq!(exit_code(child)?, 7);
    Ok(())
}

#[test]
fn attach_reaches_a_task_on_a_terminal() -> Result<()> {
    let cluster = Cluster::start("exec_attach", 1, 1, 0)?;
    let spec = ServiceSpec {
        name: "shell".into(),
        image: cluster.image.clone(),
        command: vec!["sh".into()],
        mode: Some(Mode::Replicated(ReplicatedMode { replicas: 1 })),
        tty: true,
        open_stdin: true,
        ..Default::default()
    };
    create_through_api(&cluster, spec)?;
    cluster.wait_running("shell", 1, CONVERGE)?;
    let cmd = berth_command(&cluster, &["attach", "shell.1"])?;
    let (mut term, child) = Terminal::spawn(cmd, 25, 100)?;
    // The task's shell runs on a terminal the shim holds: what is typed
    // reaches it, and attaching set its size.
    wait_until("the attached shell answers", SHOW, || {
        term.type_in(b"echo att-$((2+3)); stty size\n").ok()?;
        term.read_some(Duration::from_millis(500)).ok()?;
        let seen = String::from_utf8_lossy(&term.seen).into_owned();
        (seen.contains("att-5") && seen.contains("25 100")).then_some(())
    })?;
    // The shell's end is the task's: attach exits with its status.
    term.type_in(b"exit 4\n")?;
    assert_eq!(exit_code(child)?, 4);
    // What the terminal showed is the task's log, as stdout.
    let logs = cluster.berth(&["service", "logs", "shell"])?;
    assert!(logs.contains("att-5"), "{logs}");
    Ok(())
}

#[test]
fn attach_sends_stdin_to_a_task_with_open_stdin() -> Result<()> {
    let cluster = Cluster::start("exec_stdin", 1, 1, 0)?;
    let spec = ServiceSpec {
        name: "reader".into(),
        image: cluster.image.clone(),
        command: vec![
            "sh".into(),
            "-c".into(),
            "while read line; do echo got-$line; done; echo stdin-closed; exit 6".into(),
        ],
        mode: Some(Mode::Replicated(ReplicatedMode { replicas: 1 })),
        open_stdin: true,
        ..Default::default()
    };
    create_through_api(&cluster, spec)?;
    cluster.wait_running("reader", 1, CONVERGE)?;
    // The task waits on its stdin (a pipe its shim holds): what attach sends
    // reaches it, and the end of attach's stdin is its EOF.
    let out = berth_with_stdin(&cluster, &["attach", "reader.1"], b"one\ntwo\n")?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "got-one\ngot-two\nstdin-closed\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(6));
    Ok(())
}

#[test]
fn run_it_gives_a_terminal_through_the_agent() -> Result<()> {
    let cluster = Cluster::start("run_tty", 1, 1, 0)?;
    let image = cluster.image.clone();
    let cmd = berth_command(
        &cluster,
        &["run", "-it", "--rm", "--name", "shell", &image, "sh"],
    )?;
    let (mut term, child) = Terminal::spawn(cmd, 25, 100)?;
    // A prompt once the task runs, a command, the size at start.
    term.expect("# ")?;
    term.type_in(b"echo sum-$((40+2)); stty size\n")?;
    term.expect("sum-42")?;
    term.expect("25 100")?;
    // The window changes and the task's terminal follows.
    term.resize(50, 140)?;
    wait_until("the one-off's terminal resized", SHOW, || {
        term.type_in(b"stty size\n").ok()?;
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            term.read_some(Duration::from_millis(200)).ok()?;
        }
        let seen = String::from_utf8_lossy(&term.seen).into_owned();
        term.seen.clear();
        seen.contains("50 140").then_some(())
    })?;
    term.type_in(b"exit 9\n")?;
    assert_eq!(exit_code(child)?, 9, "berth run exits with the task's code");
    // --rm: the one-off goes once it ended.
    wait_until("the one-off to be removed", CONVERGE, || {
        let (code, out, _) = berth(&cluster, &["ps", "-a", "-q", "--filter", "name=shell"]).ok()?;
        (code == 0 && out.trim().is_empty()).then_some(())
    })?;
    Ok(())
}
