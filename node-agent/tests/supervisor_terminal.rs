//! Terminals and exec through the supervisor, with berth-runtime and runc: a
//! tty task runs on a terminal its shim holds (what it shows is logged as
//! stdout), and `Supervisor::exec` runs a process in a running task with its
//! env, output and exit status, on a terminal too (runtime `exec --detach
//! --tty --console-socket`, waited for by the shim's `exec-wait`).

#[path = "support/supervisor.rs"]
mod fixture;
mod support;

use std::time::Duration;

use anyhow::{Context, Result};
use berth_agent::supervisor::{ExecRequest, IoInput, IoOutput, Supervisor};
use berth_proto::v1::TaskState;
use fixture::{Env, Rt, Seen, in_private_mounts, log_texts};
use tokio::sync::mpsc;

const T: Duration = Duration::from_secs(60);

/// Runs `req` in `task`; (stdout, stderr, exit status). `typed` goes in first.
async fn exec(
    sup: &Supervisor,
    task: &str,
    req: ExecRequest,
    typed: &[IoInput],
) -> Result<(String, String, i32)> {
    let (in_tx, in_rx) = mpsc::channel(16);
    let (out_tx, mut out_rx) = mpsc::channel(16);
    sup.exec(task, req, in_rx, out_tx).await?;
    for input in typed {
        in_tx.send(input.clone()).await?;
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        let msg = tokio::time::timeout(T, out_rx.recv())
            .await
            .context("exec output")?
            .context("output ended before the exit status")?;
        match msg {
            IoOutput::Stdout(b) => out.extend(b),
            IoOutput::Stderr(b) => err.extend(b),
            IoOutput::Exit(code) => {
                return Ok((
                    String::from_utf8_lossy(&out).into_owned(),
                    String::from_utf8_lossy(&err).into_owned(),
                    code,
                ));
            }
        }
    }
}

fn terminal_and_exec(rt: Rt, name: &str) -> Result<()> {
    let env = std::sync::Arc::new(Env::new(name, rt)?);
    let e = env.clone();
    in_private_mounts(move || async move {
        let (sup, rx) = e.open().await?;
        let mut rx = Seen::new(rx);
        // A tty task: the shim got the terminal from `runtime create`.
        let mut tty = e.task("tty", "tty; stty size; echo on-a-terminal");
        if let Some(spec) = tty.spec.as_mut() {
            spec.tty = true;
        }
        // A task to exec into.
        let sleeper = e.task("sleeper", "exec sleep 600");
        sup.reconcile(vec![tty.clone(), sleeper.clone()]);
        let end = rx.end(&tty.id, T).await?;
        assert_eq!(end.exit_code, Some(0), "{end:?}");
        let texts = log_texts(&sup, &tty.id, 3).await?.join("\n");
        assert!(texts.contains("/dev/pts/0"), "{texts}");
        assert!(texts.contains("24 80"), "{texts}");
        assert!(texts.contains("on-a-terminal"), "{texts}");

        rx.until(&sleeper.id, T, |s| s.state == TaskState::Running as i32)
            .await?;
        let req = ExecRequest {
            command: vec![
                "sh".into(),
                "-c".into(),
                "echo $X; pwd; echo e >&2; exit 3".into(),
            ],
            env: vec!["X=from-exec".into()],
            workdir: "/bin".into(),
            ..ExecRequest::default()
        };
        let (out, err, code) = exec(&sup, &sleeper.id, req, &[]).await?;
        assert_eq!(
            (out.as_str(), err.as_str(), code),
            ("from-exec\n/bin\n", "e\n", 3)
        );
        // Stdin, and its end.
        let req = ExecRequest {
            command: vec!["cat".into()],
            stdin: true,
            ..ExecRequest::default()
        };
        let typed = [IoInput::Stdin(b"piped\n".to_vec()), IoInput::CloseStdin];
        let (out, _, code) = exec(&sup, &sleeper.id, req, &typed).await?;
        assert_eq!((out.as_str(), code), ("piped\n", 0));
        {
            let req = ExecRequest {
                command: vec!["sh".into()],
                tty: true,
                stdin: true,
                size: Some((33, 77)),
                ..ExecRequest::default()
            };
            let typed = [IoInput::Stdin(b"stty size; tty; exit 4\n".to_vec())];
            let (out, err, code) = exec(&sup, &sleeper.id, req, &typed).await?;
            assert!(out.contains("33 77") && out.contains("/dev/pts/"), "{out}");
            assert_eq!(code, 4, "{out} {err}");
        }
        // Not running: refused, saying so.
        let err = exec(
            &sup,
            &tty.id,
            ExecRequest {
                command: vec!["true".into()],
                ..ExecRequest::default()
            },
            &[],
        )
        .await
        .expect_err("the tty task has ended");
        assert!(
            err.to_string().contains("is not running: it is complete"),
            "{err}"
        );
        sup.reconcile(vec![]);
        Ok(())
    })
}

#[test]
fn berth_runtime_terminal_and_exec() -> Result<()> {
    terminal_and_exec(Rt::Berth, "term-berth")
}

#[test]
fn runc_terminal_and_exec() -> Result<()> {
    terminal_and_exec(Rt::Runc, "term-runc")
}
