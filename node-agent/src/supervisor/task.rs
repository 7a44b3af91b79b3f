//! One task's worker: prepare, start, watch, stop, clean up, report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::{Task, TaskState, TaskStatus};
use tokio::sync::watch;
use tracing::{info, warn};

use super::bundle::{BundleInput, build_spec, write_bundle};
use super::error::{Result, SupervisorError};
use super::state::{Phase, Record};
use super::stop::{Stopped, stop};
use super::watch::{ExitInfo, alive, exit_info, start_time, wait_exit};
use super::{Inner, launch, logs, now_ms};

/// What the controller wants of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Desired {
    Run,
    /// Stop it; keep its final status and logs.
    Stop,
    /// Stop it and forget it (it left the desired set).
    Remove,
}

fn status(state: TaskState, message: impl Into<String>) -> TaskStatus {
    TaskStatus {
        state: state as i32,
        message: message.into(),
        timestamp_ms: now_ms(),
        ..TaskStatus::default()
    }
}

fn failed(error: impl Into<String>) -> TaskStatus {
    TaskStatus {
        error: error.into(),
        ..status(TaskState::Failed, "failed")
    }
}

/// Container ids are task ids, which must make plain directory names.
fn container_id(task_id: &str) -> Result<String> {
    let ok = !task_id.is_empty()
        && task_id.len() <= 128
        && !task_id.starts_with('.')
        && task_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(task_id.to_string())
    } else {
        Err(SupervisorError::Task {
            task: task_id.to_string(),
            reason: "a task id must be 1-128 letters, digits, '-', '_' or '.'".into(),
        })
    }
}

struct Worker {
    inner: Arc<Inner>,
    task: Task,
    record: Record,
    desired: watch::Receiver<Desired>,
}

impl Worker {
    fn report(&mut self, mut s: TaskStatus) {
        if s.container_id.is_empty() && self.record.phase != Phase::Preparing {
            s.container_id = self.record.container_id.clone();
        }
        self.record.status = (&s).into();
        if let Err(e) = self.inner.state.save(&self.record) {
            warn!(task = %self.task.id, error = %e, "failed to save the task's record");
        }
        info!(task = %self.task.id, state = ?TaskState::try_from(s.state), message = %s.message, error = %s.error, "task status");
        self.inner.report(&self.task.id, s);
    }

    /// Saves the final status; returns it for `Inner::finish` to publish.
    fn finalize(&mut self, mut s: TaskStatus) -> TaskStatus {
        if s.container_id.is_empty() && self.record.init_pid.is_some() {
            s.container_id = self.record.container_id.clone();
        }
        self.record.status = (&s).into();
        if let Err(e) = self.inner.state.save(&self.record) {
            warn!(task = %self.task.id, error = %e, "failed to save the task's record");
        }
        info!(task = %self.task.id, state = ?TaskState::try_from(s.state), message = %s.message, error = %s.error, exit_code = ?s.exit_code, "task ended");
        s
    }

    fn save(&self) -> Result<()> {
        self.inner.state.save(&self.record)
    }

    fn stop_requested(&self) -> bool {
        *self.desired.borrow() != Desired::Run
    }

    fn state_dir(&self) -> PathBuf {
        self.inner.state.task_dir(&self.task.id)
    }

    fn log_dir(&self) -> PathBuf {
        self.inner.logs_dir.join(&self.task.id)
    }

    fn image(&self) -> String {
        self.task
            .spec
            .as_ref()
            .map(|s| s.image.clone())
            .unwrap_or_default()
    }

    /// Pull, rootfs, bundle, create, start. `Ok(false)`: stopped before it ran.
    async fn start(&mut self) -> Result<bool, TaskStatus> {
        let cid = self.record.container_id.clone();
        let name = self.image();
        self.inner
            .state
            .save_task(&self.task)
            .map_err(|e| failed(e.to_string()))?;
        self.report(status(TaskState::Preparing, format!("pulling {name}")));
        let images = self.inner.cfg.images.clone();
        // The pull runs as a task of its own: a stop does not wait for it, and
        // a pull is never cut off halfway (it finishes for the next task).
        let pull = {
            let (images, name, opts) = (images.clone(), name.clone(), self.inner.cfg.pull.clone());
            tokio::spawn(async move { images.get_or_pull(&name, &opts).await })
        };
        let mut desired = self.desired.clone();
        let image = tokio::select! {
            r = pull => r
                .map_err(|e| failed(format!("image {name}: pull task failed: {e}")))?
                .map_err(|e| failed(format!("image {name}: {e}")))?,
            () = stop_asked(&mut desired) => return Ok(false),
        };
        if self.stop_requested() {
            return Ok(false);
        }
        let config = images
            .image_config(&image)
            .map_err(|e| failed(format!("image {name}: {e}")))?;
        self.record.stop_signal = config.stop_signal.as_deref().map(signal_name);
        let rootfs = images
            .prepare_rootfs(&image, &cid)
            .await
            .map_err(|e| failed(format!("rootfs of image {name}: {e}")))?;
        let net = match &self.inner.cfg.network {
            Some(network) => network
                .prepare(&self.task)
                .await
                .map_err(|e| failed(format!("network: {e}")))?,
            None => None,
        };
        let mut files = Vec::new();
        for (destination, text) in net.iter().flat_map(|n| &n.files) {
            let name = destination.trim_start_matches('/').replace('/', "_");
            let path = self.state_dir().join(name);
            std::fs::write(&path, text)
                .map_err(|e| failed(format!("writing {}: {e}", path.display())))?;
            files.push((destination.clone(), path));
        }
        let spec = build_spec(&BundleInput {
            task: &self.task,
            container_id: &cid,
            image: &config,
            rootfs: &rootfs.path,
            cgroup_parent: &self.inner.cfg.cgroup_parent,
            netns: net.as_ref().map(|n| n.netns.as_path()),
            files: &files,
        })
        .map_err(|e| failed(e.to_string()))?;
        let bundle = self.state_dir().join("bundle");
        write_bundle(&bundle, &spec, &cid).map_err(|e| failed(e.to_string()))?;
        if self.stop_requested() {
            return Ok(false);
        }
        self.record.phase = Phase::Creating;
        self.report(status(TaskState::Starting, "starting"));
        let pid = self
            .inner
            .shim
            .create(&cid, &bundle, &self.state_dir(), &self.log_dir())
            .await
            .map_err(|e| failed(e.to_string()))?;
        self.inner
            .runtime
            .start(&cid)
            .await
            .map_err(|e| failed(e.to_string()))?;
        self.record.phase = Phase::Running;
        self.record.init_pid = Some(pid);
        self.record.init_start = start_time(pid);
        self.save().map_err(|e| failed(e.to_string()))?;
        self.report(status(TaskState::Running, "running"));
        Ok(true)
    }

    /// Watches the running container until it ends or is stopped.
    async fn supervise(&mut self) -> TaskStatus {
        let cid = self.record.container_id.clone();
        let Some(pid) = self.record.init_pid else {
            return failed("the record of the running container has no pid");
        };
        let start = self.record.init_start;
        let state_dir = self.state_dir();
        let mut check = tokio::time::interval(SHIM_CHECK);
        let stopped = loop {
            if self.stop_requested() {
                break Some(self.stop(pid, start).await);
            }
            tokio::select! {
                () = wait_exit(pid, start) => break None,
                changed = self.desired.changed() => {
                    if changed.is_err() {
                        // The supervisor is gone: leave the container alone.
                        std::future::pending::<()>().await;
                    }
                }
                _ = check.tick() => self.ensure_shim(pid, start),
            }
        };
        let exit = exit_info(&self.inner.runtime, &cid, &state_dir, &self.cgroup()).await;
        match stopped {
            Some(how) => shutdown_status(
                how,
                exit,
                self.record.stop_signal.as_deref().unwrap_or("SIGTERM"),
                self.grace(),
            ),
            None => {
                let mut s = exit_status(exit, &self.task);
                if s.state == TaskState::Failed as i32
                    && let Some(line) = logs::last_stderr(&self.log_dir())
                {
                    s.error = format!("{}; last error output: {line}", s.error);
                }
                s
            }
        }
    }

    /// Starts a new shim if the container runs without one (it died, with the
    /// agent or alone): the new one reopens the FIFOs and drains them.
    fn ensure_shim(&self, pid: i32, start: Option<u64>) {
        let state_dir = self.state_dir();
        if !alive(pid, start) || launch::shim_alive(&state_dir) {
            return;
        }
        let cid = &self.record.container_id;
        info!(task = %self.task.id, container = %cid, "shim gone: attaching a new one");
        if let Err(e) = self.inner.shim.attach(
            cid,
            pid,
            &state_dir.join("bundle"),
            &state_dir,
            &self.log_dir(),
        ) {
            warn!(task = %self.task.id, container = %cid, error = %e, "no shim for the logs");
        }
    }

    async fn stop(&self, pid: i32, start: Option<u64>) -> Stopped {
        info!(task = %self.task.id, container = %self.record.container_id, "stopping");
        stop(
            &self.inner.runtime,
            &self.record.container_id,
            pid,
            start,
            self.record.stop_signal.as_deref().unwrap_or("SIGTERM"),
            self.grace(),
        )
        .await
    }

    fn grace(&self) -> Duration {
        match self.task.spec.as_ref().map_or(0, |s| s.stop_grace_seconds) {
            0 => self.inner.cfg.default_stop_grace,
            s => Duration::from_secs(u64::from(s)),
        }
    }

    fn cgroup(&self) -> PathBuf {
        PathBuf::from(format!(
            "/{}/{}",
            self.inner.cfg.cgroup_parent.trim_matches('/'),
            self.record.container_id
        ))
    }
}

fn exit_text(exit: &ExitInfo) -> String {
    match (exit.code, exit.signal) {
        (_, Some(sig)) => format!("killed by signal {sig}"),
        (Some(c), None) => format!("exited with code {c}"),
        (None, None) => "exit status unknown: the container ended while no shim watched it".into(),
    }
}

fn exit_status(exit: ExitInfo, task: &Task) -> TaskStatus {
    let mut s = if exit.oom_killed {
        let limit = task
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.limits.as_ref())
            .map_or(0, |l| l.memory_bytes);
        failed(format!(
            "container was OOM-killed (memory limit {limit} bytes), {}",
            exit_text(&exit)
        ))
    } else if exit.code == Some(0) {
        status(TaskState::Complete, "exited with code 0")
    } else {
        failed(exit_text(&exit))
    };
    s.exit_code = exit.code;
    s
}

/// An image's `StopSignal` as the runtimes take it: `SIGQUIT`, `QUIT` and `3`
/// all become `SIGQUIT`-style names or stay numbers.
fn signal_name(s: &str) -> String {
    let s = s.trim().to_ascii_uppercase();
    if s.parse::<i32>().is_ok() || s.starts_with("SIG") {
        s
    } else {
        format!("SIG{s}")
    }
}

fn shutdown_status(how: Stopped, exit: ExitInfo, signal: &str, grace: Duration) -> TaskStatus {
    let message = match how {
        Stopped::OnTerm => format!("stopped on {signal}, {}", exit_text(&exit)),
        Stopped::Killed => format!("killed with SIGKILL after the {grace:?} grace period"),
        Stopped::Stuck => "still running after SIGKILL; deleted by force".to_string(),
    };
    TaskStatus {
        exit_code: exit.code,
        ..status(TaskState::Shutdown, message)
    }
}

/// Returns once a stop is asked for (never if the supervisor is gone).
async fn stop_asked(desired: &mut watch::Receiver<Desired>) {
    loop {
        if *desired.borrow_and_update() != Desired::Run {
            return;
        }
        if desired.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// How often a running container's shim is checked (and replaced if it died).
const SHIM_CHECK: Duration = Duration::from_secs(2);

/// The worker of one task, from assignment (or adoption) to its final status.
pub(crate) async fn run(
    inner: Arc<Inner>,
    task: Task,
    desired: watch::Receiver<Desired>,
    adopt: Option<Record>,
) {
    let id = task.id.clone();
    let cid = match container_id(&id) {
        Ok(c) => c,
        Err(e) => {
            if inner.finish(&id, Some(failed(e.to_string()))) {
                inner.forget(&id);
            }
            return;
        }
    };
    let adopted = adopt.is_some();
    let record = adopt.unwrap_or_else(|| Record::new(&id, &cid));
    let mut w = Worker {
        inner: inner.clone(),
        task,
        record,
        desired,
    };
    let last = if adopted {
        Some(w.supervise().await)
    } else {
        match w.start().await {
            Ok(true) => Some(w.supervise().await),
            Ok(false) => None,
            Err(s) => Some(s),
        }
    };
    cleanup(&inner, &cid).await;
    let fin = last.unwrap_or_else(|| status(TaskState::Shutdown, "stopped before it started"));
    w.record.phase = Phase::Done;
    let fin = w.finalize(fin);
    if inner.finish(&id, Some(fin)) {
        inner.forget(&id);
    }
}

/// Deletes the container and releases its rootfs; what fails is logged (the
/// next open tries again only for tasks that still have a record).
pub(crate) async fn cleanup(inner: &Inner, container_id: &str) {
    if let Err(e) = inner.runtime.delete(container_id).await {
        warn!(container = container_id, error = %e, "runtime delete failed");
    }
    // The shim ends once the container's output is drained; a follow of the
    // logs ends on its `closed` marker, written here if no shim will.
    let state_dir = inner.state.task_dir(container_id);
    for _ in 0..60 {
        if !launch::shim_alive(&state_dir) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Also when no shim ever ran (a failed pull): a follower must end.
    let log_dir = inner.logs_dir.join(container_id);
    if std::fs::create_dir_all(&log_dir).is_ok() {
        let _ = std::fs::write(log_dir.join(logs::CLOSED), b"");
    }
    if let Some(network) = &inner.cfg.network {
        network.release(container_id).await;
    }
    if let Err(e) = inner.cfg.images.release_rootfs(container_id).await {
        warn!(container = container_id, error = %e, "rootfs release failed");
    }
    let _ = std::fs::remove_dir_all(state_dir.join("bundle"));
    for f in [super::shim::STDOUT_FIFO, super::shim::STDERR_FIFO] {
        let _ = std::fs::remove_file(state_dir.join(f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signals_are_runtime_names() {
        assert_eq!(signal_name("SIGQUIT"), "SIGQUIT");
        assert_eq!(signal_name("quit"), "SIGQUIT");
        assert_eq!(signal_name("9"), "9");
    }
}
