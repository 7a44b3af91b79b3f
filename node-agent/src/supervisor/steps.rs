//! How long each step of a task's start and stop took, as the worker saw
//! them: one debug line per task and path (`start path`, `stop path`, target
//! `berth_agent::supervisor::steps`), for an operator asking where a slow start
//! went and for `bench-services`' per-step medians. Enable with
//! `RUST_LOG=info,berth_agent::supervisor::steps=debug` (or `berth dev
//! --log-level ...`).
//!
//! The line: `start path task=ID total_ms=N steps=image:0,rootfs:12,...`,
//! steps in the order they first ran, each the milliseconds it took in all.
//! The session adds `statuses reported updates=N rpc_ms=N waited_ms=N` per
//! batch it reports (the oldest status's wait until the leader answered).

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

/// The start path's steps, in order.
pub(crate) const IMAGE: &str = "image";
pub(crate) const ROOTFS: &str = "rootfs";
pub(crate) const NETWORK: &str = "network";
pub(crate) const BUNDLE: &str = "bundle";
pub(crate) const CREATE: &str = "create";
pub(crate) const START: &str = "start";
/// Saving the task's record and status on disk (every status is saved
/// before it is reported).
pub(crate) const RECORD: &str = "record";
/// The stop path's own steps (`NETWORK`, `ROOTFS` and `RECORD` as above).
pub(crate) const DRAIN: &str = "drain";
pub(crate) const SIGNAL: &str = "signal";
pub(crate) const DELETE: &str = "delete";

/// The time spent per step since `begin`.
#[derive(Debug)]
pub(crate) struct Steps {
    begun: Instant,
    /// (step, time), in the order each step first ran.
    spent: Vec<(&'static str, Duration)>,
}

impl Steps {
    pub fn begin() -> Steps {
        Steps {
            begun: Instant::now(),
            spent: Vec::new(),
        }
    }

    /// Adds `took` to `step`.
    pub fn add(&mut self, step: &'static str, took: Duration) {
        match self.spent.iter_mut().find(|(s, _)| *s == step) {
            Some((_, d)) => *d += took,
            None => self.spent.push((step, took)),
        }
    }

    /// Runs `f`, adding its time to `step`.
    pub async fn time<T>(&mut self, step: &'static str, f: impl Future<Output = T>) -> T {
        let at = Instant::now();
        let out = f.await;
        self.add(step, at.elapsed());
        out
    }

    /// Logs the steps of `path` ("start path" or "stop path") of `task`.
    pub fn log(&self, task: &str, path: &'static str) {
        let total_ms = self.begun.elapsed().as_millis() as u64;
        debug!(task, total_ms, steps = %self, "{path}");
    }
}

impl fmt::Display for Steps {
    /// `image:0,rootfs:12,network:40`: milliseconds per step.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (step, took)) in self.spent.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{step}:{}", took.as_millis())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn steps_add_up_in_the_order_they_first_ran() {
        let mut steps = Steps::begin();
        steps
            .time(IMAGE, tokio::time::sleep(Duration::from_millis(3)))
            .await;
        steps.add(RECORD, Duration::from_millis(2));
        steps
            .time(ROOTFS, tokio::time::sleep(Duration::from_millis(12)))
            .await;
        steps.add(RECORD, Duration::from_millis(5));
        assert_eq!(steps.to_string(), "image:3,record:7,rootfs:12");
    }
}
