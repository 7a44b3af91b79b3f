//! The task worker's state machine, through the fake runtime and images: no
//! root, no containers, and tokio's paused clock instead of real waiting.

use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::{
    ExecProbe, HealthCheck, SecretReference, SecretValue, ServiceSpec, Task, TaskHealth, TaskState,
    TaskStatus, health_check,
};

use crate::image::BasicCredentials;

use super::container_runtime::ExitInfo;
use super::fake::{Call, FakeImages, FakeProbe, FakeRuntime};
use super::state::{Phase, Record, StateDir};
use super::{Drivers, StatusUpdates, Supervisor};

const ID: &str = "task-1";

struct Harness {
    dir: tempfile::TempDir,
    runtime: Arc<FakeRuntime>,
    images: Arc<FakeImages>,
    /// Health probes pass unless a test scripts them.
    probe: Arc<FakeProbe>,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = Arc::new(FakeImages::new(&dir.path().join("rootfs")));
        Harness {
            dir,
            runtime: Arc::new(FakeRuntime::default()),
            images,
            probe: Arc::new(FakeProbe::new(Vec::new(), Ok(()))),
        }
    }

    fn with_stop_signal(mut self, signal: &str) -> Harness {
        let mut images = FakeImages::new(&self.dir.path().join("rootfs"));
        images.stop_signal = Some(signal.to_string());
        self.images = Arc::new(images);
        self
    }

    async fn open(&self) -> (Supervisor, StatusUpdates) {
        let drivers = Drivers {
            runtime: self.runtime.clone(),
            images: self.images.clone(),
            network: None,
            cgroup_parent: "berth-unit".into(),
            default_stop_grace: Duration::from_secs(10),
            secrets_root: self.dir.path().join("secrets"),
            node_name: "n1".into(),
            init_binary: self.dir.path().join("no-tini"),
            health: self.probe.clone(),
            exec_runtime: None,
            metrics: Default::default(),
        };
        Supervisor::open_with(self.dir.path(), drivers)
            .await
            .expect("open")
    }

    /// Opens a supervisor and runs task ID (with `grace_seconds`) until RUNNING.
    async fn running(&self, grace_seconds: u32) -> (Supervisor, StatusUpdates) {
        let (sup, mut updates) = self.open().await;
        sup.reconcile(vec![task(ID, TaskState::Running, grace_seconds)]);
        until(&mut updates, TaskState::Running).await;
        (sup, updates)
    }

    fn state(&self) -> StateDir {
        StateDir::open(self.dir.path()).expect("state dir")
    }
}

fn task(id: &str, desired: TaskState, grace_seconds: u32) -> Task {
    Task {
        id: id.to_string(),
        desired_state: desired as i32,
        spec: Some(ServiceSpec {
            image: "busybox".into(),
            stop_grace_seconds: grace_seconds,
            ..ServiceSpec::default()
        }),
        ..Task::default()
    }
}

fn state_of(s: &TaskStatus) -> TaskState {
    TaskState::try_from(s.state).expect("a known state")
}

/// The next status reported (tokio time: fails fast if none ever comes).
async fn next(updates: &mut StatusUpdates) -> TaskStatus {
    let update = tokio::time::timeout(Duration::from_secs(3600), updates.recv())
        .await
        .expect("a status within the hour")
        .expect("the supervisor is open");
    assert_eq!(update.task_id, ID);
    update.status.expect("a status")
}

/// Statuses up to and including the first in `state`.
async fn until(updates: &mut StatusUpdates, state: TaskState) -> Vec<TaskStatus> {
    let mut seen = Vec::new();
    loop {
        let s = next(updates).await;
        let done = state_of(&s) == state;
        seen.push(s);
        if done {
            return seen;
        }
    }
}

/// The worker's last calls: how did it end, then delete it.
fn assert_ended_and_deleted(h: &Harness) {
    let calls = h.runtime.calls();
    assert!(
        calls.ends_with(&[Call::ExitInfo(ID.into()), Call::Delete(ID.into())]),
        "{calls:?}"
    );
}

fn states(statuses: &[TaskStatus]) -> Vec<TaskState> {
    statuses.iter().map(state_of).collect()
}

#[tokio::test(start_paused = true)]
async fn a_task_runs_through_preparing_and_starting_and_completes_on_code_0() {
    let h = Harness::new();
    let (sup, mut updates) = h.open().await;
    sup.reconcile(vec![task(ID, TaskState::Running, 0)]);
    let seen = until(&mut updates, TaskState::Running).await;
    assert_eq!(
        states(&seen),
        [
            TaskState::Preparing,
            TaskState::Starting,
            TaskState::Running
        ]
    );
    assert_eq!(seen[0].message, "pulling busybox");
    assert_eq!(seen[2].container_id, ID);
    assert_eq!(
        h.runtime.calls(),
        [Call::Create(ID.into()), Call::Start(ID.into())]
    );
    let (records, _) = h.state().load_all().expect("records");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].phase, Phase::Running);
    assert!(records[0].init_pid.is_some());

    h.runtime.exit(ID, 0);
    let last = next(&mut updates).await;
    assert_eq!(state_of(&last), TaskState::Complete);
    assert_eq!(last.exit_code, Some(0));
    assert_eq!(last.message, "exited with code 0");
    assert_ended_and_deleted(&h);
    assert!(!h.runtime.exists(ID));
    assert_eq!(*h.images.released.lock().expect("lock"), [ID.to_string()]);
    assert_eq!(
        sup.statuses()[0].status.as_ref().map(state_of),
        Some(TaskState::Complete)
    );
    let (records, _) = h.state().load_all().expect("records");
    assert_eq!(records[0].phase, Phase::Done);
}

#[tokio::test(start_paused = true)]
async fn a_failed_create_is_reported_failed_with_the_runtime_message() {
    let h = Harness::new();
    h.runtime
        .fail_create("exec: \"nope\": executable file not found in $PATH");
    let (sup, mut updates) = h.open().await;
    sup.reconcile(vec![task(ID, TaskState::Running, 0)]);
    let seen = until(&mut updates, TaskState::Failed).await;
    assert_eq!(
        states(&seen),
        [TaskState::Preparing, TaskState::Starting, TaskState::Failed]
    );
    let failed = &seen[2];
    assert!(
        failed.error.contains("executable file not found"),
        "{}",
        failed.error
    );
    // A command not found: Docker's 127 (#14; it was None before, when the
    // exit code was only ever the container's own).
    assert_eq!(failed.exit_code, Some(127));
    // Never started; what create may have left is deleted.
    assert_eq!(
        h.runtime.calls(),
        [Call::Create(ID.into()), Call::Delete(ID.into())]
    );
}

#[tokio::test(start_paused = true)]
async fn a_non_zero_exit_code_is_a_failure_with_that_code() {
    let h = Harness::new();
    let (_sup, mut updates) = h.running(0).await;
    h.runtime.exit(ID, 3);
    let last = next(&mut updates).await;
    assert_eq!(state_of(&last), TaskState::Failed);
    assert_eq!(last.exit_code, Some(3));
    assert_eq!(last.error, "exited with code 3");
}

#[tokio::test(start_paused = true)]
async fn an_oom_kill_is_a_failure_that_says_so() {
    let h = Harness::new();
    let (_sup, mut updates) = h.running(0).await;
    h.runtime.oom_kill(ID);
    let last = next(&mut updates).await;
    assert_eq!(state_of(&last), TaskState::Failed);
    assert_eq!(last.exit_code, Some(137));
    assert!(last.error.contains("OOM-killed"), "{}", last.error);
    assert!(last.error.contains("killed by signal 9"), "{}", last.error);
}

#[tokio::test(start_paused = true)]
async fn a_stop_ignored_on_sigterm_is_a_sigkill_after_the_grace_period() {
    let h = Harness::new();
    h.runtime.ignore("SIGTERM");
    let (sup, mut updates) = h.running(7).await;
    sup.reconcile(vec![task(ID, TaskState::Shutdown, 7)]);
    let last = next(&mut updates).await;
    assert_eq!(state_of(&last), TaskState::Shutdown);
    assert_eq!(
        last.message,
        "killed with SIGKILL after the 7s grace period"
    );
    assert_eq!(last.exit_code, Some(137));
    let kills: Vec<_> = h
        .runtime
        .timed_calls()
        .into_iter()
        .filter(|(c, _)| matches!(c, Call::Kill(..)))
        .collect();
    assert_eq!(
        kills.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
        [
            Call::Kill(ID.into(), "SIGTERM".into()),
            Call::Kill(ID.into(), "SIGKILL".into())
        ]
    );
    assert_eq!(kills[1].1 - kills[0].1, Duration::from_secs(7));
    assert_ended_and_deleted(&h);
}

#[tokio::test(start_paused = true)]
async fn a_container_that_survives_sigkill_is_deleted_by_force() {
    let h = Harness::new();
    h.runtime.ignore("SIGTERM");
    h.runtime.ignore("SIGKILL");
    let (sup, mut updates) = h.running(1).await;
    let stop_asked = tokio::time::Instant::now();
    sup.reconcile(vec![task(ID, TaskState::Shutdown, 1)]);
    let last = next(&mut updates).await;
    assert_eq!(state_of(&last), TaskState::Shutdown);
    assert_eq!(
        last.message,
        "still running after SIGKILL; deleted by force"
    );
    assert_eq!(last.exit_code, None);
    assert_eq!(
        tokio::time::Instant::now() - stop_asked,
        Duration::from_secs(1) + super::stop::KILL_WAIT
    );
    assert_ended_and_deleted(&h);
}

/// The signals the worker sent, in order.
fn kills(h: &Harness) -> Vec<Call> {
    h.runtime
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Kill(..)))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_container_that_ends_on_its_stop_signal_gets_no_sigkill() {
    let h = Harness::new().with_stop_signal("quit");
    let (sup, mut updates) = h.running(0).await;
    sup.reconcile(vec![task(ID, TaskState::Shutdown, 0)]);
    let last = next(&mut updates).await;
    assert_eq!(state_of(&last), TaskState::Shutdown);
    assert_eq!(last.message, "stopped on SIGQUIT, killed by signal 3");
    assert_eq!(kills(&h), [Call::Kill(ID.into(), "SIGQUIT".into())]);
}

#[tokio::test(start_paused = true)]
async fn a_stop_during_the_pull_ends_the_task_before_any_container() {
    let h = Harness::new();
    h.images.hold_pulls();
    let (sup, mut updates) = h.open().await;
    sup.reconcile(vec![task(ID, TaskState::Running, 0)]);
    assert_eq!(state_of(&next(&mut updates).await), TaskState::Preparing);
    sup.reconcile(vec![task(ID, TaskState::Shutdown, 0)]);
    let last = next(&mut updates).await;
    assert_eq!(state_of(&last), TaskState::Shutdown);
    assert_eq!(last.message, "stopped before it started");
    // Only the cleanup of what might have been made.
    assert_eq!(h.runtime.calls(), [Call::Delete(ID.into())]);
    h.images.release_pulls();
}

#[tokio::test(start_paused = true)]
async fn a_task_left_out_of_the_set_is_stopped_and_forgotten() {
    let h = Harness::new();
    let (sup, mut updates) = h.running(0).await;
    sup.reconcile(Vec::new());
    let last = next(&mut updates).await;
    assert_eq!(state_of(&last), TaskState::Shutdown);
    assert!(sup.statuses().is_empty());
    assert!(!h.state().task_dir(ID).exists());
}

#[tokio::test(start_paused = true)]
async fn a_running_container_is_adopted_not_created_again() {
    let h = Harness::new();
    let init = h.runtime.running(ID);
    let state = h.state();
    let t = task(ID, TaskState::Running, 0);
    state.save_task(&t).expect("task");
    let mut record = Record::new(ID, ID);
    record.phase = Phase::Running;
    record.init_pid = Some(init.pid);
    record.init_start = init.start;
    record.status.state = TaskState::Running as i32;
    state.save(&record).expect("record");

    let (sup, mut updates) = h.open().await;
    let known = sup.statuses();
    assert_eq!(known.len(), 1);
    assert_eq!(
        known[0].status.as_ref().map(state_of),
        Some(TaskState::Running)
    );
    // The controller still wants it: nothing new is started.
    sup.reconcile(vec![t]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !h.runtime
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Create(_) | Call::Start(_))),
        "{:?}",
        h.runtime.calls()
    );
    // The adopted worker watches it (and keeps its logs drained).
    assert!(h.runtime.log_checks(ID) > 0);
    h.runtime.end(
        ID,
        ExitInfo {
            code: Some(0),
            signal: None,
            oom_killed: false,
        },
    );
    let last = next(&mut updates).await;
    assert_eq!(state_of(&last), TaskState::Complete);
    assert_ended_and_deleted(&h);
}

#[tokio::test(start_paused = true)]
async fn a_task_id_that_cannot_name_a_container_fails_at_once() {
    let h = Harness::new();
    let (sup, mut updates) = h.open().await;
    sup.reconcile(vec![task("../x", TaskState::Running, 0)]);
    let update = updates.recv().await.expect("a status");
    assert_eq!(update.task_id, "../x");
    let s = update.status.expect("status");
    assert_eq!(state_of(&s), TaskState::Failed);
    assert!(s.error.contains("invalid container id"), "{}", s.error);
    assert!(h.runtime.calls().is_empty());
}

/// Task ID of a service whose image is pulled with registry-auth secret `s1`.
fn task_with_registry_auth() -> Task {
    let mut t = task(ID, TaskState::Running, 0);
    if let Some(spec) = t.spec.as_mut() {
        spec.image = "10.0.0.5:5000/private/app:1".into();
        spec.registry_auth = Some(SecretReference {
            secret_id: "s1".into(),
            secret_name: "registry-auth-app-1".into(),
            ..SecretReference::default()
        });
    }
    t
}

#[tokio::test(start_paused = true)]
async fn the_pull_gets_the_services_registry_credentials_from_memory() {
    let h = Harness::new();
    let (sup, mut updates) = h.open().await;
    let creds = BasicCredentials {
        registry: "10.0.0.5:5000".into(),
        username: "alice".into(),
        password: "s3cret".into(),
    };
    sup.set_payloads(
        vec![SecretValue {
            id: "s1".into(),
            name: "registry-auth-app-1".into(),
            data: creds.to_config_json(),
        }],
        Vec::new(),
    );
    sup.reconcile(vec![task_with_registry_auth()]);
    until(&mut updates, TaskState::Running).await;
    let given = h.images.credentials.lock().expect("lock").clone();
    let [Some(given)] = given.as_slice() else {
        panic!("one pull with credentials: {given:?}");
    };
    assert_eq!(
        given.basic_for("10.0.0.5:5000").expect("parse"),
        Some(creds)
    );
    // Not a mounted secret: nothing under the secrets root.
    assert!(!h.dir.path().join("secrets").join(ID).exists());
}

#[tokio::test(start_paused = true)]
async fn a_task_whose_registry_credentials_did_not_come_fails_before_pulling() {
    let h = Harness::new();
    let (sup, mut updates) = h.open().await;
    sup.reconcile(vec![task_with_registry_auth()]);
    let s = until(&mut updates, TaskState::Failed)
        .await
        .pop()
        .expect("a status");
    assert!(
        s.error
            .contains("registry credentials secret registry-auth-app-1 was not delivered"),
        "{}",
        s.error
    );
    assert!(h.images.credentials.lock().expect("lock").is_empty());
    let calls = h.runtime.calls();
    assert!(
        !calls.contains(&Call::Create(ID.into())),
        "no container: {calls:?}"
    );
}

fn health_of(s: &TaskStatus) -> TaskHealth {
    TaskHealth::try_from(s.health).expect("a known health")
}

#[tokio::test(start_paused = true)]
async fn a_checked_task_turns_healthy_then_unhealthy_and_is_stopped_as_failed() {
    let mut h = Harness::new();
    h.probe = Arc::new(FakeProbe::new(vec![Ok(())], Err("exit status: 1".into())));
    let (sup, mut updates) = h.open().await;
    let mut t = task(ID, TaskState::Running, 0);
    if let Some(spec) = t.spec.as_mut() {
        spec.healthcheck = Some(HealthCheck {
            probe: Some(health_check::Probe::Exec(ExecProbe {
                command: vec!["true".into()],
            })),
            interval_ms: 1000,
            retries: 2,
            ..HealthCheck::default()
        });
    }
    sup.reconcile(vec![t]);
    let seen = until(&mut updates, TaskState::Running).await;
    assert_eq!(health_of(&seen[0]), TaskHealth::None, "preparing has none");
    assert_eq!(health_of(&seen[2]), TaskHealth::Starting);
    let (records, _) = h.state().load_all().expect("records");
    assert_eq!(records[0].health.as_ref().map(|c| c.retries), Some(2));

    let healthy = next(&mut updates).await;
    assert_eq!(state_of(&healthy), TaskState::Running);
    assert_eq!(health_of(&healthy), TaskHealth::Healthy);
    let unhealthy = next(&mut updates).await;
    assert_eq!(state_of(&unhealthy), TaskState::Running);
    assert_eq!(health_of(&unhealthy), TaskHealth::Unhealthy);
    let last = next(&mut updates).await;
    assert_eq!(state_of(&last), TaskState::Failed);
    assert_eq!(health_of(&last), TaskHealth::Unhealthy);
    assert!(
        last.error
            .contains("2 health checks failed in a row, the last: exit status: 1"),
        "{}",
        last.error
    );
    assert!(
        h.runtime
            .calls()
            .contains(&Call::Kill(ID.into(), "SIGTERM".into())),
        "stopped: {:?}",
        h.runtime.calls()
    );
    assert_ended_and_deleted(&h);
}

#[tokio::test(start_paused = true)]
async fn a_task_without_a_check_has_no_health() {
    let h = Harness::new();
    let (sup, mut updates) = h.open().await;
    sup.reconcile(vec![task(ID, TaskState::Running, 0)]);
    let seen = until(&mut updates, TaskState::Running).await;
    assert_eq!(health_of(&seen[2]), TaskHealth::None);
    h.runtime.exit(ID, 0);
    assert_eq!(health_of(&next(&mut updates).await), TaskHealth::None);
}

#[tokio::test(start_paused = true)]
async fn the_services_stop_signal_comes_before_the_images() {
    let h = Harness::new().with_stop_signal("quit");
    let (sup, mut updates) = h.open().await;
    let mut t = task(ID, TaskState::Running, 0);
    if let Some(spec) = t.spec.as_mut() {
        spec.stop_signal = "usr1".into();
    }
    sup.reconcile(vec![t.clone()]);
    until(&mut updates, TaskState::Running).await;
    t.desired_state = TaskState::Shutdown as i32;
    sup.reconcile(vec![t]);
    let last = until(&mut updates, TaskState::Shutdown).await;
    assert!(
        last.last()
            .is_some_and(|s| s.message.starts_with("stopped on SIGUSR1")),
        "{last:?}"
    );
    assert_eq!(kills(&h), [Call::Kill(ID.into(), "SIGUSR1".into())]);
}

/// An assignment set at shared sequence `seq` where the service of task ID
/// ("web") still has `serving` tasks in its endpoint.
fn endpoints_at(seq: u64, serving: &[&str]) -> super::Endpoints {
    super::Endpoints::from_assignments(&berth_proto::v1::Assignments {
        shared_seq: seq,
        endpoints: vec![berth_proto::v1::Endpoint {
            service_id: "web".into(),
            tasks: serving
                .iter()
                .map(|id| berth_proto::v1::EndpointTask {
                    task_id: id.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn web_task(desired: TaskState) -> Task {
    Task {
        service_id: "web".into(),
        ..task(ID, desired, 0)
    }
}

/// When the stop signal went out, after the stop was asked at `asked`.
fn signal_after(h: &Harness, asked: tokio::time::Instant) -> Duration {
    let (_, at) = h
        .runtime
        .timed_calls()
        .into_iter()
        .find(|(c, _)| matches!(c, Call::Kill(..)))
        .expect("a stop signal");
    at - asked
}

/// Task ID of "web" runs beside task-2 and is told to stop in the set of
/// sequence 11, where it left the endpoint, while every node has applied
/// sequence 10: the supervisor, its updates and when the stop was asked.
async fn told_to_stop(h: &Harness) -> (Supervisor, StatusUpdates, tokio::time::Instant) {
    let (sup, mut updates) = h.open().await;
    sup.set_endpoints(endpoints_at(10, &["task-1", "task-2"]), 10);
    sup.reconcile(vec![web_task(TaskState::Running)]);
    until(&mut updates, TaskState::Running).await;
    sup.set_endpoints(endpoints_at(11, &["task-2"]), 10);
    let asked = tokio::time::Instant::now();
    sup.reconcile(vec![web_task(TaskState::Shutdown)]);
    (sup, updates, asked)
}

#[tokio::test(start_paused = true)]
async fn a_serving_task_gets_its_stop_signal_once_every_node_applied_its_leave() {
    let h = Harness::new();
    let (sup, mut updates, asked) = told_to_stop(&h).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        kills(&h).is_empty(),
        "no signal before every node applied sequence 11"
    );
    sup.set_endpoints(endpoints_at(11, &["task-2"]), 11);
    until(&mut updates, TaskState::Shutdown).await;
    assert_eq!(signal_after(&h, asked), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn a_node_that_never_acknowledges_holds_a_stop_up_for_the_bound_only() {
    let h = Harness::new();
    let (_sup, mut updates, asked) = told_to_stop(&h).await;
    until(&mut updates, TaskState::Shutdown).await;
    assert_eq!(signal_after(&h, asked), super::DRAIN_BOUND);
}

#[tokio::test(start_paused = true)]
async fn scaled_to_zero_or_without_an_endpoint_a_task_stops_at_once() {
    for serving in [Some(&[][..]), None] {
        let h = Harness::new();
        let (sup, mut updates) = h.open().await;
        sup.set_endpoints(endpoints_at(10, &["task-1"]), 10);
        sup.reconcile(vec![web_task(TaskState::Running)]);
        until(&mut updates, TaskState::Running).await;
        // Nothing serves any more, or the service (and its endpoint) is gone.
        let endpoints = match serving {
            Some(tasks) => endpoints_at(11, tasks),
            None => super::Endpoints::default(),
        };
        sup.set_endpoints(endpoints, 10);
        let asked = tokio::time::Instant::now();
        sup.reconcile(vec![web_task(TaskState::Shutdown)]);
        until(&mut updates, TaskState::Shutdown).await;
        assert_eq!(signal_after(&h, asked), Duration::ZERO, "{serving:?}");
    }
}

/// Every update until each of `ids` reported `state` (tokio time: fails fast
/// if that never happens, e.g. because the workers wait for each other).
async fn all_reach(updates: &mut StatusUpdates, ids: &[&str], state: TaskState) {
    let mut reached = std::collections::HashSet::new();
    while reached.len() < ids.len() {
        let update = tokio::time::timeout(Duration::from_secs(3600), updates.recv())
            .await
            .expect("every task reaches the state within the hour")
            .expect("the supervisor is open");
        if update.status.as_ref().map(state_of) == Some(state) {
            reached.insert(update.task_id);
        }
    }
}

/// Three tasks, all desired `desired`.
const THREE: [&str; 3] = ["t-1", "t-2", "t-3"];

fn three(desired: TaskState) -> Vec<Task> {
    THREE.iter().map(|id| task(id, desired, 0)).collect()
}

#[tokio::test(start_paused = true)]
async fn tasks_start_side_by_side_not_one_after_another() {
    let h = Harness::new();
    // Each create returns only once all three are under way: a start path
    // that let one task through at a time would never get there.
    h.runtime.meet_in_create(3);
    let (sup, mut updates) = h.open().await;
    sup.reconcile(three(TaskState::Running));
    all_reach(&mut updates, &THREE, TaskState::Running).await;
}

#[tokio::test(start_paused = true)]
async fn tasks_stop_side_by_side_when_scaled_to_zero() {
    let h = Harness::new();
    let (sup, mut updates) = h.open().await;
    sup.reconcile(three(TaskState::Running));
    all_reach(&mut updates, &THREE, TaskState::Running).await;
    // Each delete returns only once all three are under way.
    h.runtime.meet_in_delete(3);
    sup.reconcile(three(TaskState::Shutdown));
    all_reach(&mut updates, &THREE, TaskState::Shutdown).await;
}
