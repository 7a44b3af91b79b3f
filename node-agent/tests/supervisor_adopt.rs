//! Re-adoption: a supervisor dropped (its whole async runtime gone, as when the
//! agent process dies) leaves its containers running; a new one on the same
//! data dir adopts them (same pid), reports their later exit, and keeps their
//! logs. A container that ended while no supervisor ran reports its exit on open.

#[path = "support/supervisor.rs"]
mod fixture;
mod support;

use std::time::Duration;

use anyhow::{Context, Result};
use berth_proto::v1::TaskState;
use fixture::{Env, Rt, Seen, enter_private_mounts, is};
use futures_util::StreamExt;

const T: Duration = Duration::from_secs(60);

/// A container that prints a line every 100 ms and exits 7 once /stop exists.
const SCRIPT: &str =
    "i=0; while [ ! -e /stop ]; do i=$((i+1)); echo tick $i; sleep 0.1; done; exit 7";

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn adopts(rt: Rt, name: &str, kill_shim: bool) -> Result<()> {
    let env = Env::new(name, rt)?;
    std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            enter_private_mounts()?;
            let live = env.task("live", SCRIPT);
            let gone = env.task("gone", "while [ ! -e /stop ]; do sleep 0.1; done; exit 5");
            // The first agent: starts both, then dies.
            let pid = runtime()?.block_on(async {
                let (sup, rx) = env.open().await?;
                let mut rx = Seen::new(rx);
                sup.reconcile(vec![live.clone(), gone.clone()]);
                rx.until(&live.id, T, is(TaskState::Running)).await?;
                rx.until(&gone.id, T, is(TaskState::Running)).await?;
                let state = env.runtime_state(&live.id).context("state")?;
                anyhow::Ok(state["pid"].as_i64().unwrap_or(0))
            })?;
            // The runtime is dropped: workers gone, containers untouched.
            assert_eq!(
                env.runtime_state(&live.id).context("state")?["status"],
                "running"
            );
            if kill_shim {
                let shim_pid: i32 = std::fs::read_to_string(
                    env.data.join("containers").join(&live.id).join("shim.pid"),
                )?
                .trim()
                .parse()?;
                // SAFETY: kill with plain integers.
                unsafe { libc::kill(shim_pid, libc::SIGKILL) };
            }
            // While no agent runs, `gone` ends.
            std::fs::write(env.rootfs(&gone.id).join("stop"), b"")?;
            berth_testhost::wait_until("gone to end", T, || {
                let s = env.runtime_state(&gone.id)?;
                (s["status"] == "stopped").then_some(())
            })?;

            runtime()?.block_on(async {
                let (sup, rx) = env.open().await?;
                let mut rx = Seen::new(rx);
                // Adopted, not restarted: same pid, still RUNNING.
                let state = env.runtime_state(&live.id).context("state")?;
                assert_eq!(state["status"], "running");
                assert_eq!(state["pid"].as_i64(), Some(pid));
                let end = rx.until_end(&gone.id, T).await?;
                let end = end.last().cloned().unwrap_or_default();
                assert_eq!(end.state, TaskState::Failed as i32, "{end:?}");
                assert_eq!(end.exit_code, Some(5), "{end:?}");
                let statuses = sup.statuses();
                let live_status = statuses
                    .iter()
                    .find(|u| u.task_id == live.id)
                    .and_then(|u| u.status.clone())
                    .context("live task status")?;
                assert_eq!(live_status.state, TaskState::Running as i32);
                assert_eq!(live_status.container_id, live.id);
                // The controller's set (same tasks) keeps it running.
                sup.reconcile(vec![live.clone(), gone.clone()]);
                // Output goes on being captured after the restart.
                let before = count_ticks(&sup, &live.id).await?;
                tokio::time::sleep(Duration::from_millis(800)).await;
                let after = count_ticks(&sup, &live.id).await?;
                assert!(after > before, "no new output: {before} -> {after}");
                // Its later exit is seen and reported.
                std::fs::write(env.rootfs(&live.id).join("stop"), b"")?;
                let end = rx.until_end(&live.id, T).await?;
                let end = end.last().cloned().unwrap_or_default();
                assert_eq!(end.state, TaskState::Failed as i32, "{end:?}");
                if kill_shim && !berth_runtime::proc::pidfds_keep_exit_status() {
                    // Only the dead shim could have reaped init and recorded
                    // its status (berth-runtime forks no monitor for the shim).
                    assert_eq!(end.exit_code, None, "{end:?}");
                } else {
                    // From Linux 6.15 the agent's pidfd keeps the status.
                    assert_eq!(end.exit_code, Some(7), "{end:?}");
                }
                assert!(env.runtime_state(&live.id).is_none());
                anyhow::Ok(())
            })
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the test thread panicked"))?
    })
}

async fn count_ticks(sup: &berth_agent::supervisor::Supervisor, id: &str) -> Result<usize> {
    let lines: Vec<_> = sup.logs(id, false, None).await?.collect().await;
    Ok(lines
        .iter()
        .filter(|l| l.as_ref().is_ok_and(|l| l.text.starts_with("tick")))
        .count())
}

#[test]
fn a_new_supervisor_adopts_running_containers_with_berth_runtime() -> Result<()> {
    adopts(Rt::Berth, "adopt_b", false)
}

#[test]
fn a_new_supervisor_adopts_running_containers_with_runc() -> Result<()> {
    adopts(Rt::Runc, "adopt_r", false)
}

#[test]
fn a_dead_shim_is_replaced_on_adoption_with_berth_runtime() -> Result<()> {
    adopts(Rt::Berth, "adopt_shim_b", true)
}

#[test]
fn a_shim_that_dies_under_a_running_supervisor_is_replaced() -> Result<()> {
    let env = Env::new("shim_dies", Rt::Berth)?;
    std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            enter_private_mounts()?;
            runtime()?.block_on(async {
                let (sup, rx) = env.open().await?;
                let mut rx = Seen::new(rx);
                let live = env.task("live", SCRIPT);
                sup.reconcile(vec![live.clone()]);
                rx.until(&live.id, T, is(TaskState::Running)).await?;
                let pid_file = env.data.join("containers").join(&live.id).join("shim.pid");
                let old: i32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
                // SAFETY: kill with plain integers.
                unsafe { libc::kill(old, libc::SIGKILL) };
                // A new shim takes over and the output goes on being captured.
                let deadline = tokio::time::Instant::now() + T;
                loop {
                    let now: i32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
                    if now != old {
                        break;
                    }
                    anyhow::ensure!(tokio::time::Instant::now() < deadline, "no new shim");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let before = count_ticks(&sup, &live.id).await?;
                tokio::time::sleep(Duration::from_millis(800)).await;
                let after = count_ticks(&sup, &live.id).await?;
                assert!(after > before, "no new output: {before} -> {after}");
                std::fs::write(env.rootfs(&live.id).join("stop"), b"")?;
                let end = rx.end(&live.id, T).await?;
                assert_eq!(end.exit_code, Some(7), "{end:?}");
                anyhow::Ok(())
            })
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the test thread panicked"))?
    })
}
