//! One task's worker: prepare, start, watch, stop, clean up, report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::{Task, TaskHealth, TaskState, TaskStatus};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::bundle::{BundleInput, build_spec, write_bundle};
use super::container_runtime::{ContainerFiles, ExitInfo, Init};
use super::drain;
use super::error::{Result, SupervisorError};
use super::files::{SECRETS_TARGET, mount_secrets, unmount_secrets, write_configs};
use super::health::{self, Change, ProbeTarget};
use super::state::{Phase, Record, blocking};
use super::steps::{self, Steps};
use super::stop::{Stopped, stop};
use super::{Inner, logs, now_ms};

/// What the controller wants of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Desired {
    Run,
    /// Stop it; keep its final status and logs. `drain_to`: the shared
    /// sequence every node must have applied before the stop signal (drain.rs).
    Stop {
        drain_to: Option<u64>,
    },
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

/// Container ids are task ids, which must make plain directory names: the
/// runtime's rule.
fn container_id(task_id: &str) -> Result<String> {
    berth_runtime::id::validate(task_id)
        .map(|()| task_id.to_string())
        .map_err(|e| SupervisorError::Task {
            task: task_id.to_string(),
            reason: e.to_string(),
        })
}

struct Worker {
    inner: Arc<Inner>,
    task: Task,
    record: Record,
    desired: watch::Receiver<Desired>,
    /// The health a RUNNING status carries (NONE: the task has no check).
    health: TaskHealth,
    /// The time per step of the path under way (start, then stop).
    steps: Steps,
}

/// A task state as logged: "starting", not `Ok(Starting)`.
fn state_name(state: i32) -> &'static str {
    TaskState::try_from(state).map_or("unknown", TaskState::short_name)
}

/// A status text as a log field: left out when empty (no bare `error=`).
fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

impl Worker {
    async fn report(&mut self, s: TaskStatus) {
        let s = self.stamp(s);
        if let Err(e) = self.save().await {
            warn!(task = %self.task.id, error = %e, "failed to save the task's record");
        }
        self.publish(s);
    }

    /// Completes a status with what the worker knows and makes it the
    /// record's (to be saved).
    fn stamp(&mut self, mut s: TaskStatus) -> TaskStatus {
        if s.container_id.is_empty() && self.record.phase != Phase::Preparing {
            s.container_id = self.record.container_id.clone();
        }
        if s.state == TaskState::Running as i32 {
            s.health = self.health as i32;
        }
        self.record.status = (&s).into();
        s
    }

    /// Logs and sends a status (saved before).
    fn publish(&self, s: TaskStatus) {
        info!(task = %self.task.id, state = state_name(s.state), message = non_empty(&s.message), error = non_empty(&s.error), "task status");
        self.inner.report(&self.task.id, s);
    }

    /// Saves the final status; returns it for `Inner::finish` to publish.
    async fn finalize(&mut self, mut s: TaskStatus) -> TaskStatus {
        if s.container_id.is_empty() && self.record.init_pid.is_some() {
            s.container_id = self.record.container_id.clone();
        }
        self.record.status = (&s).into();
        if let Err(e) = self.save().await {
            warn!(task = %self.task.id, error = %e, "failed to save the task's record");
        }
        info!(task = %self.task.id, state = state_name(s.state), message = non_empty(&s.message), error = non_empty(&s.error), exit_code = s.exit_code, "task ended");
        s
    }

    /// Saves the record (an fsync) off the async threads; timed as `record`.
    async fn save(&mut self) -> Result<()> {
        let (inner, record) = (self.inner.clone(), self.record.clone());
        let task = self.task.id.clone();
        self.steps
            .time(
                steps::RECORD,
                blocking(&task, move || inner.state.save(&record)),
            )
            .await
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

    /// What the task pulls and runs (see `images::pull_reference`).
    fn image(&self) -> Result<String, TaskStatus> {
        match self.task.spec.as_ref() {
            Some(spec) => super::images::pull_reference(spec).map_err(failed),
            None => Ok(String::new()),
        }
    }

    /// Pull, rootfs, bundle, create, start. `Ok(false)`: stopped before it ran.
    async fn start(&mut self) -> Result<bool, TaskStatus> {
        let cid = self.record.container_id.clone();
        let name = self.image()?;
        let (inner, task) = (self.inner.clone(), self.task.clone());
        self.steps
            .time(
                steps::RECORD,
                blocking(&self.task.id, move || inner.state.save_task(&task)),
            )
            .await
            .map_err(|e| failed(e.to_string()))?;
        // What the mounts need of this node first: a missing bind source
        // fails the task before anything is pulled or made.
        let volumes = match self.task.spec.as_ref() {
            Some(spec) => {
                super::mounts::prepare(spec, &self.inner.volumes, &self.inner.drivers.node_name)
                    .map_err(failed)?
            }
            None => super::mounts::VolumePaths::new(),
        };
        self.report(status(TaskState::Preparing, format!("pulling {name}")))
            .await;
        let pulling = tokio::time::Instant::now();
        let images = self.inner.drivers.images.clone();
        let credentials = self
            .inner
            .payloads()
            .registry_credentials(&self.task)
            .map_err(|e| failed(format!("image {name}: {e}")))?;
        // The pull runs as a task of its own: a stop does not wait for it, and
        // a pull is never cut off halfway (it finishes for the next task).
        let pull = {
            let (images, name) = (images.clone(), name.clone());
            tokio::spawn(async move { images.get(&name, credentials).await })
        };
        let mut desired = self.desired.clone();
        let (image, config) = tokio::select! {
            r = pull => r
                .map_err(|e| failed(format!("image {name}: pull task failed: {e}")))?
                .map_err(|e| failed(format!("image {name}: {e}")))?,
            () = stop_asked(&mut desired) => return Ok(false),
        };
        self.steps.add(steps::IMAGE, pulling.elapsed());
        if self.stop_requested() {
            return Ok(false);
        }
        self.record.health = health::resolve(
            self.task.spec.as_ref().and_then(|s| s.healthcheck.as_ref()),
            config.healthcheck.as_ref(),
        );
        if self.record.health.is_some() {
            self.health = TaskHealth::Starting;
        }
        // The service's stop signal, else the image's (`StopSignal`), else SIGTERM.
        let from_service = self
            .task
            .spec
            .as_ref()
            .map(|s| s.stop_signal.as_str())
            .filter(|s| !s.is_empty());
        self.record.stop_signal = from_service
            .map(|s| (s, "service"))
            .or(config.stop_signal.as_deref().map(|s| (s, "image")))
            .and_then(|(s, whose)| {
                berth_runtime::signal::canonical(s)
                    .inspect_err(
                        |e| warn!(task = %self.task.id, error = %e, "{whose} stop signal ignored"),
                    )
                    .ok()
            });
        let rootfs = self
            .steps
            .time(steps::ROOTFS, images.prepare_rootfs(&image, &cid))
            .await
            .map_err(|e| failed(format!("rootfs of image {name}: {e}")))?;
        let net = match &self.inner.drivers.network {
            Some(network) => self
                .steps
                .time(steps::NETWORK, network.prepare(&self.task))
                .await
                .map_err(|e| failed(format!("network: {e}")))?,
            None => None,
        };
        let bundling = tokio::time::Instant::now();
        let mut files = Vec::new();
        for (destination, text) in net.iter().flat_map(|n| &n.files) {
            let name = destination.trim_start_matches('/').replace('/', "_");
            let path = self.state_dir().join(name);
            std::fs::write(&path, text)
                .map_err(|e| failed(format!("writing {}: {e}", path.display())))?;
            files.push((destination.clone(), path));
        }
        {
            let payloads = self.inner.payloads();
            files.extend(write_configs(&self.state_dir(), &self.task, &payloads).map_err(failed)?);
            let secrets = mount_secrets(&self.inner.drivers.secrets_root, &self.task, &payloads)
                .map_err(failed)?;
            if let Some(dir) = secrets {
                files.push((SECRETS_TARGET.to_string(), dir));
            }
        }
        let init = match self.task.spec.as_ref().is_some_and(|s| s.init) {
            true => Some(
                super::process_settings::find_init(&self.inner.drivers.init_binary)
                    .map_err(failed)?,
            ),
            false => None,
        };
        let spec = build_spec(&BundleInput {
            task: &self.task,
            container_id: &cid,
            image: &config,
            rootfs: &rootfs,
            cgroup_parent: &self.inner.drivers.cgroup_parent,
            netns: net.as_ref().map(|n| n.netns.as_path()),
            files: &files,
            volumes: &volumes,
            init: init.as_deref(),
        })
        .map_err(|e| failed(e.to_string()))?;
        let files = self.files();
        write_bundle(&files.bundle, &spec, &cid).map_err(|e| failed(e.to_string()))?;
        self.steps.add(steps::BUNDLE, bundling.elapsed());
        if self.stop_requested() {
            return Ok(false);
        }
        self.record.phase = Phase::Creating;
        self.report(status(TaskState::Starting, "starting")).await;
        let runtime = self.inner.drivers.runtime.clone();
        let init = self
            .steps
            .time(steps::CREATE, runtime.create(&files))
            .await
            .map_err(|e| {
                let error = e.to_string();
                // A command that is not there or cannot be run: Docker's 127/126.
                TaskStatus {
                    exit_code: super::invocation::exit_code(&error),
                    ..failed(error)
                }
            })?;
        self.steps
            .time(steps::START, runtime.start(&cid))
            .await
            .map_err(|e| failed(e.to_string()))?;
        self.record.phase = Phase::Running;
        self.record.init_pid = Some(init.pid);
        self.record.init_start = init.start;
        // One save of the record for the phase and the status.
        let running = self.stamp(status(TaskState::Running, "running"));
        self.save().await.map_err(|e| failed(e.to_string()))?;
        self.publish(running);
        self.steps.log(&self.task.id, "start path");
        Ok(true)
    }

    /// Watches the running container until it ends or is stopped.
    async fn supervise(&mut self) -> TaskStatus {
        let Some(pid) = self.record.init_pid else {
            return failed("the record of the running container has no pid");
        };
        let init = Init {
            pid,
            start: self.record.init_start,
        };
        self.inner.set_running(
            &self.task.id,
            Some(super::Running {
                service: self.task.service_name.clone(),
                container_id: self.record.container_id.clone(),
                init,
                stop_signal: self.stop_signal().to_string(),
                grace: self.grace(),
            }),
        );
        let runtime = self.inner.drivers.runtime.clone();
        let files = self.files();
        let mut check = tokio::time::interval(SHIM_CHECK);
        let (health_tx, mut health_rx) = mpsc::unbounded_channel();
        let _monitor = self.record.health.clone().map(|config| {
            let target = ProbeTarget {
                container_id: files.id.clone(),
                init,
            };
            let probe = self.inner.drivers.health.clone();
            AbortOnDrop(tokio::spawn(health::monitor(
                probe, target, config, health_tx,
            )))
        });
        let mut unhealthy = None;
        let stopped = loop {
            if self.stop_requested() {
                self.steps = Steps::begin();
                let draining = tokio::time::Instant::now();
                self.drain().await;
                self.steps.add(steps::DRAIN, draining.elapsed());
                break Some(self.stop(init).await);
            }
            tokio::select! {
                Some(change) = health_rx.recv() => {
                    if let Some(why) = self.health_changed(change).await {
                        unhealthy = Some(why);
                        self.steps = Steps::begin();
                        let draining = tokio::time::Instant::now();
                        self.drain_unhealthy().await;
                        self.steps.add(steps::DRAIN, draining.elapsed());
                        break Some(self.stop(init).await);
                    }
                }
                () = runtime.wait_exit(init) => {
                    self.steps = Steps::begin();
                    break None;
                }
                changed = self.desired.changed() => {
                    if changed.is_err() {
                        // The supervisor is gone: leave the container alone.
                        std::future::pending::<()>().await;
                    }
                }
                _ = check.tick() => {
                    if let Err(e) = runtime.keep_logging(&files, init) {
                        warn!(task = %self.task.id, container = %files.id, error = %e, "no shim for the logs");
                    }
                }
            }
        };
        self.inner.set_running(&self.task.id, None);
        let exit = runtime.exit_info(&files).await;
        if let Some(why) = unhealthy {
            return TaskStatus {
                exit_code: exit.code,
                health: TaskHealth::Unhealthy as i32,
                ..failed(why)
            };
        }
        match stopped {
            Some(how) => shutdown_status(how, exit, self.stop_signal(), self.grace()),
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

    /// Reports a new health; returns why, if the task is to be stopped as
    /// unhealthy.
    async fn health_changed(&mut self, change: Change) -> Option<String> {
        self.health = change.health;
        let message = match change.health {
            TaskHealth::Healthy => "running, healthy".to_string(),
            TaskHealth::Unhealthy => format!("running, unhealthy: {}", change.output),
            _ => "running".to_string(),
        };
        self.report(status(TaskState::Running, message)).await;
        (change.health == TaskHealth::Unhealthy).then(|| {
            let retries = self.record.health.as_ref().map_or(0, |h| h.retries);
            format!(
                "unhealthy: {retries} health checks failed in a row, the last: {}",
                change.output
            )
        })
    }

    /// A task that served leaves every node's VIPs, DNS answers and published
    /// ports before its stop signal: waits for the leader's word that every
    /// node applied the change, at most `drain::DRAIN_BOUND`. Connections
    /// already set up keep their conntrack entry and finish meanwhile.
    async fn drain(&self) {
        let Desired::Stop {
            drain_to: Some(target),
        } = *self.desired.borrow()
        else {
            return;
        };
        if !drain::was_serving(self.health) {
            return;
        }
        let started = tokio::time::Instant::now();
        let everywhere = drain::wait(self.inner.applied_everywhere.subscribe(), target).await;
        let waited_ms = started.elapsed().as_millis() as u64;
        if everywhere {
            info!(task = %self.task.id, waited_ms, "drained: out of every node's load balancer and DNS");
        } else {
            warn!(task = %self.task.id, waited_ms, "not every node acknowledged the endpoint change in time: stopping anyway");
        }
    }

    /// An unhealthy task drains too: the leader takes it out of the endpoints
    /// when it hears of the health (reported just before), and the task gets
    /// its stop signal once every node applied that, at most
    /// `drain::DRAIN_BOUND` later.
    async fn drain_unhealthy(&self) {
        let started = tokio::time::Instant::now();
        let left = drain::wait_left(
            self.inner.endpoints.subscribe(),
            self.inner.applied_everywhere.subscribe(),
            &self.task.id,
        )
        .await;
        let waited_ms = started.elapsed().as_millis() as u64;
        match left {
            None => {}
            Some(true) => {
                info!(task = %self.task.id, waited_ms, "unhealthy: out of every node's load balancer and DNS")
            }
            Some(false) => {
                warn!(task = %self.task.id, waited_ms, "unhealthy: not every node acknowledged its leaving in time: stopping anyway")
            }
        }
    }

    async fn stop(&mut self, init: Init) -> Stopped {
        info!(task = %self.task.id, container = %self.record.container_id, "stopping");
        let runtime = self.inner.drivers.runtime.clone();
        let (signal, grace) = (self.stop_signal().to_string(), self.grace());
        self.steps
            .time(
                steps::SIGNAL,
                stop(
                    runtime.as_ref(),
                    &self.record.container_id,
                    init,
                    &signal,
                    grace,
                ),
            )
            .await
    }

    fn stop_signal(&self) -> &str {
        self.record.stop_signal.as_deref().unwrap_or("SIGTERM")
    }

    fn grace(&self) -> Duration {
        match self.task.spec.as_ref().map_or(0, |s| s.stop_grace_seconds) {
            0 => self.inner.drivers.default_stop_grace,
            s => Duration::from_secs(u64::from(s)),
        }
    }

    fn files(&self) -> ContainerFiles {
        self.inner.files(&self.record.container_id)
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

/// Aborts the task it holds when dropped (the health monitor ends with the
/// worker's watch, whichever way that ends).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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
    let assigned = std::time::Instant::now();
    let adopted = adopt.is_some();
    let record = adopt.unwrap_or_else(|| Record::new(&id, &cid));
    // An adopted container's health is checked afresh.
    let health = match record.health {
        Some(_) => TaskHealth::Starting,
        None => TaskHealth::None,
    };
    let mut w = Worker {
        inner: inner.clone(),
        task,
        record,
        desired,
        health,
        steps: Steps::begin(),
    };
    let metrics = inner.drivers.metrics.clone();
    let (last, ran) = if adopted {
        (Some(w.supervise().await), true)
    } else {
        match w.start().await {
            Ok(true) => {
                metrics.task_started(assigned);
                (Some(w.supervise().await), true)
            }
            Ok(false) => (None, false),
            Err(s) => (Some(s), false),
        }
    };
    if w.record.init_pid.is_none() {
        // Ended before it ran (stopped or failed): the stop path starts here.
        w.steps = Steps::begin();
    }
    cleanup_timed(&inner, &cid, &mut w.steps).await;
    let fin = last.unwrap_or_else(|| status(TaskState::Shutdown, "stopped before it started"));
    w.record.phase = Phase::Done;
    let fin = w.finalize(fin).await;
    w.steps.log(&id, "stop path");
    metrics.task_ended(fin.state == TaskState::Failed as i32, ran);
    if inner.finish(&id, Some(fin)) {
        inner.forget(&id);
    }
}

/// Deletes the container and releases its rootfs; what fails is logged (the
/// next open tries again only for tasks that still have a record).
pub(crate) async fn cleanup(inner: &Inner, container_id: &str) {
    cleanup_timed(inner, container_id, &mut Steps::begin()).await;
}

/// `cleanup`, adding the time of each step to `steps`.
async fn cleanup_timed(inner: &Inner, container_id: &str, steps: &mut Steps) {
    let files = inner.files(container_id);
    let deleted = steps
        .time(steps::DELETE, inner.drivers.runtime.delete(&files))
        .await;
    if let Err(e) = deleted {
        warn!(container = container_id, error = %e, "runtime delete failed");
    }
    // A follow of the logs ends on its `closed` marker: the shim writes it once
    // the output is drained (delete waited for that); written here as well for
    // when no shim ever ran (a failed pull).
    if std::fs::create_dir_all(&files.log_dir).is_ok() {
        let _ = std::fs::write(files.log_dir.join(logs::CLOSED), b"");
    }
    unmount_secrets(&inner.drivers.secrets_root, container_id);
    if let Some(network) = &inner.drivers.network {
        steps
            .time(steps::NETWORK, network.release(container_id))
            .await;
    }
    let released = steps
        .time(
            steps::ROOTFS,
            inner.drivers.images.release_rootfs(container_id),
        )
        .await;
    if let Err(e) = released {
        warn!(container = container_id, error = %e, "rootfs release failed");
    }
    let _ = std::fs::remove_dir_all(&files.bundle);
    for f in [super::shim::STDOUT_FIFO, super::shim::STDERR_FIFO] {
        let _ = std::fs::remove_file(files.state_dir.join(f));
    }
}
