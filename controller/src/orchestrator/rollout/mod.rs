//! The rollout state machine: one service's rolling update (or rollback) as
//! `Service.update_status` records it, moved forward by each orchestrator pass.
//!
//! The API starts a rollout (`service_history::record` writes UPDATING or
//! ROLLBACK_STARTED) and promotes canaries; everything after is decided here,
//! from the status as read, the service's tasks and the clock:
//!
//! - **Monitoring**: a new task (see [`tasks::is_new`]) that fails, is
//!   rejected or turns unhealthy while the rollout runs is recorded once in
//!   `failed_tasks`. When failed / updated slots exceeds `max_failure_ratio`
//!   (0: any failure) the failure action is taken: PAUSED; nothing (continue);
//!   or an automatic rollback to the version the rollout started from, written
//!   with `record` (ROLLBACK_STARTED). A failing rollback is never rolled back:
//!   it pauses (ROLLBACK_PAUSED), unless its action is continue.
//! - **Progress deadline**: no batch started and no new task ran for
//!   `progress_deadline_ms` (10 min): the rollout fails with what its tasks
//!   wait for, then as above (continue pauses).
//! - **Canaries**: `canary` slots get a new task beside the old one, and the
//!   old tasks run on until the promotion; once the canaries are all ready the
//!   rollout waits for promotion (PAUSED, or UPDATING with `auto_promote`,
//!   which promotes once they were ready `min_healthy_ms`).
//! - **Completion**: every slot holds a ready task of the current spec, and
//!   one monitor window passed since the last of them became ready.
//! - PAUSED (and ROLLBACK_PAUSED) replaces nothing more until the next
//!   `service update`; COMPLETED, ROLLBACK_COMPLETED or no status at all let
//!   outdated tasks be replaced as the update settings say.
//!
//! Every time the rollout waits for the clock (a deadline, a monitor window,
//! auto-promotion) it tells the plan when, so the planner passes again then.

pub mod settings;
pub mod tasks;

use berth_proto::service_history::{Cause, record};
use berth_proto::v1::service_spec::Mode;
use berth_proto::v1::update_status::State;
use berth_proto::v1::{
    Service, ServiceSpec, Task, TaskState, UpdateConfig, UpdateFailureAction, UpdateStatus,
};
use tracing::{info, warn};

use super::plan::Plan;
use super::slot::Outcome;
use super::task::{changed_ms, observed, wants_running};
use super::update::{Gate, outdated};
use settings::{format_ms, settings};

/// The failed tasks a rollout that continues despite failures records at most.
const MAX_FAILED_RECORDED: usize = 100;

/// One service's rollout during a pass: begun before its slots are walked
/// ([`begin`]), ended after ([`Rollout::end`]).
pub struct Rollout<'s> {
    service: &'s Service,
    /// The status as this pass leaves it.
    status: Option<UpdateStatus>,
    config: UpdateConfig,
    /// The service rolled back in this pass (a new spec and status): written
    /// as it is; the walk of this pass replaced and created nothing.
    rolled_back: Option<Service>,
}

fn state_of(status: &UpdateStatus) -> State {
    State::try_from(status.state).unwrap_or(State::None)
}

fn rolling_back(status: &UpdateStatus) -> bool {
    matches!(
        state_of(status),
        State::RollbackStarted | State::RollbackPaused | State::RollbackCompleted
    )
}

/// `update`, or `rollback` when the rollout is a rollback.
fn either(status: &UpdateStatus, update: State, rollback: State) -> i32 {
    if rolling_back(status) {
        rollback as i32
    } else {
        update as i32
    }
}

/// UPDATING or ROLLBACK_STARTED, and not waiting for promotion: batches go on.
fn moving(status: &UpdateStatus) -> bool {
    matches!(state_of(status), State::Updating | State::RollbackStarted)
        && !status.awaiting_promotion
}

/// Reads the service's rollout, watches its new tasks and the progress
/// deadline, takes the failure action when due, and says how the walk of this
/// pass may replace outdated tasks.
pub fn begin<'s>(
    plan: &mut Plan<'_>,
    service: &'s Service,
    tasks: &[usize],
) -> (Rollout<'s>, Gate) {
    let status = service.update_status.clone();
    let rollback = status.as_ref().is_some_and(rolling_back);
    let config = settings(service, rollback);
    let mut rollout = Rollout {
        service,
        status,
        config,
        rolled_back: None,
    };
    let Some(mut st) = rollout.status.clone() else {
        return (rollout, Gate::open(config));
    };
    let watching = match state_of(&st) {
        State::Updating | State::RollbackStarted => true,
        State::Paused | State::RollbackPaused => st.awaiting_promotion,
        _ => false,
    };
    if !watching {
        let gate = match state_of(&st) {
            State::Paused | State::RollbackPaused => Gate::closed(config),
            _ => Gate::open(config),
        };
        return (rollout, gate);
    }
    let read: Vec<&Task> = tasks.iter().map(|&i| plan.original(i)).collect();
    let new: Vec<&Task> = read
        .iter()
        .copied()
        .filter(|t| tasks::is_new(service, st.to_version, t))
        .collect();
    let why = watch_failures(service, &mut st, &config, &new).or_else(|| {
        progress_from_tasks(&mut st, &new);
        deadline(plan, &mut st, &config, service, &read)
    });
    let failed = why.is_some();
    if let Some(why) = why {
        rollout.fail(plan.now_ms, &mut st, &why);
    }
    let gate = if rollout.rolled_back.is_some() {
        Gate {
            hold: true,
            ..Gate::closed(config)
        }
    } else if failed {
        Gate::closed(config)
    } else if config.canary > 0 && !st.promoted && (moving(&st) || st.awaiting_promotion) {
        // Canaries: that many slots get a new task beside the old one (and
        // one that failed is replaced, also while waiting for promotion).
        let live = tasks::slots(new.iter().copied().filter(|t| wants_running(t)));
        let canaries = usize::try_from(config.canary).unwrap_or(usize::MAX);
        Gate {
            limit: Some(canaries.saturating_sub(live)),
            start_first: true,
            keep_outgoing: true,
            ..Gate::open(config)
        }
    } else if !moving(&st) {
        Gate::closed(config)
    } else {
        Gate::open(config)
    };
    rollout.status = Some(st);
    (rollout, gate)
}

/// Records new failures; returns why the rollout fails when the failure ratio
/// is exceeded and the action is not to continue.
fn watch_failures(
    service: &Service,
    st: &mut UpdateStatus,
    config: &UpdateConfig,
    new: &[&Task],
) -> Option<String> {
    // Continuing through a crash loop must not grow the status without end;
    // any other action ends the watch at the first ratio exceeded.
    let continues = config.failure_action == UpdateFailureAction::Continue as i32;
    let mut grew = false;
    for task in new {
        if continues && st.failed_tasks.len() >= MAX_FAILED_RECORDED {
            break;
        }
        if tasks::failure(task).is_some()
            && tasks::within_monitor(task, config.monitor_ms)
            && !st.failed_tasks.contains(&task.id)
        {
            st.failed_tasks.push(task.id.clone());
            grew = true;
        }
    }
    let failed = st.failed_tasks.len();
    let updated = tasks::slots(new.iter().copied());
    if failed == 0
        || (failed as f64) / (updated.max(1) as f64) <= f64::from(config.max_failure_ratio)
    {
        return None;
    }
    let reasons: Vec<String> = new
        .iter()
        .filter(|t| st.failed_tasks.contains(&t.id))
        .filter_map(|t| tasks::failure(t))
        .collect();
    let text = tasks::failures_text(failed, updated, config.max_failure_ratio, &reasons);
    if continues {
        if grew {
            st.message = format!(
                "{}: {text}; continuing (failure action continue)",
                label(service, st)
            );
        }
        return None;
    }
    Some(text)
}

/// A new task that ran (or turned healthy) later than the last progress is
/// progress.
fn progress_from_tasks(st: &mut UpdateStatus, new: &[&Task]) {
    let last = new
        .iter()
        .filter(|t| wants_running(t) && observed(t) == TaskState::Running as i32)
        .map(|t| changed_ms(t))
        .max();
    if let Some(last) = last {
        st.progress_ms = st.progress_ms.max(last);
    }
}

/// Why the rollout fails, if it made no progress for its deadline (plus the
/// update delay, a wait it asked for); otherwise the plan is told when the
/// deadline falls. A rollout that only waits out its last monitor window is
/// not stuck.
fn deadline(
    plan: &mut Plan<'_>,
    st: &mut UpdateStatus,
    config: &UpdateConfig,
    service: &Service,
    read: &[&Task],
) -> Option<String> {
    if !moving(st) {
        return None;
    }
    let at = st
        .progress_ms
        .saturating_add(ms(config.progress_deadline_ms))
        .saturating_add(ms(config.delay_ms));
    if plan.now_ms < at {
        plan.due_at(at);
        return None;
    }
    let why = tasks::stuck(service, st.to_version, read)?;
    Some(format!(
        "no progress for {}: {why}",
        format_ms(config.progress_deadline_ms)
    ))
}

/// "update to version 4", or "rollback to version 2" (the version the
/// rollback restores, from the history).
fn label(service: &Service, st: &UpdateStatus) -> String {
    if rolling_back(st) {
        let restores = service
            .history
            .iter()
            .find(|v| v.version == st.to_version)
            .map(|v| v.restores)
            .filter(|r| *r != 0)
            .unwrap_or(st.from_version);
        format!("rollback to version {restores}")
    } else {
        format!("update to version {}", st.to_version)
    }
}

impl Rollout<'_> {
    /// The rollout failed (`why`): pause, or roll back, as its settings say.
    fn fail(&mut self, now_ms: i64, st: &mut UpdateStatus, why: &str) {
        let service = self.service;
        let name = service.spec.as_ref().map_or("", |s| s.name.as_str());
        let what = self.label(st);
        let pause = |st: &mut UpdateStatus, state: State, message: String| {
            warn!(service = %service.id, name, %message, "rollout paused");
            st.state = state as i32;
            st.message = message;
            st.completed_ms = now_ms;
            st.awaiting_promotion = false;
        };
        if rolling_back(st) {
            pause(st, State::RollbackPaused, format!("{what} paused: {why}"));
            return;
        }
        if self.config.failure_action != UpdateFailureAction::Rollback as i32 {
            pause(st, State::Paused, format!("{what} paused: {why}"));
            return;
        }
        let from = st.from_version;
        let Some(spec) = self.spec_of(from) else {
            pause(
                st,
                State::Paused,
                format!("{what} paused: {why}; cannot roll back: version {from} is no longer kept"),
            );
            return;
        };
        let message = format!("{what} failed, rolling back to version {from}: {why}");
        warn!(service = %service.id, name, %message, "rolling back");
        let mut rolled = service.clone();
        record(
            &mut rolled,
            spec,
            Cause::Rollback { restores: from },
            now_ms,
            &message,
        );
        if let Some(t) = rolled.timestamps.as_mut() {
            t.updated_ms = now_ms;
        }
        if rolled.update_status.as_ref().map(state_of) != Some(State::RollbackStarted) {
            // The version restored runs what runs now: nothing to replace.
            rolled.update_status = Some(UpdateStatus {
                state: State::RollbackCompleted as i32,
                message,
                started_ms: now_ms,
                completed_ms: now_ms,
                progress_ms: now_ms,
                from_version: service.spec_version,
                to_version: rolled.spec_version,
                ..Default::default()
            });
        }
        *st = rolled.update_status.clone().unwrap_or_default();
        self.rolled_back = Some(rolled);
    }

    /// The spec of version `version` to roll back to, with the current replica
    /// count (a rollback does not undo a scale).
    fn spec_of(&self, version: u64) -> Option<ServiceSpec> {
        let service = self.service;
        let mut spec = service
            .history
            .iter()
            .find(|v| v.version == version)
            .and_then(|v| v.spec.clone())
            .or_else(|| {
                // Without a history entry the previous spec is the one, as long
                // as nothing was written since the rollout began.
                let to = service.update_status.as_ref().map_or(0, |s| s.to_version);
                (service.spec_version == to)
                    .then(|| service.previous_spec.clone())
                    .flatten()
            })?;
        if let (Some(Mode::Replicated(now)), Some(Mode::Replicated(then))) = (
            service.spec.as_ref().and_then(|s| s.mode.as_ref()),
            spec.mode.as_mut(),
        ) {
            then.replicas = now.replicas;
        }
        Some(spec)
    }

    fn label(&self, st: &UpdateStatus) -> String {
        label(self.service, st)
    }

    /// After the walk: progress of the batch started, canaries waiting for
    /// promotion, auto-promotion, completion; then writes the service if its
    /// status (or, after a rollback, its spec) changed.
    pub fn end(mut self, plan: &mut Plan<'_>, tasks: &[usize], outcome: Outcome) {
        if let Some(rolled) = self.rolled_back.take() {
            plan.put_service(rolled);
            return;
        }
        let Some(mut st) = self.status.take() else {
            return;
        };
        if !moving(&st) && !st.awaiting_promotion {
            // Ended, paused, or none: only what `begin` changed is written.
            if self.service.update_status.as_ref() != Some(&st) {
                let mut service = self.service.clone();
                service.update_status = Some(st);
                plan.put_service(service);
            }
            return;
        }
        let now = plan.now_ms;
        let mut due = None;
        let current: Vec<&Task> = tasks
            .iter()
            .map(|&i| plan.task(i))
            .filter(|t| wants_running(t))
            .collect();
        let new: Vec<&Task> = current
            .iter()
            .copied()
            .filter(|t| tasks::is_new(self.service, st.to_version, t))
            .collect();
        let ready_since = |tasks: &[&Task]| tasks.iter().map(|t| changed_ms(t)).max();
        if moving(&st) {
            if outcome.replaced > 0 {
                st.progress_ms = now;
            }
            let canaries = usize::try_from(self.config.canary).unwrap_or(usize::MAX);
            let remaining = current.iter().any(|t| outdated(self.service, t));
            if canaries > 0
                && !st.promoted
                && remaining
                && tasks::slots(new.iter().copied()) >= canaries
                && new.iter().all(|t| t.is_ready())
            {
                self.await_promotion(&mut st, new.len());
            } else if outcome.settled {
                let done_at = ready_since(&new)
                    .map_or(now, |at| at.saturating_add(ms(self.config.monitor_ms)));
                if now >= done_at {
                    self.complete(&mut st, now);
                } else {
                    due = Some(done_at);
                }
            }
        }
        let canaries = usize::try_from(self.config.canary).unwrap_or(usize::MAX);
        if st.awaiting_promotion
            && self.config.auto_promote
            && tasks::slots(new.iter().copied()) >= canaries
            && new.iter().all(|t| t.is_ready())
        {
            let at = ready_since(&new)
                .unwrap_or(now)
                .saturating_add(ms(self.config.min_healthy_ms));
            if now >= at {
                st.awaiting_promotion = false;
                st.promoted = true;
                st.state = either(&st, State::Updating, State::RollbackStarted);
                st.progress_ms = now;
                st.message = format!(
                    "canaries ready for {}: promoted automatically; {} continues",
                    format_ms(self.config.min_healthy_ms),
                    self.label(&st)
                );
                info!(service = %self.service.id, "canaries promoted automatically");
            } else {
                due = Some(at);
            }
        }
        if let Some(at) = due {
            plan.due_at(at);
        }
        if self.service.update_status.as_ref() != Some(&st) {
            let mut service = self.service.clone();
            service.update_status = Some(st);
            plan.put_service(service);
        }
    }

    fn await_promotion(&self, st: &mut UpdateStatus, canaries: usize) {
        let name = self.service.spec.as_ref().map_or("", |s| s.name.as_str());
        let running = format!(
            "{canaries} {} running version {}",
            if canaries == 1 { "canary" } else { "canaries" },
            st.to_version
        );
        st.awaiting_promotion = true;
        if self.config.auto_promote {
            st.message = format!(
                "{running}; promoting them once ready for {}",
                format_ms(self.config.min_healthy_ms)
            );
        } else {
            st.state = either(st, State::Paused, State::RollbackPaused);
            st.message = format!("{running}; `berth service promote {name}` to continue");
        }
        info!(service = %self.service.id, %st.message, "canaries wait for promotion");
    }

    fn complete(&self, st: &mut UpdateStatus, now_ms: i64) {
        let what = self.label(st);
        st.state = either(st, State::Completed, State::RollbackCompleted);
        st.message = format!("{what} completed");
        st.completed_ms = now_ms;
        st.awaiting_promotion = false;
        info!(service = %self.service.id, %st.message, "rollout completed");
    }
}

fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
