//! What a waiting command (`create`, `scale`, `update`, `rollback`, `promote`)
//! makes of one look at a service and its tasks: a line per slot, and whether
//! the wait is over and how it ended. Plain functions; `progress.rs` polls and
//! shows.

use std::collections::{BTreeMap, BTreeSet};

use berth_proto::v1::service_spec::Mode;
use berth_proto::v1::update_status::State;
use berth_proto::v1::{Service, Task, TaskState};

/// What the command waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// `create`, `scale`: every task has reached running once (healthy, when
    /// it has a check).
    Converge,
    /// `update`, `promote`: the rollout to `version` ends.
    Update { version: u64 },
    /// `rollback`: the rollback to `version` (the version it wrote) ends.
    Rollback { version: u64 },
}

/// How a wait ended; [`Ending::exit_code`] is what a pipeline sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    Converged,
    Completed(String),
    /// Paused by a failure (or the progress deadline) under failure action pause.
    Paused(String),
    /// Canaries run; `berth service promote` continues.
    AwaitingPromotion(String),
    /// The update failed and was rolled back (or the rollback paused).
    RolledBack(String),
    /// Replaced by another update, or tasks keep failing to start.
    Failed(String),
}

impl Ending {
    /// 0 done; 1 failed; 2 paused; 3 rolled back; 4 canaries wait for promotion.
    pub fn exit_code(&self) -> i32 {
        match self {
            Ending::Converged | Ending::Completed(_) => 0,
            Ending::Failed(_) => 1,
            Ending::Paused(_) => 2,
            Ending::RolledBack(_) => 3,
            Ending::AwaitingPromotion(_) => 4,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Ending::Converged => "every task is running",
            Ending::Completed(m)
            | Ending::Paused(m)
            | Ending::AwaitingPromotion(m)
            | Ending::RolledBack(m)
            | Ending::Failed(m) => m,
        }
    }
}

/// Tasks of one slot that fail to start before any runs: a service that
/// cannot come up ends the wait instead of waiting forever.
const FAILED_STARTS: usize = 3;

/// One slot as the progress display shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotLine {
    /// "1", "2", ... or the node's name (global services).
    pub key: String,
    /// "v5 running (healthy) on n2", "v4 running, v5 starting on n3".
    pub text: String,
    /// Runs what the command waits for.
    pub done: bool,
}

/// Kept between looks: tasks seen running (and healthy, with a check), and
/// the failures counted while converging.
#[derive(Debug, Default)]
pub struct Watcher {
    seen_ready: BTreeSet<String>,
    /// When the wait began (Unix ms): older failures are not this command's.
    pub since_ms: i64,
}

fn state(task: &Task) -> TaskState {
    task.status
        .as_ref()
        .and_then(|s| TaskState::try_from(s.state).ok())
        .unwrap_or(TaskState::New)
}

fn wants_running(task: &Task) -> bool {
    task.desired_state <= TaskState::Running as i32
}

fn created(task: &Task) -> i64 {
    task.timestamps.as_ref().map_or(0, |t| t.created_ms)
}

fn describe(task: &Task, nodes: &BTreeMap<String, String>) -> String {
    let status = task.status.clone().unwrap_or_default();
    let mut text = format!(
        "v{} {}",
        task.spec_version,
        super::state_with_health(&status)
    );
    if let Some(node) = nodes.get(&task.node_id).filter(|n| !n.is_empty()) {
        text.push_str(&format!(" on {node}"));
    }
    let why = if !status.error.is_empty() {
        status.error
    } else if matches!(state(task), TaskState::Pending) && !status.message.is_empty() {
        status.message
    } else {
        String::new()
    };
    if !why.is_empty() {
        text.push_str(&format!(": {why}"));
    }
    text
}

/// The replica count of a replicated service, None for a global one.
fn replicas(service: &Service) -> Option<u64> {
    match service.spec.as_ref().and_then(|s| s.mode.as_ref()) {
        Some(Mode::Replicated(r)) => Some(r.replicas),
        _ => None,
    }
}

impl Watcher {
    pub fn new(since_ms: i64) -> Self {
        Watcher {
            seen_ready: BTreeSet::new(),
            since_ms,
        }
    }

    /// The lines to show, and the ending once the wait is over.
    pub fn look(
        &mut self,
        goal: Goal,
        service: &Service,
        tasks: &[Task],
        nodes: &BTreeMap<String, String>,
    ) -> (Vec<SlotLine>, Option<Ending>) {
        for t in tasks.iter().filter(|t| t.is_ready()) {
            self.seen_ready.insert(t.id.clone());
        }
        let rolled_to = service.update_status.as_ref().map_or(0, |s| s.to_version);
        // A write that replaced no task (a scale, a label) started no rollout:
        // its wait is a convergence.
        let goal = match goal {
            Goal::Update { version } | Goal::Rollback { version } if rolled_to < version => {
                Goal::Converge
            }
            other => other,
        };
        let target = match goal {
            Goal::Converge => None,
            Goal::Update { version } | Goal::Rollback { version } => Some(version),
        };
        let slots = group(service, tasks, nodes);
        let lines: Vec<SlotLine> = slots
            .iter()
            .map(|((_, key), members)| self.line(key, members, target, nodes))
            .collect();
        let ending = match goal {
            Goal::Converge => self.converged(service, &slots, &lines),
            Goal::Update { version } => rollout_ending(service, version, false),
            Goal::Rollback { version } => rollout_ending(service, version, true),
        };
        (lines, ending)
    }

    fn line(
        &self,
        key: &str,
        members: &[&Task],
        target: Option<u64>,
        nodes: &BTreeMap<String, String>,
    ) -> SlotLine {
        let live: Vec<&&Task> = members
            .iter()
            .filter(|t| wants_running(t) || state(t) == TaskState::Running)
            .collect();
        let newest = live
            .iter()
            .copied()
            .max_by_key(|t| (wants_running(t), created(t)))
            .or_else(|| members.iter().max_by_key(|t| created(t)));
        let Some(newest) = newest else {
            return SlotLine {
                key: key.to_string(),
                text: "no task yet".into(),
                done: false,
            };
        };
        let mut text = String::new();
        for old in live.iter().filter(|t| t.id != newest.id) {
            text.push_str(&format!(
                "v{} {}, ",
                old.spec_version,
                state(old).short_name()
            ));
        }
        text.push_str(&describe(newest, nodes));
        let done = wants_running(newest)
            && self.seen_ready.contains(&newest.id)
            && target.is_none_or(|v| newest.spec_version >= v);
        SlotLine {
            key: key.to_string(),
            text,
            done,
        }
    }

    fn converged(
        &self,
        service: &Service,
        slots: &Slots<'_>,
        lines: &[SlotLine],
    ) -> Option<Ending> {
        for ((_, key), members) in slots {
            let failed: Vec<&&Task> = members
                .iter()
                .filter(|t| {
                    created(t) >= self.since_ms
                        && matches!(state(t), TaskState::Failed | TaskState::Rejected)
                        && !self.seen_ready.contains(&t.id)
                })
                .collect();
            if failed.len() >= FAILED_STARTS
                && !members.iter().any(|t| self.seen_ready.contains(&t.id))
            {
                let last = failed.iter().max_by_key(|t| created(t)).map(|t| {
                    let s = t.status.clone().unwrap_or_default();
                    if s.error.is_empty() {
                        s.message
                    } else {
                        s.error
                    }
                });
                return Some(Ending::Failed(format!(
                    "slot {key}: {} tasks failed to start; the last: {}",
                    failed.len(),
                    last.unwrap_or_default()
                )));
            }
        }
        match replicas(service) {
            // Scaled to 0: done once nothing runs any more.
            Some(0) => (!slots
                .values()
                .flatten()
                .any(|t| state(t) == TaskState::Running))
            .then_some(Ending::Converged),
            Some(n) => all_done_within(lines, n).then_some(Ending::Converged),
            // Global: every node's task, once the orchestrator made them.
            None => {
                (!lines.is_empty() && lines.iter().all(|l| l.done)).then_some(Ending::Converged)
            }
        }
    }
}

/// Slots 1..=replicas all done (slots above the count are on their way out).
fn all_done_within(lines: &[SlotLine], replicas: u64) -> bool {
    (1..=replicas).all(|n| lines.iter().any(|l| l.key == n.to_string() && l.done))
}

/// A service's tasks by slot, keyed (slot number, shown name): the number for
/// replicated services (in numeric order), the node's name for global ones.
type Slots<'a> = BTreeMap<(u64, String), Vec<&'a Task>>;

/// Groups the tasks; slots above the replica count are left out once they
/// ended.
fn group<'a>(service: &Service, tasks: &'a [Task], nodes: &BTreeMap<String, String>) -> Slots<'a> {
    let mut slots: Slots<'a> = BTreeMap::new();
    let replicas = replicas(service);
    if let Some(n) = replicas {
        for slot in 1..=n {
            slots.insert((slot, slot.to_string()), Vec::new());
        }
    }
    for task in tasks {
        let ended = !wants_running(task) && state(task).is_terminal();
        let key = match replicas {
            Some(n) if task.slot > n && ended => continue,
            Some(_) => (task.slot, task.slot.to_string()),
            None if ended => continue,
            None => (
                0,
                nodes
                    .get(&task.node_id)
                    .cloned()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| task.node_id.clone()),
            ),
        };
        slots.entry(key).or_default().push(task);
    }
    slots
}

/// How the rollout the command started ended, from the service's status;
/// None while it goes on.
fn rollout_ending(service: &Service, version: u64, rollback: bool) -> Option<Ending> {
    let status = service.update_status.clone().unwrap_or_default();
    let message = status.message.clone();
    let state = State::try_from(status.state).unwrap_or(State::None);
    // (`look` waits for a convergence instead while the status is older.)
    if status.to_version > version {
        // A later version: the orchestrator rolling ours back, or someone else.
        return match state {
            State::RollbackStarted => None,
            State::RollbackCompleted => Some(Ending::RolledBack(format!(
                "version {version} was rolled back: {message}"
            ))),
            State::RollbackPaused => Some(Ending::RolledBack(format!(
                "version {version} failed and its rollback paused: {message}"
            ))),
            _ => Some(Ending::Failed(format!(
                "the service was changed again (version {}) before version {version} rolled out",
                status.to_version
            ))),
        };
    }
    match state {
        State::Completed if !rollback => Some(Ending::Completed(message)),
        State::RollbackCompleted if rollback => Some(Ending::Completed(message)),
        State::Paused | State::RollbackPaused if status.awaiting_promotion => {
            Some(Ending::AwaitingPromotion(message))
        }
        State::Paused | State::RollbackPaused => Some(Ending::Paused(message)),
        // An update rolled back within its own version (not expected: the
        // orchestrator writes a rollback as a new version).
        State::RollbackCompleted => Some(Ending::RolledBack(message)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{
        ReplicatedMode, ServiceSpec, TaskHealth, TaskStatus, Timestamps, UpdateStatus,
    };

    fn service(replicas: u64, version: u64, status: Option<UpdateStatus>) -> Service {
        Service {
            spec: Some(ServiceSpec {
                name: "web".into(),
                mode: Some(Mode::Replicated(ReplicatedMode { replicas })),
                ..Default::default()
            }),
            spec_version: version,
            update_status: status,
            ..Default::default()
        }
    }

    fn task(id: &str, slot: u64, version: u64, st: TaskState, h: TaskHealth, at: i64) -> Task {
        Task {
            id: id.into(),
            slot,
            spec_version: version,
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                state: st as i32,
                health: h as i32,
                error: if st == TaskState::Failed {
                    "exit code 1".into()
                } else {
                    String::new()
                },
                ..Default::default()
            }),
            timestamps: Some(Timestamps {
                created_ms: at,
                updated_ms: at,
            }),
            ..Default::default()
        }
    }

    fn status(state: State, to: u64, message: &str) -> UpdateStatus {
        UpdateStatus {
            state: state as i32,
            to_version: to,
            message: message.into(),
            ..Default::default()
        }
    }

    #[test]
    fn create_waits_for_every_slot_running_and_healthy() {
        let nodes = BTreeMap::new();
        let s = service(2, 1, None);
        let mut w = Watcher::new(0);
        let starting = vec![
            task("a", 1, 1, TaskState::Running, TaskHealth::Starting, 1),
            task("b", 2, 1, TaskState::Running, TaskHealth::None, 1),
        ];
        let (lines, end) = w.look(Goal::Converge, &s, &starting, &nodes);
        assert_eq!(end, None);
        assert_eq!(lines[0].text, "v1 running (starting)");
        assert!(!lines[0].done && lines[1].done);
        let healthy = vec![
            task("a", 1, 1, TaskState::Running, TaskHealth::Healthy, 1),
            task("b", 2, 1, TaskState::Running, TaskHealth::None, 1),
        ];
        assert_eq!(
            w.look(Goal::Converge, &s, &healthy, &nodes).1,
            Some(Ending::Converged)
        );
    }

    #[test]
    fn a_task_that_ran_once_counts_even_if_it_exits_later() {
        let nodes = BTreeMap::new();
        let s = service(1, 1, None);
        let mut w = Watcher::new(0);
        let ran = vec![task("a", 1, 1, TaskState::Running, TaskHealth::None, 1)];
        assert_eq!(
            w.look(Goal::Converge, &s, &ran, &nodes).1,
            Some(Ending::Converged)
        );
        let mut exited = ran.clone();
        exited[0].status.as_mut().expect("status").state = TaskState::Failed as i32;
        assert_eq!(
            w.look(Goal::Converge, &s, &exited, &nodes).1,
            Some(Ending::Converged)
        );
    }

    #[test]
    fn a_slot_that_never_starts_ends_the_wait() {
        let nodes = BTreeMap::new();
        let s = service(1, 1, None);
        let mut w = Watcher::new(0);
        let mut tasks: Vec<Task> = (0..3)
            .map(|i| {
                let mut t = task(
                    &format!("t{i}"),
                    1,
                    1,
                    TaskState::Failed,
                    TaskHealth::None,
                    i,
                );
                t.desired_state = TaskState::Shutdown as i32;
                t
            })
            .collect();
        tasks.push(task("t3", 1, 1, TaskState::Pending, TaskHealth::None, 3));
        let (_, end) = w.look(Goal::Converge, &s, &tasks, &nodes);
        match end {
            Some(Ending::Failed(m)) => assert!(
                m.contains("3 tasks failed to start; the last: exit code 1"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_update_ends_with_its_rollouts_state() {
        let nodes = BTreeMap::new();
        let tasks = vec![
            task("old", 1, 1, TaskState::Running, TaskHealth::None, 1),
            task("new", 1, 2, TaskState::Starting, TaskHealth::None, 2),
        ];
        let mut w = Watcher::new(0);
        let updating = service(
            1,
            2,
            Some(status(State::Updating, 2, "update to version 2")),
        );
        let (lines, end) = w.look(Goal::Update { version: 2 }, &updating, &tasks, &nodes);
        assert_eq!(end, None);
        assert_eq!(lines[0].text, "v1 running, v2 starting");
        for (st, code) in [(State::Completed, 0), (State::Paused, 2)] {
            let s = service(1, 2, Some(status(st, 2, "why")));
            let end = w
                .look(Goal::Update { version: 2 }, &s, &tasks, &nodes)
                .1
                .expect("end");
            assert_eq!(end.exit_code(), code, "{st:?}");
        }
        let mut canary = status(State::Paused, 2, "1 canary running");
        canary.awaiting_promotion = true;
        let s = service(1, 2, Some(canary));
        let end = w
            .look(Goal::Update { version: 2 }, &s, &tasks, &nodes)
            .1
            .expect("end");
        assert_eq!(end.exit_code(), 4);
        // The orchestrator rolled version 2 back as version 3.
        let rolling = service(
            1,
            3,
            Some(status(State::RollbackStarted, 3, "2 of 2 failed")),
        );
        assert_eq!(
            w.look(Goal::Update { version: 2 }, &rolling, &tasks, &nodes)
                .1,
            None
        );
        let back = service(
            1,
            3,
            Some(status(State::RollbackCompleted, 3, "2 of 2 failed")),
        );
        let end = w
            .look(Goal::Update { version: 2 }, &back, &tasks, &nodes)
            .1
            .expect("end");
        assert_eq!(end.exit_code(), 3);
        assert!(
            end.message()
                .contains("version 2 was rolled back: 2 of 2 failed")
        );
        // A rollback command succeeds on ROLLBACK_COMPLETED of its own version.
        let end = w
            .look(Goal::Rollback { version: 3 }, &back, &tasks, &nodes)
            .1
            .expect("end");
        assert_eq!(end.exit_code(), 0);
    }

    #[test]
    fn an_update_that_replaces_no_task_waits_like_a_scale() {
        let nodes = BTreeMap::new();
        let mut w = Watcher::new(0);
        // Version 3 only scaled 1 -> 2: the last rollout was to version 2.
        let s = service(2, 3, Some(status(State::Completed, 2, "done")));
        let one = vec![task("a", 1, 2, TaskState::Running, TaskHealth::None, 1)];
        assert_eq!(
            w.look(Goal::Update { version: 3 }, &s, &one, &nodes).1,
            None
        );
        let two = vec![
            task("a", 1, 2, TaskState::Running, TaskHealth::None, 1),
            task("b", 2, 3, TaskState::Running, TaskHealth::None, 2),
        ];
        assert_eq!(
            w.look(Goal::Update { version: 3 }, &s, &two, &nodes).1,
            Some(Ending::Converged)
        );
    }
}
