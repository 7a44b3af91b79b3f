//! The planner: the leader's loop that decides tasks. While this member leads,
//! on every burst of committed changes and on a periodic tick, it reads nodes,
//! services and tasks, plans a round ([`plan::plan_round_with`]: orchestrator,
//! then scheduler, then allocator) and commits the round's operations in
//! bounded transactions. Network subnets (and the
//! default network) are committed first, so a round allocates from stored
//! subnets only. A refused transaction (someone changed a task meanwhile) is
//! not an error: the next round computes again from the new state.

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
use crate::store::{StoreError, read_networks, read_view};

pub use plan::{plan_round, plan_round_owned, plan_round_timed, plan_round_with};

#[derive(Clone, Debug)]
pub struct PlannerSettings {
    /// How often the loop looks whether a round is due without an event: a
    /// restart or update delay ran out, or the last round left work.
    pub tick: Duration,
    /// A round runs at least this often even when nothing seems to change (a
    /// safety net; an idle cluster's rounds would otherwise decode and plan
    /// every task twice a second). Each decodes and plans every task: every
    /// 10 s, 20,000 tasks were ~40 % of an idle 1,000-node leader's CPU, so
    /// the net is a minute.
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
}

/// What the last round left: whether a round on the next tick is needed.
struct LastRound {
    /// It wrote or was refused something, or failed: look again soon.
    busy: bool,
    due_ms: Option<i64>,
    at: std::time::Instant,
}

impl LastRound {
    fn needed(&self, now_ms: i64, idle_round: Duration) -> bool {
        self.busy || self.due_ms.is_some_and(|due| now_ms >= due) || self.at.elapsed() >= idle_round
    }
}

type Events = tokio::sync::broadcast::Receiver<std::sync::Arc<berth_proto::v1::WatchEvent>>;

/// Runs forever: acts only while this member is the leader.
pub async fn run(raft: RaftHandle, settings: PlannerSettings, clock: SharedClock) {
    // From now on; the first round reads the whole state anyway.
    let mut events: Events = match raft.state().watch().subscribe(0) {
        Ok((_, rx)) => rx,
        Err(err) => {
            warn!(%err, "leader loop cannot watch the store; running on the tick only");
            tokio::sync::broadcast::channel(1).1
        }
    };
    let mut tick = tokio::time::interval(settings.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading_term: Option<u64> = None;
    let mut watching = true;
    // Someone else changed the state while the last round ran.
    let mut again = false;
    let mut last = LastRound {
        busy: true,
        due_ms: None,
        at: std::time::Instant::now(),
    };
    loop {
        let by_event = if std::mem::take(&mut again) {
            true
        } else {
            tokio::select! {
                _ = tick.tick() => false,
                received = events.recv(), if watching => match received {
                    Ok(event) if !touches_workloads(&event) => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => {
                        warn!("store watch closed; the leader loop runs on the tick only");
                        watching = false;
                        false
                    }
                },
            }
        };
        if by_event {
            // Coalesce the burst: one round for all of it.
            tokio::time::sleep(settings.settle).await;
            drain(&mut events);
        }
        let status = raft.status().get();
        if !status.is_leader() {
            if leading_term.take().is_some() {
                info!(
                    term = status.term,
                    "no longer the leader: orchestrator and scheduler stop"
                );
            }
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
            last.busy = true;
        }
        if !by_event && watching && !last.needed(clock.now_ms(), settings.idle_round) {
            continue;
        }
        let started = std::time::Instant::now();
        let result = round(&raft, &settings, clock.as_ref()).await;
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
                again = foreign_changes(&mut events, &outcome);
                last = LastRound {
                    busy: outcome.ops > 0 || outcome.refused_txns > 0,
                    due_ms: outcome.due_ms,
                    at: std::time::Instant::now(),
                };
            }
            Err(err) => {
                warn!(%err, "leader round failed; retrying");
                last.busy = true;
            }
        }
        tick.reset();
    }
}

fn drain(events: &mut Events) {
    loop {
        match events.try_recv() {
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
            Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => return,
        }
    }
}

/// Drains the events that arrived during a round; true when one of them is a
/// change the round neither read nor made.
fn foreign_changes(events: &mut Events, outcome: &RoundOutcome) -> bool {
    let mut foreign = false;
    loop {
        match events.try_recv() {
            Ok(event) if !touches_workloads(&event) => {}
            Ok(event) => {
                foreign |= event.revision > outcome.read_revision
                    && !outcome.own_revisions.contains(&event.revision);
            }
            Err(TryRecvError::Lagged(_)) => foreign = true,
            Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => return foreign,
        }
    }
}

/// Reads the state, plans and commits once.
pub async fn round(
    raft: &RaftHandle,
    settings: &PlannerSettings,
    clock: &dyn crate::clock::Clock,
) -> Result<RoundOutcome, PlannerError> {
    let mut outcome = RoundOutcome::default();
    let networks = read_networks(raft.state())?;
    let prepared = subnets::prepare(
        &networks,
        &settings.new_cluster,
        clock.now_ms(),
        &mut new_id,
    );
    if !prepared.is_empty() {
        commit(raft, settings, prepared, &mut outcome).await?;
    }
    outcome.read_revision = raft.state().revision()?;
    let view = read_view(raft.state())?;
    let networks = read_networks(raft.state())?;
    // The view goes into the round: its tasks are not held (nor copied)
    // beside the round's own while the round plans and commits.
    let (ops, due_ms) = plan_round_owned(view, &networks, clock.now_ms(), &mut new_id);
    outcome.due_ms = due_ms;
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
