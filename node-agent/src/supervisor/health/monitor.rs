//! The health loop of one running container: every `interval` a probe
//! bounded by `timeout`, its result fed to the state machine, each change of
//! health sent to the worker. Ends once the task is unhealthy (the worker
//! stops it) or the worker drops the receiver.

use std::sync::Arc;

use berth_proto::v1::TaskHealth;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::config::HealthConfig;
use super::machine::HealthMachine;
use super::probe::{HealthProbe, ProbeTarget};

/// A change of a task's health, with the last failure's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub health: TaskHealth,
    /// Why the last probe failed; empty if it passed.
    pub output: String,
}

/// Checks `target` per `config` from now (its start) on; sends the changes.
pub async fn monitor(
    probe: Arc<dyn HealthProbe>,
    target: ProbeTarget,
    config: HealthConfig,
    changes: mpsc::UnboundedSender<Change>,
) {
    let started = Instant::now();
    let mut machine = HealthMachine::new(config.retries, config.start_period);
    loop {
        tokio::time::sleep(config.interval).await;
        let result = match tokio::time::timeout(
            config.timeout,
            probe.check(&target, &config.probe, config.timeout),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(format!("no result in {:?}", config.timeout)),
        };
        let output = result.err().unwrap_or_default();
        if let Some(health) = machine.observe(output.is_empty(), started.elapsed()) {
            if changes.send(Change { health, output }).is_err() {
                return;
            }
            if health == TaskHealth::Unhealthy {
                return;
            }
        } else if changes.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::container_runtime::Init;
    use crate::supervisor::fake::FakeProbe;
    use crate::supervisor::health::Probe;
    use async_trait::async_trait;
    use std::time::Duration;

    /// A check every second with `timeout` and `retries`, no start period.
    fn every_second(timeout: Duration, retries: u32) -> HealthConfig {
        HealthConfig {
            probe: Probe::Tcp { port: 80 },
            interval: Duration::from_secs(1),
            timeout,
            retries,
            start_period: Duration::ZERO,
        }
    }

    fn target() -> ProbeTarget {
        ProbeTarget {
            container_id: "c".into(),
            init: Init {
                pid: 1,
                start: None,
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn healthy_then_unhealthy_after_retries_failures() {
        let probe = Arc::new(FakeProbe::new(
            vec![Ok(()), Ok(())],
            Err("exit status: 1".into()),
        ));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let t0 = Instant::now();
        let config = every_second(Duration::from_secs(1), 3);
        let run = tokio::spawn(monitor(probe, target(), config, tx));
        let first = rx.recv().await.unwrap();
        assert_eq!(first.health, TaskHealth::Healthy);
        assert_eq!(first.output, "");
        let second = rx.recv().await.unwrap();
        assert_eq!(second.health, TaskHealth::Unhealthy);
        assert_eq!(second.output, "exit status: 1");
        // Passed at 1 s and 2 s, failed at 3, 4 and 5 s.
        assert_eq!(t0.elapsed(), Duration::from_secs(5));
        run.await.unwrap();
        assert!(rx.recv().await.is_none(), "the loop ended");
    }

    /// Never answers.
    struct Hangs;

    #[async_trait]
    impl HealthProbe for Hangs {
        async fn check(&self, _: &ProbeTarget, _: &Probe, _: Duration) -> Result<(), String> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_does_not_answer_in_time_fails() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let config = every_second(Duration::from_millis(300), 1);
        tokio::spawn(monitor(Arc::new(Hangs), target(), config, tx));
        let change = rx.recv().await.unwrap();
        assert_eq!(change.health, TaskHealth::Unhealthy);
        assert!(
            change.output.contains("no result in 300ms"),
            "{}",
            change.output
        );
    }
}
