//! Every metric a controller exports on `--metrics-listen` (docs/design/metrics.md).
//!
//! Two kinds: counters and histograms counted where the event happens (the
//! Raft member, proposals, the leader's loops), held in [`ControllerMetrics`]
//! and reached through the [`RaftHandle`] every part already has; and gauges
//! read from the state machine at scrape time by [`StateCollector`] (tasks,
//! nodes, rollouts, Raft indexes), so nothing is kept per task between
//! scrapes and a removed service's series go with it. Labels are bounded:
//! services, states, reasons and loop names, never task or node ids.

use std::collections::BTreeMap;

use berth_proto::store::object::Kind;
use berth_proto::v1::update_status::State as RolloutState;
use berth_proto::v1::{NodeAvailability, NodeStatus, TaskState};
use berth_telemetry::define::{counter, counter_vec, gauge, gauge_vec, histogram, histogram_vec};
use berth_telemetry::prometheus::core::{Collector, Desc};
use berth_telemetry::prometheus::proto::MetricFamily;
use berth_telemetry::prometheus::{
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};
use berth_telemetry::{TelemetryError, register};

use crate::raft::RaftHandle;
use crate::store::Table;

/// Where a snapshot went: built for a follower, or installed from the leader.
pub const SNAPSHOT_SENT: &str = "sent";
pub const SNAPSHOT_INSTALLED: &str = "installed";
/// The leader's loops, as the `loop` label names them.
pub const LOOP_PLANNER: &str = "planner";
pub const LOOP_DISPATCHER: &str = "dispatcher";
/// What a dispatcher session sent, as the `kind` label names it: the complete
/// set, a delta from the set the agent held (a resumed session), a delta, the
/// end of leadership.
pub const SESSION_COMPLETE: &str = "complete";
pub const SESSION_RESUME: &str = "resume";
pub const SESSION_DELTA: &str = "delta";
pub const SESSION_NOT_LEADER: &str = "not_leader";

/// The counters and histograms, counted where things happen. Cloning shares
/// them. Unregistered (nobody serves them) unless [`register`](Self::register)d.
#[derive(Clone, Debug)]
pub struct ControllerMetrics {
    pub leader_changes: IntCounter,
    pub proposal_seconds: Histogram,
    pub snapshots: IntCounterVec,
    pub snapshot_bytes: IntCounterVec,
    pub log_compactions: IntCounter,
    pub loop_rounds: IntCounterVec,
    pub loop_failures: IntCounterVec,
    pub loop_seconds: HistogramVec,
    pub placements: IntCounter,
    pub session_messages: IntCounterVec,
    pub session_bytes: IntCounterVec,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Latency buckets from 1 ms to 10 s.
fn latency_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
}

impl ControllerMetrics {
    pub fn new() -> Self {
        ControllerMetrics {
            leader_changes: counter(
                "berth_raft_leader_changes_total",
                "Times this member saw the cluster's leader change.",
            ),
            proposal_seconds: histogram(
                "berth_raft_proposal_duration_seconds",
                "Time from proposing a write on this member to its commit and apply.",
                latency_buckets(),
            ),
            snapshots: counter_vec(
                "berth_raft_snapshots_total",
                "Raft snapshots sent to followers or installed from the leader.",
                &["direction"],
            ),
            snapshot_bytes: counter_vec(
                "berth_raft_snapshot_bytes_total",
                "Bytes of the Raft snapshots sent or installed.",
                &["direction"],
            ),
            log_compactions: counter(
                "berth_raft_log_compactions_total",
                "Times this member compacted its Raft log behind a state machine checkpoint.",
            ),
            loop_rounds: counter_vec(
                "berth_leader_loop_rounds_total",
                "Rounds of the leader's loops.",
                &["loop"],
            ),
            loop_failures: counter_vec(
                "berth_leader_loop_failures_total",
                "Rounds of the leader's loops that failed (retried).",
                &["loop"],
            ),
            loop_seconds: histogram_vec(
                "berth_leader_loop_round_duration_seconds",
                "Time one round of a leader loop took.",
                latency_buckets(),
                &["loop"],
            ),
            placements: counter(
                "berth_scheduler_placements_total",
                "Tasks the scheduler placed on a node.",
            ),
            session_messages: counter_vec(
                "berth_dispatcher_session_messages_total",
                "Messages the dispatcher's sessions handed to agents' streams, by kind.",
                &["kind"],
            ),
            session_bytes: counter_vec(
                "berth_dispatcher_session_bytes_total",
                "Encoded bytes of the messages the dispatcher's sessions handed to agents' \
                 streams, by kind.",
                &["kind"],
            ),
        }
    }

    /// Registers the counters, and the scrape-time gauges read from `raft`.
    pub fn register(&self, registry: &Registry, raft: RaftHandle) -> Result<(), TelemetryError> {
        register(registry, "raft", &self.leader_changes)?;
        register(registry, "raft", &self.proposal_seconds)?;
        register(registry, "raft", &self.snapshots)?;
        register(registry, "raft", &self.snapshot_bytes)?;
        register(registry, "raft", &self.log_compactions)?;
        register(registry, "leader loop", &self.loop_rounds)?;
        register(registry, "leader loop", &self.loop_failures)?;
        register(registry, "leader loop", &self.loop_seconds)?;
        register(registry, "scheduler", &self.placements)?;
        register(registry, "dispatcher", &self.session_messages)?;
        register(registry, "dispatcher", &self.session_bytes)?;
        register(registry, "cluster state", &StateCollector::new(raft))?;
        Ok(())
    }

    /// Counts a snapshot of `bytes` sent or installed.
    pub fn snapshot(&self, direction: &str, bytes: usize) {
        self.snapshots.with_label_values(&[direction]).inc();
        self.snapshot_bytes
            .with_label_values(&[direction])
            .inc_by(bytes as u64);
    }

    /// Counts a session message of `kind` and its encoded size.
    pub fn session_message(&self, kind: &str, bytes: usize) {
        self.session_messages.with_label_values(&[kind]).inc();
        self.session_bytes
            .with_label_values(&[kind])
            .inc_by(bytes as u64);
    }

    /// Counts one round of `name` that took `seconds` and `ok` or not.
    pub fn loop_round(&self, name: &str, seconds: f64, ok: bool) {
        self.loop_rounds.with_label_values(&[name]).inc();
        self.loop_seconds
            .with_label_values(&[name])
            .observe(seconds);
        if !ok {
            self.loop_failures.with_label_values(&[name]).inc();
        }
    }
}

/// The gauges read at scrape time: this member's Raft position and what the
/// state machine holds. Every controller exports them (a follower's store is
/// a replica); `berth_raft_is_leader` tells the leader's apart.
#[derive(Clone)]
pub struct StateCollector {
    raft: RaftHandle,
    term: IntGauge,
    commit_index: IntGauge,
    applied_index: IntGauge,
    is_leader: IntGauge,
    tasks: IntGaugeVec,
    pending: IntGaugeVec,
    nodes: IntGaugeVec,
    rollouts: IntGaugeVec,
}

impl StateCollector {
    pub fn new(raft: RaftHandle) -> Self {
        StateCollector {
            raft,
            term: gauge("berth_raft_term", "This member's current Raft term."),
            commit_index: gauge(
                "berth_raft_commit_index",
                "The highest log index this member knows committed.",
            ),
            applied_index: gauge(
                "berth_raft_applied_index",
                "The highest log index this member applied to its state machine.",
            ),
            is_leader: gauge("berth_raft_is_leader", "1 on the leader, 0 elsewhere."),
            tasks: gauge_vec(
                "berth_tasks",
                "Tasks in the store by service and observed state.",
                &["service", "state"],
            ),
            pending: gauge_vec(
                "berth_tasks_pending",
                "Pending tasks waiting for a node, by why they wait.",
                &["reason"],
            ),
            nodes: gauge_vec(
                "berth_nodes",
                "Nodes by status and availability.",
                &["status", "availability"],
            ),
            rollouts: gauge_vec(
                "berth_service_rollouts",
                "Services by the state of their last rollout (updating and \
                 rollback_started are in progress; paused, rollback_paused and \
                 rollback_completed follow a failure or a rollback).",
                &["state"],
            ),
        }
    }

    /// Re-reads everything into the gauges (emptied first: a series whose
    /// service or state is gone disappears).
    fn refresh(&self) {
        self.raft.status().with(|s| {
            self.term.set(s.term as i64);
            self.commit_index.set(s.commit_index as i64);
            self.applied_index.set(s.applied_index as i64);
            self.is_leader.set(i64::from(s.is_leader()));
        });
        for vec in [&self.tasks, &self.pending, &self.nodes, &self.rollouts] {
            vec.reset();
        }
        let sm = self.raft.state();
        let mut counts = Counts::default();
        for table in [Table::Task, Table::Node, Table::Service] {
            // Counted one object at a time: a scrape holds no decoded table.
            let counted = sm.list_as(table, |object| {
                counts.add(object.kind?);
                None::<()>
            });
            match counted {
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(%err, table = table.name(), "metrics: cannot read the store")
                }
            }
        }
        for ((service, state), n) in counts.tasks {
            self.tasks.with_label_values(&[&service, state]).set(n);
        }
        for (reason, n) in counts.pending {
            self.pending.with_label_values(&[reason]).set(n);
        }
        for ((status, availability), n) in counts.nodes {
            self.nodes.with_label_values(&[status, availability]).set(n);
        }
        for (state, n) in counts.rollouts {
            self.rollouts.with_label_values(&[state]).set(n);
        }
    }
}

impl Collector for StateCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = Vec::new();
        for gauge in [
            &self.term,
            &self.commit_index,
            &self.applied_index,
            &self.is_leader,
        ] {
            descs.extend(gauge.desc());
        }
        for vec in [&self.tasks, &self.pending, &self.nodes, &self.rollouts] {
            descs.extend(vec.desc());
        }
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        let mut families = Vec::new();
        for gauge in [
            &self.term,
            &self.commit_index,
            &self.applied_index,
            &self.is_leader,
        ] {
            families.extend(gauge.collect());
        }
        for vec in [&self.tasks, &self.pending, &self.nodes, &self.rollouts] {
            families.extend(vec.collect());
        }
        families
    }
}

/// What one scrape counts in the store.
#[derive(Debug, Default)]
struct Counts {
    tasks: BTreeMap<(String, &'static str), i64>,
    pending: BTreeMap<&'static str, i64>,
    nodes: BTreeMap<(&'static str, &'static str), i64>,
    rollouts: BTreeMap<&'static str, i64>,
}

impl Counts {
    fn add(&mut self, kind: Kind) {
        match kind {
            Kind::Task(task) => {
                let status = task.status.unwrap_or_default();
                let state = TaskState::try_from(status.state).unwrap_or(TaskState::New);
                *self
                    .tasks
                    .entry((task.service_name, state.short_name()))
                    .or_default() += 1;
                if state == TaskState::Pending && task.node_id.is_empty() {
                    *self
                        .pending
                        .entry(pending_reason(&status.message))
                        .or_default() += 1;
                }
            }
            Kind::Node(node) => {
                let status = NodeStatus::try_from(node.status).unwrap_or(NodeStatus::Unknown);
                let availability = NodeAvailability::try_from(node.availability)
                    .unwrap_or(NodeAvailability::Active);
                *self
                    .nodes
                    .entry((status.short_name(), availability.short_name()))
                    .or_default() += 1;
            }
            Kind::Service(service) => {
                let state = service
                    .update_status
                    .and_then(|u| RolloutState::try_from(u.state).ok())
                    .unwrap_or(RolloutState::None);
                if state != RolloutState::None {
                    *self.rollouts.entry(state.short_name()).or_default() += 1;
                }
            }
            _ => {}
        }
    }
}

/// The scheduler's message on a pending task (scheduler/filter.rs words it)
/// as one of a few reasons: the most frequent one when several nodes
/// refused for different reasons.
pub fn pending_reason(message: &str) -> &'static str {
    if message.is_empty() {
        return "not_scheduled_yet";
    }
    if message.starts_with("cannot be placed") {
        return "invalid_spec";
    }
    // "no node fits: 3 nodes checked: 2 without 1 GiB of memory free, 1 ...":
    // the first reason after the count is the most frequent.
    let first = match message.split_once(" checked: ") {
        Some((_, reasons)) => reasons.split(", ").next().unwrap_or(reasons),
        None => message,
    };
    const REASONS: [(&str, &str); 8] = [
        ("no nodes", "no_nodes"),
        ("ready and active", "no_ready_node"),
        ("data plane", "data_plane"),
        ("satisf", "constraint"),
        ("memory", "memory"),
        ("port", "port"),
        ("per node", "max_replicas"),
        ("free", "cpu"),
    ];
    REASONS
        .iter()
        .find(|(words, _)| first.contains(words))
        .map(|(_, reason)| *reason)
        .or_else(|| message.contains("volume").then_some("volume"))
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definitions_are_valid_and_register_once_each() {
        let metrics = ControllerMetrics::new();
        let registry = Registry::new();
        for (what, c) in [
            (
                "a",
                Box::new(metrics.leader_changes.clone()) as Box<dyn Collector>,
            ),
            ("b", Box::new(metrics.proposal_seconds.clone())),
            ("c", Box::new(metrics.snapshots.clone())),
            ("d", Box::new(metrics.loop_seconds.clone())),
        ] {
            assert!(registry.register(c).is_ok(), "{what}");
        }
        metrics.snapshot(SNAPSHOT_SENT, 1000);
        metrics.loop_round(LOOP_PLANNER, 0.01, false);
        assert_eq!(
            metrics
                .snapshot_bytes
                .with_label_values(&[SNAPSHOT_SENT])
                .get(),
            1000
        );
        assert_eq!(
            metrics
                .loop_failures
                .with_label_values(&[LOOP_PLANNER])
                .get(),
            1
        );
    }

    #[test]
    fn pending_messages_become_a_few_reasons() {
        for (message, reason) in [
            ("", "not_scheduled_yet"),
            ("cannot be placed: bad constraint", "invalid_spec"),
            (
                "no node is ready and active: the cluster has no nodes",
                "no_nodes",
            ),
            (
                "no node is ready and active: 2 nodes checked",
                "no_ready_node",
            ),
            (
                "no node has 4 GiB of memory free: 3 nodes checked",
                "memory",
            ),
            ("no node has 2 CPUs free: 1 node checked", "cpu"),
            ("no node has port 80/tcp free: 1 node checked", "port"),
            (
                "no node satisfies node.labels.zone==a: 1 node checked",
                "constraint",
            ),
            ("max 1 replica per node reached on 2 nodes", "max_replicas"),
            (
                "no node fits: 3 nodes checked: 2 with port 80/tcp taken, 1 without 1 GiB of memory free",
                "port",
            ),
            ("waiting for volume data on its node", "volume"),
            ("something new", "other"),
        ] {
            assert_eq!(pending_reason(message), reason, "{message}");
        }
    }

    #[test]
    fn counts_are_by_service_and_state_and_nodes_by_status() {
        use berth_proto::v1::{Node, Task, TaskStatus};
        let task = |service: &str, state: TaskState, message: &str| {
            Kind::Task(Box::new(Task {
                service_name: service.into(),
                status: Some(TaskStatus {
                    state: state as i32,
                    message: message.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }))
        };
        let mut counts = Counts::default();
        counts.add(task("web", TaskState::Running, ""));
        counts.add(task("web", TaskState::Running, ""));
        counts.add(task("web", TaskState::Failed, ""));
        counts.add(task(
            "db",
            TaskState::Pending,
            "no node has 2 CPUs free: 1 node checked",
        ));
        counts.add(Kind::Node(Node {
            status: NodeStatus::Down as i32,
            availability: NodeAvailability::Drain as i32,
            ..Default::default()
        }));
        assert_eq!(counts.tasks[&("web".to_string(), "running")], 2);
        assert_eq!(counts.tasks[&("web".to_string(), "failed")], 1);
        assert_eq!(counts.pending["cpu"], 1);
        assert_eq!(counts.nodes[&("down", "drain")], 1);
    }
}
