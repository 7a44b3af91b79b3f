//! Every metric an agent exports on `--metrics-listen` (docs/design/metrics.md).
//!
//! Counters and histograms are counted where the event happens (a task's
//! worker, an image pull, the data plane's reconcile loop) in
//! [`AgentMetrics`], which the daemon hands to the supervisor and the network
//! plane. Per-task cpu, memory and pids are read from the running tasks'
//! cgroups at scrape time by [`TaskCollector`]: those series exist only while
//! their task runs, so task ids as labels stay bounded by what runs; no
//! counter that lives forever carries a task id.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use berth_runtime::cgroups::Cgroup;
use berth_telemetry::define::{counter, counter_vec, float_counter_vec, gauge_vec, histogram};
use berth_telemetry::prometheus::core::{Collector, Desc};
use berth_telemetry::prometheus::proto::MetricFamily;
use berth_telemetry::prometheus::{
    CounterVec, Histogram, IntCounter, IntCounterVec, IntGaugeVec, Registry,
};
use berth_telemetry::{TelemetryError, register};

use crate::image::{Image, ImageStore, PullOptions};
use crate::supervisor::Supervisor;

/// Where a task failed: before its container ran, or after.
pub const FAILED_STARTING: &str = "start";
pub const FAILED_RUNNING: &str = "run";

/// The counters and histograms. Cloning shares them; unregistered (nobody
/// serves them) unless [`register`](Self::register)ed.
#[derive(Clone, Debug)]
pub struct AgentMetrics {
    pub task_starts: IntCounter,
    pub task_failures: IntCounterVec,
    pub task_start_seconds: Histogram,
    pub image_pulls: IntCounterVec,
    pub image_pull_bytes: IntCounter,
    pub image_pull_seconds: Histogram,
    pub dataplane_rounds: IntCounter,
    pub dataplane_errors: IntCounter,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// From 10 ms to 5 minutes: a start includes its image's pull.
fn slow_buckets() -> Vec<f64> {
    vec![
        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ]
}

impl AgentMetrics {
    pub fn new() -> Self {
        AgentMetrics {
            task_starts: counter(
                "berth_agent_task_starts_total",
                "Task containers this agent started.",
            ),
            task_failures: counter_vec(
                "berth_agent_task_failures_total",
                "Tasks that ended FAILED, by whether they failed before their container ran \
                 (start) or after (run).",
                &["stage"],
            ),
            task_start_seconds: histogram(
                "berth_agent_task_start_duration_seconds",
                "Time from a task's assignment to its container running, the image pull included.",
                slow_buckets(),
            ),
            image_pulls: counter_vec(
                "berth_agent_image_pulls_total",
                "Image pulls from registries, by outcome (ok, failed).",
                &["outcome"],
            ),
            image_pull_bytes: counter(
                "berth_agent_image_pull_bytes_total",
                "Size of the images pulled (their compressed layers).",
            ),
            image_pull_seconds: histogram(
                "berth_agent_image_pull_duration_seconds",
                "Time one image pull took, unpacking included.",
                slow_buckets(),
            ),
            dataplane_rounds: counter(
                "berth_agent_dataplane_reconcile_rounds_total",
                "Reconciles of the kernel's overlay, DNS and load balancer with the assignments.",
            ),
            dataplane_errors: counter(
                "berth_agent_dataplane_reconcile_errors_total",
                "Data-plane reconciles that failed (retried at the next change or period).",
            ),
        }
    }

    /// Registers the counters and the per-task collector over `supervisor`'s
    /// running tasks.
    pub fn register(
        &self,
        registry: &Registry,
        supervisor: Arc<Supervisor>,
    ) -> Result<(), TelemetryError> {
        register(registry, "task", &self.task_starts)?;
        register(registry, "task", &self.task_failures)?;
        register(registry, "task", &self.task_start_seconds)?;
        register(registry, "image", &self.image_pulls)?;
        register(registry, "image", &self.image_pull_bytes)?;
        register(registry, "image", &self.image_pull_seconds)?;
        register(registry, "data plane", &self.dataplane_rounds)?;
        register(registry, "data plane", &self.dataplane_errors)?;
        register(registry, "task cgroup", &TaskCollector::new(supervisor))?;
        Ok(())
    }

    /// Pulls `name` into `store`, counting the pull, its size and time.
    pub async fn pull(
        &self,
        store: &ImageStore,
        name: &str,
        opts: &PullOptions,
    ) -> crate::image::Result<Image> {
        let started = Instant::now();
        let pulled = store.pull(name, opts).await;
        let outcome = if pulled.is_ok() { "ok" } else { "failed" };
        self.image_pulls.with_label_values(&[outcome]).inc();
        if let Ok(image) = &pulled {
            self.image_pull_bytes.inc_by(image.size());
            self.image_pull_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        pulled
    }

    /// Counts a task's final status: a failure before or after it ran.
    pub fn task_ended(&self, failed: bool, ran: bool) {
        if failed {
            let stage = if ran { FAILED_RUNNING } else { FAILED_STARTING };
            self.task_failures.with_label_values(&[stage]).inc();
        }
    }

    /// Counts a container that started `since` its assignment.
    pub fn task_started(&self, since: Instant) {
        self.task_starts.inc();
        self.task_start_seconds
            .observe(since.elapsed().as_secs_f64());
    }

    /// Counts one data-plane reconcile.
    pub fn dataplane_round(&self, ok: bool) {
        self.dataplane_rounds.inc();
        if !ok {
            self.dataplane_errors.inc();
        }
    }
}

/// A running task's container, as the collector reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningTask {
    pub task_id: String,
    pub service: String,
    pub container_id: String,
}

/// cpu, memory and pids of every running task, read from its cgroup at
/// scrape time; a task's series disappear when it stops.
#[derive(Clone)]
pub struct TaskCollector {
    supervisor: Arc<Supervisor>,
    /// Each running container's cgroup, found once (finding one reads the
    /// mount table); entries of containers no longer running are dropped.
    cgroups: Arc<Mutex<HashMap<String, Cgroup>>>,
    cpu: CounterVec,
    memory: IntGaugeVec,
    pids: IntGaugeVec,
}

const TASK_LABELS: [&str; 2] = ["service", "task"];

impl TaskCollector {
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        TaskCollector {
            supervisor,
            cgroups: Arc::default(),
            cpu: float_counter_vec(
                "berth_agent_task_cpu_seconds_total",
                "CPU time a running task's cgroup used.",
                &TASK_LABELS,
            ),
            memory: gauge_vec(
                "berth_agent_task_memory_bytes",
                "Memory a running task's cgroup uses now.",
                &TASK_LABELS,
            ),
            pids: gauge_vec(
                "berth_agent_task_pids",
                "Processes and threads in a running task's cgroup.",
                &TASK_LABELS,
            ),
        }
    }

    fn refresh(&self) {
        self.cpu.reset();
        self.memory.reset();
        self.pids.reset();
        let running = self.supervisor.running_tasks();
        let mut cgroups = self.cgroups.lock().unwrap_or_else(|e| e.into_inner());
        cgroups.retain(|container, _| running.iter().any(|t| &t.container_id == container));
        let parent = self
            .supervisor
            .cgroup_parent()
            .trim_matches('/')
            .to_string();
        for task in running {
            let cgroup = match cgroups.get(&task.container_id) {
                Some(cgroup) => cgroup,
                None => {
                    let rel = Path::new(&parent).join(&task.container_id);
                    match Cgroup::for_container(&rel) {
                        Ok(cgroup) => cgroups.entry(task.container_id.clone()).or_insert(cgroup),
                        Err(err) => {
                            tracing::debug!(task = %task.task_id, %err, "metrics: no cgroup");
                            continue;
                        }
                    }
                }
            };
            let usage = cgroup.usage();
            let labels = [task.service.as_str(), task.task_id.as_str()];
            self.cpu
                .with_label_values(&labels)
                .inc_by(usage.cpu_ns as f64 / 1e9);
            self.memory
                .with_label_values(&labels)
                .set(i64::try_from(usage.memory_bytes).unwrap_or(i64::MAX));
            self.pids
                .with_label_values(&labels)
                .set(i64::try_from(usage.pids).unwrap_or(i64::MAX));
        }
    }
}

impl Collector for TaskCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.cpu.desc();
        descs.extend(self.memory.desc());
        descs.extend(self.pids.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        let mut families = self.cpu.collect();
        families.extend(self.memory.collect());
        families.extend(self.pids.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_stage_and_starts_with_their_latency() {
        let metrics = AgentMetrics::new();
        let registry = Registry::new();
        register(&registry, "task", &metrics.task_failures).unwrap();
        register(&registry, "task", &metrics.task_start_seconds).unwrap();
        metrics.task_ended(true, false);
        metrics.task_ended(true, true);
        metrics.task_ended(true, true);
        metrics.task_ended(false, true);
        metrics.task_started(Instant::now());
        let failures = |stage| metrics.task_failures.with_label_values(&[stage]).get();
        assert_eq!(failures(FAILED_STARTING), 1);
        assert_eq!(failures(FAILED_RUNNING), 2);
        assert_eq!(metrics.task_starts.get(), 1);
        assert_eq!(metrics.task_start_seconds.get_sample_count(), 1);
    }

    #[test]
    fn dataplane_errors_are_rounds_too() {
        let metrics = AgentMetrics::new();
        metrics.dataplane_round(true);
        metrics.dataplane_round(false);
        assert_eq!(metrics.dataplane_rounds.get(), 2);
        assert_eq!(metrics.dataplane_errors.get(), 1);
    }
}
