//! Rollout scenarios (see `rollout`): the orchestrator, the scheduler and
//! simulated agents against the in-memory store of `tests`, which checks every
//! compare-and-set (of tasks and of the services whose status is written).
//! Updates and promotions are written the way the API writes them.

use berth_proto::service_history::{Cause, first_version, record};
use berth_proto::v1::service_spec::Mode;
use berth_proto::v1::update_status::State;
use berth_proto::v1::{
    GlobalMode, HealthCheck, ReplicatedMode, ResourceRequirements, Resources, Service, ServiceSpec,
    Task, TaskHealth, TaskState, UpdateConfig, UpdateFailureAction, UpdateOrder, UpdateStatus,
};

use super::orchestrate_timed;
use super::task::observed;
use super::tests::{Sim, node, replicated};

const MONITOR: i64 = 2_000;

/// A service as the API creates it: a first version in the history.
pub(super) fn service(id: &str, replicas: u64, config: UpdateConfig) -> Service {
    let mut s = replicated(id, replicas);
    if let Some(spec) = s.spec.as_mut() {
        spec.update_config = Some(UpdateConfig {
            monitor_ms: MONITOR as u64,
            ..config
        });
    }
    s.history = vec![first_version(s.spec.as_ref().expect("spec"), 0)];
    s
}

pub(super) fn with_check(mut s: Service) -> Service {
    if let Some(spec) = s.spec.as_mut() {
        spec.healthcheck = Some(HealthCheck::default());
    }
    let spec = s.spec.clone().expect("spec");
    s.history = vec![first_version(&spec, 0)];
    s
}

pub(super) fn svc<'a>(sim: &'a Sim, id: &str) -> &'a Service {
    sim.view
        .services
        .iter()
        .find(|s| s.id == id)
        .expect("service exists")
}

pub(super) fn svc_mut<'a>(sim: &'a mut Sim, id: &str) -> &'a mut Service {
    sim.view
        .services
        .iter_mut()
        .find(|s| s.id == id)
        .expect("service exists")
}

pub(super) fn status(sim: &Sim, id: &str) -> UpdateStatus {
    svc(sim, id).update_status.clone().unwrap_or_default()
}

pub(super) fn state(sim: &Sim, id: &str) -> State {
    State::try_from(status(sim, id).state).expect("a known state")
}

/// `service update` with a new image (the API's `record`).
pub(super) fn update_image(sim: &mut Sim, id: &str, image: &str) {
    update(sim, id, |spec| spec.image = image.into());
}

/// `service update` with the spec as `change` leaves it (the API's `record`).
fn update(sim: &mut Sim, id: &str, change: impl FnOnce(&mut ServiceSpec)) {
    let now = sim.now;
    let s = svc_mut(sim, id);
    let mut spec = s.spec.clone().expect("spec");
    change(&mut spec);
    let message = format!("update to version {}", s.spec_version + 1);
    record(s, spec, Cause::Update, now, &message);
    s.version += 1;
}

/// `service promote` (the API's `promote`).
pub(super) fn promote(sim: &mut Sim, id: &str) {
    let now = sim.now;
    let s = svc_mut(sim, id);
    let st = s.update_status.as_mut().expect("status");
    assert!(st.awaiting_promotion, "nothing to promote: {st:?}");
    st.awaiting_promotion = false;
    st.promoted = true;
    st.state = State::Updating as i32;
    st.progress_ms = now;
    s.version += 1;
}

/// A cluster of `nodes` running `web` settled, its checks passed.
fn running(nodes: &[&str], web: Service) -> Sim {
    let mut sim = Sim::new(nodes.iter().map(|n| node(n)).collect(), vec![web]);
    sim.settle();
    pass_checks(&mut sim);
    sim.settle();
    sim
}

/// Settles, lets one monitor window pass, settles.
fn after_monitor(sim: &mut Sim) {
    sim.settle();
    sim.now += MONITOR;
    sim.settle();
}

/// Tasks meant to run that are running (and healthy, if checked).
fn ready_to_serve(sim: &Sim) -> usize {
    sim.view
        .tasks
        .iter()
        .filter(|t| t.desired_state == TaskState::Running as i32 && t.is_ready())
        .count()
}

/// One pass of the orchestrator and the scheduler, then the agents act.
pub(super) fn round(sim: &mut Sim) {
    sim.orchestrate();
    sim.schedule();
    sim.agents_converge();
}

/// Agents: every task whose check is STARTING passes it.
pub(super) fn pass_checks(sim: &mut Sim) {
    let now = sim.now;
    for t in &mut sim.view.tasks {
        if let Some(s) = t.status.as_mut()
            && s.state == TaskState::Running as i32
            && s.health == TaskHealth::Starting as i32
        {
            s.health = TaskHealth::Healthy as i32;
            s.message = "running, healthy".into();
            s.timestamp_ms = now;
        }
    }
}

/// The agent reports that `id` crashed.
pub(super) fn crash(sim: &mut Sim, id: &str) {
    sim.end(id, TaskState::Failed, Some(1));
    if let Some(s) = sim.task_mut(id).status.as_mut() {
        s.error = "exited with code 1".into();
    }
}

/// The agent reports that `id` failed its check (and stopped it).
pub(super) fn turn_unhealthy(sim: &mut Sim, id: &str) {
    sim.end(id, TaskState::Failed, Some(137));
    if let Some(s) = sim.task_mut(id).status.as_mut() {
        s.health = TaskHealth::Unhealthy as i32;
        s.error = "unhealthy: 3 health checks failed in a row, the last: HTTP 500".into();
    }
}

/// Live tasks (desired to run) of `id` at `version`.
fn live_at(sim: &Sim, id: &str, version: u64) -> Vec<Task> {
    sim.view
        .tasks
        .iter()
        .filter(|t| {
            t.service_id == id
                && t.spec_version == version
                && t.desired_state == TaskState::Running as i32
        })
        .cloned()
        .collect()
}

fn images(sim: &Sim, id: &str) -> Vec<String> {
    let mut out: Vec<String> = sim
        .view
        .tasks
        .iter()
        .filter(|t| t.service_id == id && t.desired_state == TaskState::Running as i32)
        .filter_map(|t| t.spec.as_ref().map(|s| s.image.clone()))
        .collect();
    out.sort();
    out
}

/// Rounds until a task of `version` runs; returns it.
fn first_running(sim: &mut Sim, id: &str, version: u64) -> Task {
    for _ in 0..10 {
        if let Some(t) = live_at(sim, id, version)
            .into_iter()
            .find(|t| observed(t) == TaskState::Running as i32)
        {
            return t;
        }
        round(sim);
    }
    panic!("no task of version {version} runs: {:#?}", sim.view.tasks);
}

fn due(sim: &Sim) -> Option<i64> {
    let mut n = 0;
    orchestrate_timed(&sim.view, sim.now, &mut || {
        n += 1;
        format!("probe{n}")
    })
    .1
}

#[test]
fn an_update_completes_one_monitor_window_after_its_last_task_ran() {
    let cfg = UpdateConfig {
        parallelism: 1,
        ..Default::default()
    };
    let mut sim = running(&["a", "b"], service("web", 3, cfg));
    assert_eq!(
        svc(&sim, "web").update_status,
        None,
        "a create is no rollout"
    );
    update_image(&mut sim, "web", "busybox:2");
    assert_eq!(state(&sim, "web"), State::Updating);
    let started = sim.now;
    // The monitor window does not hold back the next batch: all three batches
    // go without the clock moving.
    sim.settle();
    assert_eq!(images(&sim, "web"), vec!["busybox:2"; 3]);
    assert_eq!(state(&sim, "web"), State::Updating);
    assert_eq!(status(&sim, "web").progress_ms, started);
    assert_eq!(due(&sim), Some(started + MONITOR));
    sim.now += MONITOR - 1;
    sim.settle();
    assert_eq!(state(&sim, "web"), State::Updating);
    sim.now += 1;
    sim.settle();
    let st = status(&sim, "web");
    assert_eq!(st.state, State::Completed as i32);
    assert_eq!(st.message, "update to version 2 completed");
    assert_eq!(st.completed_ms, sim.now);
    assert_eq!((st.from_version, st.to_version), (1, 2));
    assert!(st.failed_tasks.is_empty());
    // Settled: nothing more is written, nothing is due.
    assert!(sim.orchestrate().is_empty());
    assert_eq!(due(&sim), None);
}

#[test]
fn a_failed_new_task_pauses_the_update() {
    let cfg = UpdateConfig {
        parallelism: 1,
        ..Default::default()
    };
    let mut sim = running(&["a"], service("web", 4, cfg));
    update_image(&mut sim, "web", "busybox:2");
    let new = first_running(&mut sim, "web", 2);
    crash(&mut sim, &new.id);
    sim.orchestrate();
    let st = status(&sim, "web");
    assert_eq!(st.state, State::Paused as i32, "{st:?}");
    assert_eq!(st.failed_tasks, vec![new.id.clone()]);
    assert_eq!(st.completed_ms, sim.now);
    assert_eq!(
        st.message,
        format!(
            "update to version 2 paused: 1 of 1 new task failed (max failure ratio 0): \
             task {} on node id-a failed: exited with code 1",
            new.id
        )
    );
    // Paused: the old tasks stay, only the failed slot restarts (restart policy).
    for _ in 0..5 {
        sim.now += 10_000;
        sim.settle();
    }
    assert_eq!(live_at(&sim, "web", 1).len(), 3);
    assert_eq!(state(&sim, "web"), State::Paused);

    // A new update starts the machine again.
    update_image(&mut sim, "web", "busybox:3");
    assert_eq!(state(&sim, "web"), State::Updating);
    assert!(status(&sim, "web").failed_tasks.is_empty());
    after_monitor(&mut sim);
    assert_eq!(images(&sim, "web"), vec!["busybox:3"; 4]);
    assert_eq!(state(&sim, "web"), State::Completed);
}

#[test]
fn a_failure_rolls_back_to_the_version_the_update_started_from() {
    let cfg = UpdateConfig {
        parallelism: 1,
        failure_action: UpdateFailureAction::Rollback as i32,
        ..Default::default()
    };
    let mut sim = running(&["a"], with_check(service("web", 3, cfg)));
    let old: Vec<String> = live_at(&sim, "web", 1).into_iter().map(|t| t.id).collect();
    update_image(&mut sim, "web", "busybox:2");
    let new = first_running(&mut sim, "web", 2);
    turn_unhealthy(&mut sim, &new.id);
    sim.orchestrate();
    let s = svc(&sim, "web").clone();
    let st = s.update_status.clone().expect("status");
    assert_eq!(st.state, State::RollbackStarted as i32, "{st:?}");
    assert_eq!(s.spec_version, 3);
    assert_eq!(s.spec.as_ref().map(|x| x.image.as_str()), Some("busybox:1"));
    assert_eq!(s.history.last().map(|v| v.restores), Some(1));
    assert_eq!((st.from_version, st.to_version), (2, 3));
    assert!(
        st.message.starts_with(
            "update to version 2 failed, rolling back to version 1: 1 of 1 new task failed"
        ),
        "{}",
        st.message
    );
    assert!(st.message.contains(&new.id), "{}", st.message);
    assert!(
        live_at(&sim, "web", 2).is_empty(),
        "the pass that rolls back refills no slot with the failed spec"
    );
    assert!(
        st.message.contains("unhealthy: 3 health checks"),
        "{}",
        st.message
    );

    // The rollback replaces only what changed: two old tasks never stopped.
    sim.settle();
    pass_checks(&mut sim);
    sim.settle();
    assert_eq!(state(&sim, "web"), State::RollbackStarted);
    sim.now += MONITOR;
    sim.settle();
    let st = status(&sim, "web");
    assert_eq!(st.state, State::RollbackCompleted as i32);
    assert_eq!(st.message, "rollback to version 1 completed");
    assert_eq!(images(&sim, "web"), vec!["busybox:1"; 3]);
    let kept = old
        .iter()
        .filter(|id| sim.task(id).desired_state == TaskState::Running as i32)
        .count();
    assert_eq!(kept, 2);
}

#[test]
fn a_failure_during_a_rollback_pauses_it() {
    let cfg = UpdateConfig {
        parallelism: 1,
        failure_action: UpdateFailureAction::Rollback as i32,
        ..Default::default()
    };
    let mut sim = running(&["a"], service("web", 2, cfg));
    update_image(&mut sim, "web", "busybox:2");
    let new = first_running(&mut sim, "web", 2);
    crash(&mut sim, &new.id);
    sim.orchestrate();
    assert_eq!(state(&sim, "web"), State::RollbackStarted);
    let back = first_running(&mut sim, "web", 3);
    crash(&mut sim, &back.id);
    sim.orchestrate();
    let s = svc(&sim, "web");
    let st = s.update_status.clone().expect("status");
    assert_eq!(st.state, State::RollbackPaused as i32, "{st:?}");
    assert_eq!(s.spec_version, 3, "a rollback is never rolled back");
    assert!(
        st.message
            .starts_with("rollback to version 1 paused: 1 of 1 new task failed"),
        "{}",
        st.message
    );
    assert_eq!(st.failed_tasks, vec![back.id]);
}

#[test]
fn start_first_stops_the_old_task_once_its_replacement_is_healthy() {
    let cfg = UpdateConfig {
        parallelism: 1,
        order: UpdateOrder::StartFirst as i32,
        ..Default::default()
    };
    let mut sim = running(&["a"], with_check(service("web", 2, cfg)));
    update_image(&mut sim, "web", "busybox:2");
    for _ in 0..12 {
        round(&mut sim);
        // Never fewer than two healthy tasks meant to run.
        let serving = sim
            .view
            .tasks
            .iter()
            .filter(|t| t.desired_state == TaskState::Running as i32 && t.is_ready())
            .count();
        assert!(serving >= 2, "{:#?}", sim.view.tasks);
        // The new task runs but is not healthy yet: both old tasks still run.
        if live_at(&sim, "web", 2)
            .iter()
            .any(|t| observed(t) == TaskState::Running as i32 && !t.is_ready())
        {
            assert_eq!(
                live_at(&sim, "web", 1).len(),
                2 - live_at(&sim, "web", 2)
                    .iter()
                    .filter(|t| t.is_ready())
                    .count()
            );
        }
        pass_checks(&mut sim);
    }
    assert_eq!(images(&sim, "web"), vec!["busybox:2"; 2]);
    sim.now += MONITOR;
    sim.settle();
    assert_eq!(state(&sim, "web"), State::Completed);
}

#[test]
fn stop_first_never_has_more_than_parallelism_slots_down() {
    let cfg = UpdateConfig {
        parallelism: 2,
        ..Default::default()
    };
    let mut sim = running(&["a", "b"], service("web", 6, cfg));
    update_image(&mut sim, "web", "busybox:2");
    for _ in 0..12 {
        round(&mut sim);
        let up = ready_to_serve(&sim);
        assert!(up >= 4, "{} of 6 up: {:#?}", up, sim.view.tasks);
    }
    assert_eq!(images(&sim, "web"), vec!["busybox:2"; 6]);
}

#[test]
fn a_new_update_counts_the_last_ones_starting_replacement_as_down() {
    let cfg = UpdateConfig {
        parallelism: 1,
        ..Default::default()
    };
    let mut sim = running(&["a", "b"], with_check(service("web", 4, cfg)));
    update_image(&mut sim, "web", "busybox:2");
    // The first replacement passes its check, the second one only starts.
    round(&mut sim);
    round(&mut sim);
    pass_checks(&mut sim);
    round(&mut sim);
    round(&mut sim);
    assert_eq!(
        ready_to_serve(&sim),
        3,
        "one slot starts: {:#?}",
        sim.view.tasks
    );
    // Another version now: the starting task is outdated too, and down.
    update_image(&mut sim, "web", "busybox:3");
    for _ in 0..12 {
        round(&mut sim);
        let up = ready_to_serve(&sim);
        assert!(up >= 3, "{up} of 4 up: {:#?}", sim.view.tasks);
        pass_checks(&mut sim);
    }
    assert_eq!(images(&sim, "web"), vec!["busybox:3"; 4]);
}

#[test]
fn an_update_replaces_tasks_that_are_down_at_once() {
    let cfg = UpdateConfig {
        parallelism: 1,
        ..Default::default()
    };
    let mut sim = running(&["a", "b"], with_check(service("web", 3, cfg)));
    // Every task turns unhealthy, then a fixed version comes: none of them
    // serves, so waiting for one at a time only keeps the service down.
    for t in &mut sim.view.tasks {
        if let Some(s) = t.status.as_mut() {
            s.health = berth_proto::v1::TaskHealth::Starting as i32;
        }
    }
    update_image(&mut sim, "web", "busybox:2");
    round(&mut sim);
    let stopping = sim
        .view
        .tasks
        .iter()
        .filter(|t| t.desired_state == TaskState::Shutdown as i32)
        .count();
    assert_eq!(stopping, 3, "all three at once: {:#?}", sim.view.tasks);
    for _ in 0..6 {
        round(&mut sim);
        pass_checks(&mut sim);
    }
    assert_eq!(images(&sim, "web"), vec!["busybox:2"; 3]);
}

#[test]
fn a_service_created_without_update_settings_replaces_one_task_at_a_time() {
    let mut web = replicated("web", 4);
    web.history = vec![first_version(web.spec.as_ref().expect("spec"), 0)];
    assert!(web.spec.as_ref().is_some_and(|s| s.update_config.is_none()));
    let mut sim = running(&["a", "b"], web);
    update_image(&mut sim, "web", "busybox:2");
    for _ in 0..12 {
        round(&mut sim);
        let up = ready_to_serve(&sim);
        assert!(up >= 3, "{} of 4 up: {:#?}", up, sim.view.tasks);
    }
    assert_eq!(images(&sim, "web"), vec!["busybox:2"; 4]);
}

#[test]
fn canaries_pause_the_update_until_it_is_promoted() {
    let cfg = UpdateConfig {
        parallelism: 2,
        canary: 1,
        ..Default::default()
    };
    let mut sim = running(&["a"], with_check(service("web", 4, cfg)));
    update_image(&mut sim, "web", "busybox:2");
    sim.settle();
    // The canary starts beside the old tasks; none stops before it is healthy.
    assert_eq!(live_at(&sim, "web", 2).len(), 1);
    assert_eq!(live_at(&sim, "web", 1).len(), 4);
    assert_eq!(state(&sim, "web"), State::Updating);
    pass_checks(&mut sim);
    sim.settle();
    let st = status(&sim, "web");
    assert_eq!(st.state, State::Paused as i32, "{st:?}");
    assert!(st.awaiting_promotion);
    assert_eq!(
        st.message,
        "1 canary running version 2; `berth service promote web-name` to continue"
    );
    // Beside the old tasks: all four still run until the promotion.
    assert_eq!(live_at(&sim, "web", 1).len(), 4);
    // It waits, however long: no deadline while waiting for promotion.
    sim.now += 3_600_000;
    sim.settle();
    assert_eq!(state(&sim, "web"), State::Paused);
    assert_eq!(live_at(&sim, "web", 1).len(), 4);

    promote(&mut sim, "web");
    for _ in 0..6 {
        sim.settle();
        pass_checks(&mut sim);
    }
    assert_eq!(images(&sim, "web"), vec!["busybox:2"; 4]);
    sim.now += MONITOR;
    sim.settle();
    let st = status(&sim, "web");
    assert_eq!(st.state, State::Completed as i32);
    assert!(st.promoted && !st.awaiting_promotion);
}

#[test]
fn canaries_are_promoted_automatically_after_min_healthy() {
    let cfg = UpdateConfig {
        canary: 2,
        auto_promote: true,
        min_healthy_ms: 3_000,
        ..Default::default()
    };
    let mut sim = running(&["a"], with_check(service("web", 5, cfg)));
    update_image(&mut sim, "web", "busybox:2");
    sim.settle();
    pass_checks(&mut sim);
    sim.settle();
    let healthy_at = sim.now;
    let st = status(&sim, "web");
    assert_eq!(
        st.state,
        State::Updating as i32,
        "auto-promotion does not pause"
    );
    assert!(st.awaiting_promotion);
    assert_eq!(
        st.message,
        "2 canaries running version 2; promoting them once ready for 3s"
    );
    assert_eq!(due(&sim), Some(healthy_at + 3_000));
    sim.now += 2_999;
    sim.settle();
    // The canaries run beside all five old tasks until promoted.
    assert_eq!(live_at(&sim, "web", 1).len(), 5);
    sim.now += 1;
    sim.settle();
    let st = status(&sim, "web");
    assert!(st.promoted && !st.awaiting_promotion, "{st:?}");
    for _ in 0..4 {
        pass_checks(&mut sim);
        sim.settle();
    }
    assert_eq!(images(&sim, "web"), vec!["busybox:2"; 5]);
    sim.now += MONITOR;
    sim.settle();
    assert_eq!(state(&sim, "web"), State::Completed);
}

#[test]
fn a_failing_canary_rolls_the_update_back() {
    let cfg = UpdateConfig {
        canary: 1,
        failure_action: UpdateFailureAction::Rollback as i32,
        ..Default::default()
    };
    let mut sim = running(&["a"], with_check(service("web", 3, cfg)));
    update_image(&mut sim, "web", "busybox:2");
    let canary = first_running(&mut sim, "web", 2);
    turn_unhealthy(&mut sim, &canary.id);
    sim.orchestrate();
    assert_eq!(state(&sim, "web"), State::RollbackStarted);
    after_monitor(&mut sim);
    assert_eq!(state(&sim, "web"), State::RollbackCompleted);
    // Start-first canary: the old tasks never stopped.
    assert_eq!(live_at(&sim, "web", 1).len(), 3);
    assert_eq!(images(&sim, "web"), vec!["busybox:1"; 3]);
}

/// `service update` to an image that needs `gib` GiB of memory reserved.
fn needs_memory(sim: &mut Sim, id: &str, gib: u64) {
    update(sim, id, |spec| {
        spec.image = "busybox:big".into();
        spec.resources = Some(ResourceRequirements {
            reservations: Some(Resources {
                memory_bytes: gib << 30,
                ..Default::default()
            }),
            limits: None,
        });
    });
}

#[test]
fn the_progress_deadline_fails_loudly_and_rolls_back() {
    let cfg = UpdateConfig {
        parallelism: 1,
        progress_deadline_ms: 60_000,
        failure_action: UpdateFailureAction::Rollback as i32,
        ..Default::default()
    };
    let mut sim = running(&["a"], service("web", 2, cfg));
    needs_memory(&mut sim, "web", 64);
    let started = sim.now;
    sim.settle();
    assert_eq!(due(&sim), Some(started + 60_000));
    sim.now += 59_999;
    sim.settle();
    assert_eq!(state(&sim, "web"), State::Updating);
    sim.now += 1;
    sim.orchestrate();
    let st = status(&sim, "web");
    assert_eq!(st.state, State::RollbackStarted as i32, "{st:?}");
    assert!(
        st.message.starts_with(
            "update to version 2 failed, rolling back to version 1: no progress for 1m: \
             1 task pending: no node has"
        ),
        "{}",
        st.message
    );
    after_monitor(&mut sim);
    assert_eq!(state(&sim, "web"), State::RollbackCompleted);
    assert_eq!(images(&sim, "web"), vec!["busybox:1"; 2]);
}

#[test]
fn the_progress_deadline_pauses_when_the_action_is_pause_or_continue() {
    for action in [UpdateFailureAction::Pause, UpdateFailureAction::Continue] {
        let cfg = UpdateConfig {
            parallelism: 1,
            progress_deadline_ms: 60_000,
            failure_action: action as i32,
            ..Default::default()
        };
        let mut sim = running(&["a"], service("web", 2, cfg));
        needs_memory(&mut sim, "web", 64);
        sim.settle();
        sim.now += 60_000;
        sim.settle();
        let st = status(&sim, "web");
        assert_eq!(st.state, State::Paused as i32, "{action:?}: {st:?}");
        assert!(
            st.message
                .starts_with("update to version 2 paused: no progress for 1m: 1 task pending"),
            "{}",
            st.message
        );
        assert_eq!(st.completed_ms, sim.now);
    }
}

#[test]
fn continue_goes_on_despite_failures() {
    let cfg = UpdateConfig {
        parallelism: 1,
        failure_action: UpdateFailureAction::Continue as i32,
        ..Default::default()
    };
    let mut sim = running(&["a"], service("web", 3, cfg));
    update_image(&mut sim, "web", "busybox:2");
    let new = first_running(&mut sim, "web", 2);
    crash(&mut sim, &new.id);
    sim.orchestrate();
    let st = status(&sim, "web");
    assert_eq!(st.state, State::Updating as i32);
    assert_eq!(st.failed_tasks, vec![new.id.clone()]);
    assert!(
        st.message.ends_with("continuing (failure action continue)"),
        "{}",
        st.message
    );
    // The crashed task restarts after the restart delay (5 s); the rest goes on.
    sim.settle();
    sim.now += 5_000;
    sim.settle();
    assert_eq!(images(&sim, "web"), vec!["busybox:2"; 3]);
    sim.now += MONITOR;
    sim.settle();
    let st = status(&sim, "web");
    assert_eq!(st.state, State::Completed as i32);
    assert_eq!(st.failed_tasks, vec![new.id]);
}

#[test]
fn the_failure_ratio_tolerates_failures_up_to_it() {
    let cfg = UpdateConfig {
        parallelism: 0,
        max_failure_ratio: 0.5,
        ..Default::default()
    };
    let mut sim = running(&["a"], service("web", 4, cfg));
    update_image(&mut sim, "web", "busybox:2");
    sim.settle();
    let new = live_at(&sim, "web", 2);
    assert_eq!(new.len(), 4);
    crash(&mut sim, &new[0].id);
    crash(&mut sim, &new[1].id);
    sim.orchestrate();
    assert_eq!(
        state(&sim, "web"),
        State::Updating,
        "2 of 4 is not above 0.5"
    );
    crash(&mut sim, &new[2].id);
    sim.orchestrate();
    let st = status(&sim, "web");
    assert_eq!(st.state, State::Paused as i32);
    assert!(
        st.message
            .contains("3 of 4 new tasks failed (max failure ratio 0.5)"),
        "{}",
        st.message
    );
}

#[test]
fn a_scale_is_no_rollout() {
    let mut sim = running(&["a"], service("web", 2, UpdateConfig::default()));
    update_image(&mut sim, "web", "busybox:2");
    after_monitor(&mut sim);
    let before = status(&sim, "web");
    assert_eq!(before.state, State::Completed as i32);
    update(&mut sim, "web", |spec| {
        spec.mode = Some(Mode::Replicated(ReplicatedMode { replicas: 4 }));
    });
    let version = svc(&sim, "web").version;
    assert_eq!(svc(&sim, "web").spec_version, 3, "a scale is a new version");
    sim.settle();
    assert_eq!(status(&sim, "web"), before, "the status is left alone");
    assert_eq!(
        svc(&sim, "web").version,
        version,
        "the service is not written"
    );
    assert_eq!(images(&sim, "web"), vec!["busybox:2"; 4]);
}

/// What a stack redeploy of a file that changed only replicas or labels
/// writes: the running tasks stay, only the count moves (#15).
#[test]
fn a_replicas_or_labels_change_keeps_the_running_tasks() {
    let mut sim = running(&["a", "b"], service("web", 2, UpdateConfig::default()));
    let ids =
        |sim: &Sim| -> Vec<String> { sim.live("web").into_iter().map(|(_, id, _)| id).collect() };
    let before = ids(&sim);
    assert_eq!(before.len(), 2);
    update(&mut sim, "web", |spec| {
        spec.labels.insert("tier".into(), "front".into());
    });
    sim.settle();
    assert_eq!(ids(&sim), before, "a label change replaces no task");
    assert_eq!(
        status(&sim, "web"),
        UpdateStatus::default(),
        "and starts no rollout"
    );
    update(&mut sim, "web", |spec| {
        spec.mode = Some(Mode::Replicated(ReplicatedMode { replicas: 3 }));
    });
    sim.settle();
    let after = ids(&sim);
    assert_eq!(after.len(), 3);
    assert_eq!(
        &after[..2],
        &before[..],
        "scaling up keeps the running tasks"
    );
    update(&mut sim, "web", |spec| {
        spec.mode = Some(Mode::Replicated(ReplicatedMode { replicas: 1 }));
    });
    sim.settle();
    assert_eq!(
        ids(&sim),
        before[..1],
        "scaling down stops only the highest slots"
    );
}

#[test]
fn a_global_update_is_monitored_and_completes() {
    let mut s = service(
        "mon",
        0,
        UpdateConfig {
            parallelism: 1,
            ..Default::default()
        },
    );
    if let Some(spec) = s.spec.as_mut() {
        spec.mode = Some(Mode::Global(GlobalMode {}));
    }
    s.history = vec![first_version(s.spec.as_ref().expect("spec"), 0)];
    let mut sim = running(&["a", "b", "c"], s);
    update_image(&mut sim, "mon", "busybox:2");
    sim.settle();
    assert_eq!(images(&sim, "mon"), vec!["busybox:2"; 3]);
    sim.now += MONITOR;
    sim.settle();
    assert_eq!(state(&sim, "mon"), State::Completed);

    // A crash of a new task pauses the next update.
    update_image(&mut sim, "mon", "busybox:3");
    let new = first_running(&mut sim, "mon", 3);
    crash(&mut sim, &new.id);
    sim.settle();
    let st = status(&sim, "mon");
    assert_eq!(st.state, State::Paused as i32);
    assert_eq!(st.failed_tasks, vec![new.id]);
    assert_eq!(
        live_at(&sim, "mon", 2).len(),
        2,
        "the other nodes keep version 2"
    );
}

#[test]
fn waiting_out_a_long_monitor_window_is_no_lack_of_progress() {
    let cfg = UpdateConfig {
        progress_deadline_ms: 1_000,
        failure_action: UpdateFailureAction::Rollback as i32,
        ..Default::default()
    };
    let mut sim = running(&["a"], service("web", 2, cfg));
    update_image(&mut sim, "web", "busybox:2");
    sim.settle();
    // The monitor window (2 s) outlasts the deadline (1 s).
    sim.now += MONITOR - 1;
    sim.settle();
    assert_eq!(state(&sim, "web"), State::Updating);
    sim.now += 1;
    sim.settle();
    assert_eq!(state(&sim, "web"), State::Completed);
}

#[test]
fn a_rollback_asked_for_runs_with_the_rollback_settings() {
    let cfg = UpdateConfig {
        parallelism: 1,
        ..Default::default()
    };
    let mut sim = running(&["a"], service("web", 4, cfg));
    update(&mut sim, "web", |spec| {
        spec.image = "busybox:2".into();
        spec.rollback_config = Some(UpdateConfig {
            parallelism: 4,
            monitor_ms: 1_000,
            ..Default::default()
        });
    });
    after_monitor(&mut sim);
    assert_eq!(state(&sim, "web"), State::Completed);
    // `service rollback`, as the API writes it.
    let now = sim.now;
    let s = svc_mut(&mut sim, "web");
    let target = berth_proto::service_history::rollback_target(s, 0)
        .expect("a version to go back to")
        .clone();
    record(
        s,
        target.spec.expect("spec"),
        Cause::Rollback {
            restores: target.version,
        },
        now,
        "rollback to version 1 requested by the user",
    );
    s.version += 1;
    assert_eq!(state(&sim, "web"), State::RollbackStarted);
    sim.orchestrate();
    let stopping = live_at(&sim, "web", 2).len();
    assert_eq!(stopping, 0, "parallelism 4: every task at once");
    sim.settle();
    sim.now += 1_000;
    sim.settle();
    let st = status(&sim, "web");
    assert_eq!(st.state, State::RollbackCompleted as i32);
    assert_eq!(st.message, "rollback to version 1 completed");
    assert_eq!(images(&sim, "web"), vec!["busybox:1"; 4]);
}
