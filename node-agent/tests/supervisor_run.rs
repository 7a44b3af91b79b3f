//! The supervisor runs tasks to their end with berth-runtime and runc: statuses
//! in order with exit codes, failures named, output captured.

#[path = "support/supervisor.rs"]
mod fixture;
mod support;

use std::time::Duration;

use anyhow::Result;
use berth_proto::v1::TaskState;
use fixture::{Env, Rt, Seen, in_private_mounts};
use futures_util::StreamExt;

const T: Duration = Duration::from_secs(60);

fn states(list: &[berth_proto::v1::TaskStatus]) -> Vec<TaskState> {
    list.iter()
        .map(|s| TaskState::try_from(s.state).unwrap_or(TaskState::New))
        .collect()
}

fn completes(rt: Rt, name: &str) -> Result<()> {
    let env = Env::new(name, rt)?;
    let task = env.task("ok", "echo hello; echo oops >&2; echo $HOSTNAME; exit 0");
    let id = task.id.clone();
    let rootfs = env.rootfs(&id);
    let data = env.data.clone();
    let env = std::sync::Arc::new(env);
    let e = env.clone();
    in_private_mounts(move || async move {
        // What a crash mid-write could leave: a task dir without a readable record.
        let leftover = data.join("containers/leftover");
        std::fs::create_dir_all(&leftover)?;
        std::fs::write(leftover.join("record.json"), b"{not json")?;
        let (sup, rx) = e.open().await?;
        assert!(
            !leftover.exists(),
            "the unreadable task dir is cleared on open"
        );
        let mut rx = Seen::new(rx);
        sup.reconcile(vec![task.clone()]);
        let seen = rx.until_end(&id, T).await?;
        assert_eq!(
            states(&seen),
            vec![
                TaskState::Preparing,
                TaskState::Starting,
                TaskState::Running,
                TaskState::Complete
            ],
            "{seen:?}"
        );
        let running = &seen[2];
        assert_eq!(running.container_id, id);
        let end = &seen[3];
        assert_eq!(end.exit_code, Some(0), "{end:?}");
        assert!(end.timestamp_ms >= running.timestamp_ms && running.timestamp_ms > 0);
        // The final status is kept for a re-send.
        let all = sup.statuses();
        assert_eq!(all.len(), 1);
        assert_eq!(
            all[0].status.as_ref().map(|s| s.state),
            Some(TaskState::Complete as i32)
        );
        // Output, in order per stream, with the stream named.
        let lines: Vec<_> = sup.logs(&id, false, None).await?.collect().await;
        let lines: Vec<_> = lines.into_iter().collect::<Result<_, _>>()?;
        let texts: Vec<_> = lines.iter().map(|l| (l.stream, l.text.as_str())).collect();
        use berth_agent::supervisor::LogStream::*;
        assert!(texts.contains(&(Stdout, "hello")), "{texts:?}");
        assert!(texts.contains(&(Stderr, "oops")), "{texts:?}");
        let short: String = id.chars().take(12).collect();
        assert!(texts.contains(&(Stdout, short.as_str())), "{texts:?}");
        // The container is gone and its rootfs released.
        assert!(e.runtime_state(&id).is_none());
        assert!(!rootfs.exists());
        // Out of the desired set: forgotten, logs and state removed.
        sup.reconcile(vec![]);
        assert!(sup.statuses().is_empty());
        assert!(!data.join("logs").join(&id).exists());
        assert!(!data.join("containers").join(&id).exists());
        Ok(())
    })
}

#[test]
fn a_task_runs_to_completion_with_berth_runtime() -> Result<()> {
    completes(Rt::Berth, "complete_b")
}

#[test]
fn a_task_runs_to_completion_with_runc() -> Result<()> {
    completes(Rt::Runc, "complete_r")
}

fn fails(rt: Rt, name: &str) -> Result<()> {
    let env = std::sync::Arc::new(Env::new(name, rt)?);
    let e = env.clone();
    in_private_mounts(move || async move {
        let (sup, rx) = e.open().await?;
        let mut rx = Seen::new(rx);
        let exit3 = e.task("exit3", "echo before; exit 3");
        let mut missing = e.task("missing", "");
        if let Some(s) = missing.spec.as_mut() {
            s.command = vec!["/no/such/program".into()];
        }
        // Docker's codes for a command that cannot be run, from either
        // runtime's words: 127 not found (a path or a PATH search), 126 not
        // runnable.
        let mut unnamed = e.task("unnamed", "");
        if let Some(s) = unnamed.spec.as_mut() {
            s.command = vec!["no-such-command".into()];
        }
        let mut directory = e.task("directory", "");
        if let Some(s) = directory.spec.as_mut() {
            s.command = vec!["/bin".into()];
        }
        sup.reconcile(vec![
            exit3.clone(),
            missing.clone(),
            unnamed.clone(),
            directory.clone(),
        ]);
        let seen = rx.until_end(&exit3.id, T).await?;
        let end = seen.last().cloned().unwrap_or_default();
        assert_eq!(end.state, TaskState::Failed as i32, "{seen:?}");
        assert_eq!(end.exit_code, Some(3));
        assert!(end.error.contains("exited with code 3"), "{end:?}");
        let end = rx.end(&missing.id, T).await?;
        assert_eq!(end.state, TaskState::Failed as i32, "{end:?}");
        assert!(end.error.contains("/no/such/program"), "{end:?}");
        assert_eq!(end.exit_code, Some(127), "{end:?}");
        let end = rx.end(&unnamed.id, T).await?;
        assert_eq!(end.exit_code, Some(127), "{end:?}");
        assert!(end.error.contains("no-such-command"), "{end:?}");
        let end = rx.end(&directory.id, T).await?;
        assert_eq!(end.state, TaskState::Failed as i32, "{end:?}");
        assert_eq!(end.exit_code, Some(126), "{end:?}");
        Ok(())
    })
}

#[test]
fn a_failing_command_reports_its_exit_code_with_berth_runtime() -> Result<()> {
    fails(Rt::Berth, "fail_b")
}

#[test]
fn a_failing_command_reports_its_exit_code_with_runc() -> Result<()> {
    fails(Rt::Runc, "fail_r")
}

#[test]
fn a_bad_image_fails_naming_the_image() -> Result<()> {
    let env = std::sync::Arc::new(Env::new("bad_image", Rt::Berth)?);
    let e = env.clone();
    in_private_mounts(move || async move {
        // A registry port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let image = format!("127.0.0.1:{port}/nothing/here:1");
        let (sup, rx) = e
            .open_with(|c| c.pull.insecure_registries = vec![format!("127.0.0.1:{port}")])
            .await?;
        let mut rx = Seen::new(rx);
        let mut task = e.task("badimg", "true");
        if let Some(s) = task.spec.as_mut() {
            s.image = image.clone();
        }
        sup.reconcile(vec![task.clone()]);
        let seen = rx.until_end(&task.id, T).await?;
        assert_eq!(states(&seen), vec![TaskState::Preparing, TaskState::Failed]);
        let end = &seen[1];
        assert!(end.error.contains(&image), "{end:?}");
        assert_eq!(end.exit_code, None);
        // No container ever ran: following its logs ends at once, empty.
        let lines: Vec<_> =
            tokio::time::timeout(T, sup.logs(&task.id, true, None).await?.collect()).await?;
        assert!(lines.is_empty(), "{lines:?}");
        Ok(())
    })
}
