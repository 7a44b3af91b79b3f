//! The planner: the leader's loop that decides tasks. While this member leads,
//! on every burst of committed changes and on a periodic tick, it plans a
//! round from its view of nodes, services and tasks ([`live::LiveView`], kept
//! from the watch stream) with [`plan::plan_round_with`] (orchestrator, then
//! scheduler, then allocator) and commits the round's operations in bounded
//! transactions. Network subnets (and the
//! default network) are committed first, so a round allocates from stored
//! subnets only. A refused transaction (someone changed a task meanwhile) is
//! not an error: the next round computes again from the new state.

pub mod live;
pub mod plan;

use std::time::Duration;

use berth_proto::store::Op;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tracing::{debug, info, warn};

use crate::allocator::subnets;
use crate::clock::SharedClock;
use crate::ids::new_id;
use crate::raft::{ProposeError, RaftHandle};
use crate::store::commit::{CommitError, batches, commit as commit_txn};
use crate::store::watch::touches_workloads;
use crate::store::{StateMachine, StoreError, read_networks};
use live::LiveView;

pub use plan::{plan_round, plan_round_timed, plan_round_with};

#[derive(Clone, Debug)]
pub struct PlannerSettings {
    /// How often the loop looks whether a round is due without an event: a
    /// restart or update delay ran out, or the last round left work.
    pub tick: Duration,
    /// A round runs at least this often even when nothing seems to change (a
    /// safety net, which also reads the planner's view from the store again;
    /// an idle cluster's rounds would otherwise plan every task twice a
    /// second). Each plans every task: every 10 s, 20,000 tasks were ~40 % of
    /// an idle 1,000-node leader's CPU, so the net is a minute.
    pub idle_round: Duration,
    /// After the first event of a burst, wait this long for the rest of it.
    pub settle: Duration,
    /// Most operations in one transaction (Swarm: 200).
    pub max_ops_per_txn: usize,
    /// Largest encoded transaction.
    pub max_txn_bytes: usize,
    /// The cluster CIDR, VXLAN port and VNI base, when this leader starts a
    /// new cluster (an existing one keeps what it recorded).
    pub new_cluster: subnets::NewClusterNetwork,
}

impl Default for PlannerSettings {
    fn default() -> Self {
        PlannerSettings {
            tick: Duration::from_millis(500),
            idle_round: Duration::from_secs(60),
            settle: Duration::from_millis(10),
            max_ops_per_txn: 200,
            max_txn_bytes: 1024 * 1024,
            new_cluster: subnets::NewClusterNetwork::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlannerError {
    #[error("reading the cluster state for the orchestrator: {0}")]
    Read(#[from] StoreError),
    #[error("committing {ops} orchestrator/scheduler operations: {source}")]
    Propose { ops: usize, source: ProposeError },
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundOutcome {
    /// The store revision the round read (changes up to it were seen).
    pub read_revision: u64,
    pub ops: usize,
    pub committed_txns: usize,
    /// Transactions refused because the state changed since it was read.
    pub refused_txns: usize,
    /// Revisions of this round's own commits.
    pub own_revisions: Vec<u64>,
    /// The earliest time (Unix ms) a waiting restart or update delay runs out.
    pub due_ms: Option<i64>,
    /// How long reading and planning took (not the commits).
    pub planned_in: Duration,
}

/// What the last round left: whether a round on the next tick is needed.
struct LastRound {
    /// It wrote or was refused something, or failed: look again soon.
    busy: bool,
    due_ms: Option<i64>,
    at: std::time::Instant,
    /// How long it planned (see [`RoundOutcome::planned_in`]).
    took: Duration,
}

impl LastRound {
    fn needed(&self, now_ms: i64, idle_round: Duration) -> bool {
        self.busy || self.due_ms.is_some_and(|due| now_ms >= due) || self.at.elapsed() >= idle_round
    }
}

/// How long a round waits for the watch stream to bring the last round's own
/// commits before it reads the store instead.
const CATCH_UP: Duration = Duration::from_secs(1);
/// The longest a busy planner waits after a long round (one that read the
/// whole store, after a new term, counts its reading).
const MAX_PACE: Duration = Duration::from_millis(500);

type Events = tokio::sync::broadcast::Receiver<std::sync::Arc<berth_proto::v1::WatchEvent>>;

/// The watch stream and the view kept from it.
struct Watched {
    events: Events,
    /// Whether the stream still delivers (else rounds run on the tick).
    open: bool,
    /// The tables while this member leads; None while it follows, and after
    /// the stream fell behind (the next round reads the store again).
    live: Option<LiveView>,
    /// The revision of the last round's last own commit: the next round
    /// plans only from a view that has it (see [`Watched::catch_up`]).
    own_through: u64,
}

impl Watched {
    /// Takes in one received change.
    fn take(&mut self, received: Result<std::sync::Arc<berth_proto::v1::WatchEvent>, RecvError>) {
        match received {
            Ok(event) => {
                if let Some(live) = &mut self.live {
                    live.apply(&event);
                }
            }
            // Changes were missed: the view is read again.
            Err(RecvError::Lagged(_)) => self.live = None,
            Err(RecvError::Closed) => {
                self.live = None;
                self.open = false;
            }
        }
    }

    /// Takes in every change received so far. Returns whether one of them
    /// (or one missed) is a change to the workloads that `round` neither read
    /// nor made (None: take them all).
    fn drain(&mut self, round: Option<&RoundOutcome>) -> bool {
        let mut foreign = false;
        loop {
            match self.events.try_recv() {
                Ok(event) => {
                    foreign |= touches_workloads(&event)
                        && round.is_none_or(|r| {
                            event.revision > r.read_revision
                                && !r.own_revisions.contains(&event.revision)
                        });
                    self.take(Ok(event));
                }
                Err(TryRecvError::Lagged(n)) => {
                    foreign = true;
                    self.take(Err(RecvError::Lagged(n)));
                }
                Err(TryRecvError::Empty) => return foreign,
                Err(TryRecvError::Closed) => {
                    self.take(Err(RecvError::Closed));
                    return foreign;
                }
            }
        }
    }

    /// Waits until the view has taken in the changes up to `own_through`.
    /// The raft thread answers a commit before it hands the commit's changes
    /// to the watchers, so right after a round the stream may not have this
    /// round's own last changes yet; a round planned without them would
    /// create its own new tasks again, or hand out an address it just gave.
    /// The wait is the raft thread's next step; a view that does not get
    /// there within `CATCH_UP` is read from the store instead.
    async fn catch_up(&mut self) {
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        while self
            .live
            .as_ref()
            .is_some_and(|live| live.revision() < self.own_through)
        {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(received) => self.take(received),
                Err(_) => {
                    warn!(
                        through = self.own_through,
                        "the watch stream did not bring the planner's own commits; reading the store"
                    );
                    self.live = None;
                }
            }
        }
    }

    /// The view, read from the store if there is none.
    fn view(&mut self, sm: &StateMachine) -> Result<&LiveView, StoreError> {
        let live = match self.live.take() {
            Some(live) => live,
            None => LiveView::read(sm)?,
        };
        Ok(self.live.insert(live))
    }
}

/// Runs forever: acts only while this member is the leader.
pub async fn run(raft: RaftHandle, settings: PlannerSettings, clock: SharedClock) {
    // From now on; the first round reads the whole state anyway.
    let mut watched = match raft.state().watch().subscribe(0) {
        Ok((_, events)) => Watched {
            events,
            open: true,
            live: None,
            own_through: 0,
        },
        Err(err) => {
            warn!(%err, "leader loop cannot watch the store; running on the tick only");
            Watched {
                events: tokio::sync::broadcast::channel(1).1,
                open: false,
                live: None,
                own_through: 0,
            }
        }
    };
    let mut tick = tokio::time::interval(settings.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading_term: Option<u64> = None;
    // Someone else changed the state while the last round ran.
    let mut again = false;
    let mut last = LastRound {
        busy: true,
        due_ms: None,
        at: std::time::Instant::now(),
        took: Duration::ZERO,
    };
    loop {
        let by_event = if std::mem::take(&mut again) {
            true
        } else {
            tokio::select! {
                _ = tick.tick() => false,
                received = watched.events.recv(), if watched.open => {
                    let workloads = received.as_ref().map_or(true, |e| touches_workloads(e));
                    watched.take(received);
                    if !workloads {
                        continue;
                    }
                    watched.open
                }
            }
        };
        if by_event {
            // Coalesce the burst: one round for all of it. After a long
            // round, wait as long as it planned: while a large cluster changes
            // all the time (every task reporting its state), the planner
            // plans at most half the time, in fewer and larger rounds,
            // instead of one round of every task per `settle`. A small
            // cluster's rounds take a millisecond or two, so it waits
            // `settle` as before.
            tokio::time::sleep(settings.settle.max(last.took.min(MAX_PACE))).await;
        }
        watched.drain(None);
        let status = raft.status().get();
        if !status.is_leader() {
            if leading_term.take().is_some() {
                info!(
                    term = status.term,
                    "no longer the leader: orchestrator and scheduler stop"
                );
            }
            // A follower keeps no view: the next leadership reads it anew.
            watched.live = None;
            continue;
        }
        if leading_term != Some(status.term) {
            // Apply everything earlier leaders committed before deciding on it.
            if let Err(err) = raft.read_barrier().await {
                debug!(%err, "leader read barrier failed; retrying on the next tick");
                continue;
            }
            info!(
                term = status.term,
                "leading: orchestrator and scheduler run"
            );
            leading_term = Some(status.term);
            watched.live = None;
            last.busy = true;
        }
        if !by_event && watched.open && !last.needed(clock.now_ms(), settings.idle_round) {
            continue;
        }
        if last.at.elapsed() >= settings.idle_round {
            // The safety net reads the tables again, as a new leader does.
            watched.live = None;
        }
        let started = std::time::Instant::now();
        let result = round(&raft, &settings, clock.as_ref(), &mut watched).await;
        raft.metrics().loop_round(
            crate::metrics::LOOP_PLANNER,
            started.elapsed().as_secs_f64(),
            result.is_ok(),
        );
        match result {
            Ok(outcome) => {
                if outcome.ops > 0 {
                    debug!(
                        ops = outcome.ops,
                        committed = outcome.committed_txns,
                        refused = outcome.refused_txns,
                        "leader round"
                    );
                }
                // Our own commits and what the round read need no new round;
                // anything else does, at once.
                again = watched.drain(Some(&outcome));
                if let Some(&last_own) = outcome.own_revisions.iter().max() {
                    watched.own_through = last_own;
                }
                last = LastRound {
                    busy: outcome.ops > 0 || outcome.refused_txns > 0,
                    due_ms: outcome.due_ms,
                    at: std::time::Instant::now(),
                    took: outcome.planned_in,
                };
            }
            Err(err) => {
                warn!(%err, "leader round failed; retrying");
                watched.live = None;
                last.busy = true;
            }
        }
        tick.reset();
    }
}

/// Plans from the view and commits once.
async fn round(
    raft: &RaftHandle,
    settings: &PlannerSettings,
    clock: &dyn crate::clock::Clock,
    watched: &mut Watched,
) -> Result<RoundOutcome, PlannerError> {
    let mut outcome = RoundOutcome::default();
    let sm = raft.state();
    let networks = read_networks(sm)?;
    let prepared = subnets::prepare(
        &networks,
        &settings.new_cluster,
        clock.now_ms(),
        &mut new_id,
    );
    if !prepared.is_empty() {
        commit(raft, settings, prepared, &mut outcome).await?;
    }
    // Changes that came meanwhile belong in the view the round reads, and
    // the last round's own commits must be in it.
    let planning = std::time::Instant::now();
    watched.drain(None);
    watched.catch_up().await;
    let live = watched.view(sm)?;
    outcome.read_revision = live.revision();
    let (volumes, settings_record) = crate::store::view::read_volumes_and_settings(sm)?;
    let networks = read_networks(sm)?;
    let view = live.view(volumes, settings_record);
    let (ops, due_ms) = plan_round_timed(&view, &networks, clock.now_ms(), &mut new_id);
    drop(view);
    outcome.due_ms = due_ms;
    outcome.planned_in = planning.elapsed();
    let placements = ops.iter().filter(|op| places_task(op)).count();
    commit(raft, settings, ops, &mut outcome).await?;
    raft.metrics().placements.inc_by(placements as u64);
    Ok(outcome)
}

/// A put that gives a task its node (the scheduler's placement).
fn places_task(op: &Op) -> bool {
    crate::store::ops::put_task(op).is_some_and(|task| {
        !task.node_id.is_empty()
            && task.status.as_ref().map(|s| s.state)
                == Some(berth_proto::v1::TaskState::Assigned as i32)
    })
}

async fn commit(
    raft: &RaftHandle,
    settings: &PlannerSettings,
    ops: Vec<Op>,
    outcome: &mut RoundOutcome,
) -> Result<(), PlannerError> {
    outcome.ops += ops.len();
    for txn in batches(ops, settings.max_ops_per_txn, settings.max_txn_bytes) {
        let ops = txn.ops.len();
        // A refused volume write: the placements after it may rely on it.
        let places_volumes = txn
            .ops
            .iter()
            .any(|o| crate::scheduler::volumes::put_volume_name(o).is_some());
        match commit_txn(raft, txn.ops).await {
            Ok(result) => {
                outcome.committed_txns += 1;
                outcome.own_revisions.push(result.revision);
            }
            Err(CommitError::Refused { message, .. }) => {
                debug!(error = %message, ops, "planner txn refused; recomputing next round");
                outcome.refused_txns += 1;
                if places_volumes {
                    break;
                }
            }
            Err(CommitError::Raft(source)) => {
                return Err(PlannerError::Propose { ops, source });
            }
            Err(err @ CommitError::TooLarge { .. }) => {
                warn!(%err, ops, "planner txn too large; recomputing next round");
                outcome.refused_txns += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
