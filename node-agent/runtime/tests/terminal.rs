//! Terminals (runc's `--console-socket`) and exec's stdio and exit codes, for
//! berth-runtime and runc alike: the caller listens on a Unix socket, the
//! runtime sends the PTY's master there, and the process runs on its slave.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth_runtime::console::{self, WindowSize};
use common::{Fixture, Runtime, stderr, stdout};
use oci_spec::runtime::BoxBuilder;

/// A console socket in the fixture's directory.
fn listen(fx: &Fixture, name: &str) -> Result<(UnixListener, PathBuf)> {
    let path = fx.dir.path().join(format!("{name}.sock"));
    Ok((UnixListener::bind(&path)?, path))
}

/// The master the runtime sent to `listener`.
fn accept_master(listener: &UnixListener) -> Result<OwnedFd> {
    let (conn, _) = listener.accept()?;
    Ok(console::recv_master(&conn)?)
}

/// Reads from `master` until `want` shows up (or the terminal hangs up), then
/// returns everything read.
fn read_until(master: &OwnedFd, want: &str) -> Result<String> {
    let mut file = std::fs::File::from(master.try_clone()?);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&seen).contains(want) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no {want:?} on the terminal; it showed {:?}",
            String::from_utf8_lossy(&seen)
        );
        let mut fds = [nix::poll::PollFd::new(
            master.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(500u16))? == 0 {
            continue;
        }
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    Ok(String::from_utf8_lossy(&seen).into_owned())
}

#[test]
fn create_with_a_terminal_sends_its_master() -> Result<()> {
    let fx = Fixture::new("tty-create")?;
    for rt in [Runtime::Berth, Runtime::Runc] {
        let name = format!("tty-{rt:?}").to_lowercase();
        let spec = fx.spec(
            &name,
            &[
                "sh",
                "-c",
                "tty; stty size; ls -l /proc/self/fd/0; read x; echo got-$x",
            ],
            |s| {
                let mut p = s.process().clone().expect("process");
                p.set_terminal(Some(true));
                p.set_console_size(Some(
                    BoxBuilder::default()
                        .height(31u64)
                        .width(97u64)
                        .build()
                        .expect("box"),
                ));
                s.set_process(Some(p));
            },
        );
        let bundle = fx.bundle(&name, &spec)?;
        let id = fx.id(&name);
        let (listener, socket) = listen(&fx, &name)?;
        fx.start_with(
            rt,
            &bundle,
            &id,
            &["--console-socket", &socket.to_string_lossy()],
        )?;
        let master = accept_master(&listener)?;
        nix::unistd::write(&master, b"hello\n")?;
        let seen = read_until(&master, "got-hello")?;
        assert!(seen.contains("/dev/pts/0"), "{rt:?}: {seen}");
        assert!(seen.contains("31 97"), "{rt:?}: {seen}");
        assert!(seen.contains("got-hello"), "{rt:?}: {seen}");
    }
    Ok(())
}

#[test]
fn a_terminal_without_a_socket_and_a_socket_without_a_terminal_are_refused() -> Result<()> {
    let fx = Fixture::new("tty-refused")?;
    let spec = fx.spec("t", &["true"], |s| {
        let mut p = s.process().clone().expect("process");
        p.set_terminal(Some(true));
        s.set_process(Some(p));
    });
    let bundle = fx.bundle("t", &spec)?.to_string_lossy().into_owned();
    let out = fx.cmd(
        Runtime::Berth,
        &["create", "--bundle", &bundle, &fx.id("t")],
    )?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--console-socket"),
        "{}",
        stderr(&out)
    );
    let plain = fx.spec("p", &["true"], |_| {});
    let bundle = fx.bundle("p", &plain)?.to_string_lossy().into_owned();
    let (_listener, socket) = listen(&fx, "p")?;
    let out = fx.cmd(
        Runtime::Berth,
        &[
            "create",
            "--console-socket",
            &socket.to_string_lossy(),
            "--bundle",
            &bundle,
            &fx.id("p"),
        ],
    )?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("process.terminal is false"),
        "{}",
        stderr(&out)
    );
    // Nothing was left behind.
    let list = fx.cmd(Runtime::Berth, &["list", "-q"])?;
    assert_eq!(stdout(&list).trim(), "");
    Ok(())
}

/// berth-runtime only: runc (1.1) takes `--console-socket` on exec only with
/// `--detach`, and then nobody waits for the process's exit status; the
/// master arrives the same way.
#[test]
fn exec_with_a_tty_runs_on_a_new_terminal() -> Result<()> {
    let fx = Fixture::new("tty-exec")?;
    {
        let rt = Runtime::Berth;
        let name = "exec-berth".to_string();
        let spec = fx.spec(&name, &["sleep", "600"], |_| {});
        let bundle = fx.bundle(&name, &spec)?;
        let id = fx.id(&name);
        fx.start(rt, &bundle, &id)?;
        let (listener, socket) = listen(&fx, &name)?;
        let mut exec = Command::new(rt.binary())
            .arg("--root")
            .arg(fx.state_root(rt))
            .args(["exec", "--tty", "--console-socket"])
            .arg(&socket)
            .args([id.as_str(), "sh"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let master = accept_master(&listener)?;
        console::resize(
            &master,
            WindowSize {
                rows: 40,
                cols: 120,
            },
        )?;
        // The child says it is about to become `sleep` ($((1+1)): not the
        // echoed command line): a Ctrl-C before that would reach the shell.
        nix::unistd::write(
            &master,
            b"tty; stty size; sh -c 'echo sleep-$((1+1)); exec sleep 600'\n",
        )?;
        let seen = read_until(&master, "sleep-2")?;
        assert!(seen.contains("/dev/pts/"), "{rt:?}: {seen}");
        assert!(seen.contains("40 120"), "{rt:?}: {seen}");
        // Ctrl-C reaches the foreground process through the terminal.
        nix::unistd::write(&master, b"\x03")?;
        nix::unistd::write(&master, b"echo after-$?; exit 3\n")?;
        let seen = read_until(&master, "after-130")?;
        assert!(seen.contains("after-130"), "{rt:?}: {seen}");
        let status = exec.wait()?;
        assert_eq!(status.code(), Some(3), "{rt:?}");
        let mut err = String::new();
        if let Some(mut e) = exec.stderr.take() {
            e.read_to_string(&mut err)?;
        }
        assert!(err.is_empty(), "{rt:?}: {err}");
    }
    Ok(())
}

#[test]
fn exec_without_a_tty_inherits_stdio_and_exit_codes() -> Result<()> {
    let fx = Fixture::new("exec-stdio")?;
    let spec = fx.spec("s", &["sleep", "600"], |_| {});
    let bundle = fx.bundle("s", &spec)?;
    let id = fx.id("s");
    fx.start(Runtime::Berth, &bundle, &id)?;
    // stdin comes through, and its end is an EOF for the process.
    let mut exec = Command::new(common::BERTH)
        .arg("--root")
        .arg(fx.state_root(Runtime::Berth))
        .args([
            "exec",
            id.as_str(),
            "sh",
            "-c",
            "cat; echo done >&2; exit 5",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    exec.stdin
        .take()
        .context("stdin")?
        .write_all(b"through stdin\n")?;
    let out = exec.wait_with_output()?;
    assert_eq!(stdout(&out), "through stdin\n");
    assert_eq!(stderr(&out), "done\n");
    assert_eq!(out.status.code(), Some(5));
    // Not found: 127; found but not executable: 126; each with why on stderr.
    let out = fx.cmd(Runtime::Berth, &["exec", &id, "no-such-command"])?;
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("\"no-such-command\" not found"),
        "{}",
        stderr(&out)
    );
    let out = fx.cmd(Runtime::Berth, &["exec", &id, "/bin"])?;
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(stderr(&out).contains("/bin"), "{}", stderr(&out));
    // runc reports both as a failed exec, with the reason on stderr too.
    let runc_id = fx.id("r");
    let runc_spec = fx.spec("r", &["sleep", "600"], |_| {});
    fx.start(Runtime::Runc, &fx.bundle("r", &runc_spec)?, &runc_id)?;
    let out = fx.cmd(Runtime::Runc, &["exec", &runc_id, "no-such-command"])?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no-such-command"), "{}", stderr(&out));
    // A tty without a socket is refused, before anything runs.
    let out = fx.cmd(Runtime::Berth, &["exec", "--tty", &id, "true"])?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--console-socket"),
        "{}",
        stderr(&out)
    );
    Ok(())
}

#[test]
fn exec_detached_writes_the_pid_and_returns() -> Result<()> {
    let fx = Fixture::new("exec-detach")?;
    for rt in [Runtime::Berth, Runtime::Runc] {
        let name = format!("d-{rt:?}").to_lowercase();
        let spec = fx.spec(&name, &["sleep", "600"], |_| {});
        let id = fx.id(&name);
        fx.start(rt, &fx.bundle(&name, &spec)?, &id)?;
        let pid_file = fx.dir.path().join(format!("{name}.pid"));
        let pid_path = pid_file.to_string_lossy().into_owned();
        // The detached process keeps the caller's stdio: a file, not a pipe
        // the caller would wait on.
        let log = fx.dir.path().join(format!("{name}.log"));
        let status = Command::new(rt.binary())
            .arg("--root")
            .arg(fx.state_root(rt))
            .args(["exec", "-d", "--pid-file", &pid_path, &id, "sleep", "321"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(&log)?)
            .status()?;
        assert!(
            status.success(),
            "{rt:?}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let pid: i32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
        // runc writes the pid file before its init has exec'd the command
        // (the process is briefly runc's init, or between images with an
        // empty cmdline): wait for the exec to land, within a bound.
        let want = b"sleep\x00321\x00".to_vec();
        let mut cmdline = Vec::new();
        for _ in 0..500 {
            cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
            if cmdline == want {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(cmdline, want, "{rt:?}");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )?;
    }
    Ok(())
}
