//! Work per task is concurrent: a task whose image pull is stuck does not keep
//! another task from starting, and it runs once its pull completes.

#[path = "support/supervisor.rs"]
mod fixture;
mod support;

use std::time::{Duration, Instant};

use anyhow::Result;
use berth_proto::v1::TaskState;
use fixture::{Env, Rt, Seen, in_private_mounts, is};
use support::{Registry, Relay, derive_layer, layout_layers};

const T: Duration = Duration::from_secs(60);

#[test]
fn a_slow_pull_does_not_block_other_tasks() -> Result<()> {
    let env = std::sync::Arc::new(Env::new("parallel", Rt::Berth)?);
    // An image with a layer the store does not have yet.
    derive_layer(&env.work.path, &env.layout, "base", "slow", |root| {
        std::fs::write(root.join("etc/slow"), "slow\n")?;
        Ok(())
    })?;
    let registry = Registry::start(&env.work.path, None)?;
    registry.push(&env.layout, "slow", "slow/bbox:1")?;
    // The relay holds every layer download until 99 are in flight: never, so
    // each waits for its 10 s fallback.
    let relay = Relay::start(registry.port)?;
    relay
        .gate
        .hold_until(99, &layout_layers(&env.layout, "slow")?);
    let addr = relay.addr();
    let e = env.clone();
    in_private_mounts(move || async move {
        let (sup, rx) = e
            .open_with(|c| c.pull.insecure_registries = vec![addr.clone()])
            .await?;
        let mut rx = Seen::new(rx);
        let mut slow = e.task("slow", "echo pulled");
        if let Some(s) = slow.spec.as_mut() {
            s.image = format!("{addr}/slow/bbox:1");
        }
        let mut given_up = slow.clone();
        given_up.id = e.task_id("given_up");
        let fast = e.task("fast", "echo local");
        let began = Instant::now();
        sup.reconcile(vec![slow.clone(), given_up.clone(), fast.clone()]);
        rx.until(&slow.id, T, is(TaskState::Preparing)).await?;
        rx.until(&given_up.id, T, is(TaskState::Preparing)).await?;
        let end = rx.end(&fast.id, T).await?;
        assert_eq!(end.state, TaskState::Complete as i32, "{end:?}");
        // A task stopped while its image is being pulled stops at once.
        let mut stop = given_up.clone();
        stop.desired_state = TaskState::Shutdown as i32;
        sup.reconcile(vec![slow.clone(), stop, fast.clone()]);
        let end = rx.end(&given_up.id, T).await?;
        assert_eq!(end.state, TaskState::Shutdown as i32, "{end:?}");
        assert!(end.message.contains("before it started"), "{end:?}");
        let slow_now = sup
            .statuses()
            .into_iter()
            .find(|u| u.task_id == slow.id)
            .and_then(|u| u.status)
            .map(|s| s.state);
        assert_eq!(
            slow_now,
            Some(TaskState::Preparing as i32),
            "the slow pull ended before the other task did ({:?})",
            began.elapsed()
        );
        let end = rx.end(&slow.id, T).await?;
        assert_eq!(end.state, TaskState::Complete as i32, "{end:?}");
        Ok(())
    })?;
    drop(relay);
    drop(registry);
    Ok(())
}
