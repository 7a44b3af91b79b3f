//! Tasks the controller no longer wants are stopped: SIGTERM, then SIGKILL after
//! the grace period; a task missing from the desired set is stopped and forgotten.

#[path = "support/supervisor.rs"]
mod fixture;
mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth_proto::v1::TaskState;
use fixture::{Env, Rt, Seen, in_private_mounts, is};

const T: Duration = Duration::from_secs(60);

fn stops(rt: Rt, name: &str) -> Result<()> {
    let env = std::sync::Arc::new(Env::new(name, rt)?);
    let e = env.clone();
    in_private_mounts(move || async move {
        let (sup, rx) = e.open().await?;
        let mut rx = Seen::new(rx);
        // PID 1 gets only signals it handles: this one exits on SIGTERM...
        let polite = e.task(
            "polite",
            "trap 'exit 0' TERM; while true; do sleep 0.1; done",
        );
        // ...this one ignores it and needs SIGKILL after its 1 s grace...
        let mut stubborn = e.task("stubborn", "trap '' TERM; while true; do sleep 0.1; done");
        if let Some(s) = stubborn.spec.as_mut() {
            s.stop_grace_seconds = 1;
        }
        // ...and this one leaves the desired set altogether.
        let dropped = e.task(
            "dropped",
            "trap 'exit 0' TERM; while true; do sleep 0.1; done",
        );
        // ...and this image says SIGUSR1 stops it (SIGTERM would need SIGKILL).
        support::run(
            "umoci",
            &[
                "config",
                "--image",
                &format!("{}:base", e.layout.display()),
                "--tag",
                "usr1",
                "--config.stopsignal",
                "SIGUSR1",
            ],
        )?;
        e.images
            .as_ref()
            .context("store")?
            .import(&e.layout, &Default::default())
            .await?;
        let mut usr1 = e.task("usr1", "trap 'exit 0' USR1; while true; do sleep 0.1; done");
        if let Some(s) = usr1.spec.as_mut() {
            s.image = "localhost/bbox:usr1".into();
            s.stop_grace_seconds = 5;
        }
        let all = vec![
            polite.clone(),
            stubborn.clone(),
            dropped.clone(),
            usr1.clone(),
        ];
        sup.reconcile(all.clone());
        let mut pids = Vec::new();
        for t in &all {
            let s = rx.until(&t.id, T, is(TaskState::Running)).await?;
            assert_eq!(s.container_id, t.id);
            let state = e.runtime_state(&t.id).expect("runtime knows the container");
            assert_eq!(state["status"], "running", "{state}");
            pids.push(state["pid"].as_i64().unwrap_or(0));
        }
        // Idempotent: the same set again changes nothing.
        sup.reconcile(all.clone());
        let mut polite_stop = polite.clone();
        polite_stop.desired_state = TaskState::Shutdown as i32;
        let mut stubborn_stop = stubborn.clone();
        stubborn_stop.desired_state = TaskState::Shutdown as i32;
        let asked = Instant::now();
        let mut usr1_stop = usr1.clone();
        usr1_stop.desired_state = TaskState::Shutdown as i32;
        sup.reconcile(vec![polite_stop, stubborn_stop, usr1_stop]);

        let end = rx.until_end(&polite.id, T).await?;
        let end = end.last().cloned().unwrap_or_default();
        assert_eq!(end.state, TaskState::Shutdown as i32, "{end:?}");
        assert!(end.message.contains("SIGTERM"), "{end:?}");
        assert_eq!(end.exit_code, Some(0), "{end:?}");

        let end = rx.until_end(&stubborn.id, T).await?;
        let end = end.last().cloned().unwrap_or_default();
        assert_eq!(end.state, TaskState::Shutdown as i32, "{end:?}");
        assert!(end.message.contains("SIGKILL"), "{end:?}");
        assert!(
            asked.elapsed() >= Duration::from_secs(1),
            "killed before the grace"
        );
        assert_eq!(end.exit_code, Some(137), "{end:?}");

        let end = rx.end(&usr1.id, T).await?;
        assert_eq!(end.state, TaskState::Shutdown as i32, "{end:?}");
        assert!(end.message.contains("stopped on SIGUSR1"), "{end:?}");
        assert_eq!(end.exit_code, Some(0), "{end:?}");

        let end = rx.until_end(&dropped.id, T).await?;
        let end = end.last().cloned().unwrap_or_default();
        assert_eq!(end.state, TaskState::Shutdown as i32, "{end:?}");
        for (t, pid) in all.iter().zip(pids) {
            assert!(e.runtime_state(&t.id).is_none(), "{} still known", t.id);
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "{} still runs",
                t.id
            );
        }
        // Stopped tasks in the set keep their final status; the dropped one is forgotten.
        let ids: Vec<_> = sup.statuses().into_iter().map(|u| u.task_id).collect();
        assert!(
            ids.contains(&polite.id) && ids.contains(&stubborn.id),
            "{ids:?}"
        );
        assert!(!ids.contains(&dropped.id), "{ids:?}");
        assert!(!e.data.join("containers").join(&dropped.id).exists());
        Ok(())
    })
}

#[test]
fn unwanted_tasks_are_stopped_with_berth_runtime() -> Result<()> {
    stops(Rt::Berth, "stop_b")
}

#[test]
fn unwanted_tasks_are_stopped_with_runc() -> Result<()> {
    stops(Rt::Runc, "stop_r")
}
