//! Acting on a running task from outside its worker, for the controllers'
//! `berth kill` and `berth stop`: a signal to its container, or its stop
//! signal and SIGKILL after a grace period. The worker sees the container
//! end as any end and reports it.

use std::time::Duration;

use tracing::info;

use super::error::{Result, SupervisorError};
use super::stop::{Stopped, stop};
use super::{Running, Supervisor};

impl Supervisor {
    /// The container of `task_id` while it runs.
    fn running(&self, task_id: &str) -> Result<Running> {
        let map = self.inner.lock();
        let entry = map
            .get(task_id)
            .ok_or_else(|| SupervisorError::UnknownTask {
                task: task_id.to_string(),
            })?;
        entry
            .container
            .clone()
            .ok_or_else(|| SupervisorError::Task {
                task: task_id.to_string(),
                reason: "its container is not running".into(),
            })
    }

    /// Sends `signal` (SIGINT, INT, 2, ...) to the task's container.
    pub async fn signal(&self, task_id: &str, signal: &str) -> Result<()> {
        let running = self.running(task_id)?;
        let signal =
            berth_runtime::signal::canonical(signal).map_err(|e| SupervisorError::Task {
                task: task_id.to_string(),
                reason: e.to_string(),
            })?;
        info!(task = task_id, %signal, "signal asked by a controller");
        self.inner
            .drivers
            .runtime
            .kill(&running.container_id, running.init, &signal)
            .await
    }

    /// Stops the task's container: its stop signal, then SIGKILL after
    /// `grace` (None: the task's own); returns how it went.
    pub async fn stop_task(&self, task_id: &str, grace: Option<Duration>) -> Result<String> {
        let running = self.running(task_id)?;
        let grace = grace.unwrap_or(running.grace);
        info!(task = task_id, ?grace, "stop asked by a controller");
        let how = stop(
            self.inner.drivers.runtime.as_ref(),
            &running.container_id,
            running.init,
            &running.stop_signal,
            grace,
        )
        .await;
        Ok(match how {
            Stopped::OnTerm => format!("stopped on {}", running.stop_signal),
            Stopped::Killed => format!("killed with SIGKILL after the {grace:?} grace period"),
            Stopped::Stuck => "still running after SIGKILL".to_string(),
        })
    }
}
