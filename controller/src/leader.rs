//! The leader's driver: while this member leads, on every burst of committed
//! changes and on a periodic tick, reads nodes, services and tasks, runs the
//! orchestrator, the scheduler and the allocator (overlay addresses), and
//! commits their operations in bounded transactions. Network subnets (and the
//! default network) are committed first, so a round allocates from stored
//! subnets only. A refused transaction (someone changed a task meanwhile) is
//! not an error: the next round computes again from the new state.

use std::collections::HashMap;
use std::time::Duration;

use berth_proto::net::Ipv4Net;
use berth_proto::store::object::Kind;
use berth_proto::store::{Op, Txn, op};
use berth_proto::v1::{Network, Service};
use prost::Message as _;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tracing::{debug, info, warn};

use crate::allocator::{self, subnets};
use crate::api::common::{new_id, now_ms};
use crate::orchestrator::{ClusterView, orchestrate};
use crate::raft::{ProposeError, RaftHandle};
use crate::scheduler::schedule;
use crate::store::watch::touches_workloads;
use crate::store::{StateMachine, StoreError};

#[derive(Clone, Debug)]
pub struct LeaderSettings {
    /// A round runs at least this often (restart and update delays, pending
    /// tasks, missed events).
    pub tick: Duration,
    /// After the first event of a burst, wait this long for the rest of it.
    pub settle: Duration,
    /// Most operations in one transaction (Swarm: 200).
    pub max_ops_per_txn: usize,
    /// Largest encoded transaction.
    pub max_txn_bytes: usize,
    /// The cluster CIDR network subnets are carved from, when this leader
    /// starts a new cluster (an existing one keeps the CIDR it recorded).
    pub cluster_cidr: Ipv4Net,
}

impl Default for LeaderSettings {
    fn default() -> Self {
        LeaderSettings {
            tick: Duration::from_millis(500),
            settle: Duration::from_millis(10),
            max_ops_per_txn: 200,
            max_txn_bytes: 1024 * 1024,
            cluster_cidr: subnets::default_cluster_cidr(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
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
}

type Events = tokio::sync::broadcast::Receiver<std::sync::Arc<berth_proto::v1::WatchEvent>>;

/// Runs forever: acts only while this member is the leader.
pub async fn run(raft: RaftHandle, settings: LeaderSettings) {
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
        }
        match round(&raft, &settings).await {
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
            }
            Err(err) => warn!(%err, "leader round failed; retrying"),
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
    settings: &LeaderSettings,
) -> Result<RoundOutcome, LeaderError> {
    let mut outcome = RoundOutcome::default();
    let networks = read_networks(raft.state())?;
    let prepared = subnets::prepare(&networks, settings.cluster_cidr, now_ms(), &mut new_id);
    if !prepared.is_empty() {
        commit(raft, settings, prepared, &mut outcome).await?;
    }
    outcome.read_revision = raft.state().revision()?;
    let view = read_view(raft.state())?;
    let networks = read_networks(raft.state())?;
    let ops = plan_round_with(&view, &networks, now_ms(), &mut new_id);
    commit(raft, settings, ops, &mut outcome).await?;
    Ok(outcome)
}

async fn commit(
    raft: &RaftHandle,
    settings: &LeaderSettings,
    ops: Vec<Op>,
    outcome: &mut RoundOutcome,
) -> Result<(), LeaderError> {
    outcome.ops += ops.len();
    for txn in batches(ops, settings.max_ops_per_txn, settings.max_txn_bytes) {
        let ops = txn.ops.len();
        let result = raft
            .propose(txn)
            .await
            .map_err(|source| LeaderError::Propose { ops, source })?;
        if result.error.is_empty() {
            outcome.committed_txns += 1;
            outcome.own_revisions.push(result.revision);
        } else {
            debug!(error = %result.error, ops, "leader txn refused; recomputing next round");
            outcome.refused_txns += 1;
        }
    }
    Ok(())
}

/// The network table.
pub fn read_networks(sm: &StateMachine) -> Result<Vec<Network>, StoreError> {
    Ok(sm
        .list("network")?
        .into_iter()
        .filter_map(|o| match o.kind {
            Some(Kind::Network(n)) => Some(n),
            _ => None,
        })
        .collect())
}

/// Nodes, services and tasks as the state machine has them.
pub fn read_view(sm: &StateMachine) -> Result<ClusterView, StoreError> {
    let mut objects = sm.list("node")?;
    objects.extend(sm.list("service")?);
    objects.extend(sm.list("task")?);
    Ok(ClusterView::from_objects(objects))
}

/// [`plan_round_with`] on a cluster without networks: tasks get no overlay
/// addresses unless their spec names a network, which then does not exist.
pub fn plan_round(view: &ClusterView, now_ms: i64, new_id: &mut dyn FnMut() -> String) -> Vec<Op> {
    plan_round_with(view, &[], now_ms, new_id)
}

/// The orchestrator's operations, then the scheduler's on the state they leave,
/// then the allocator's on the state those leave, merged into one operation per
/// object (a task the orchestrator creates, the scheduler places and the
/// allocator addresses is one create). A placement whose task gets no address
/// is dropped: the task stays PENDING with the reason. Changed node block
/// lists come first, so they tend to commit with or before their tasks.
pub fn plan_round_with(
    view: &ClusterView,
    networks: &[Network],
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<Op> {
    let orchestrated = orchestrate(view, now_ms, new_id);
    let tasks = apply_to_tasks(&view.tasks, &orchestrated);
    let mut scheduled = schedule(&view.nodes, &tasks, now_ms);
    let placed = apply_to_tasks(&tasks, &scheduled);
    let services = latest_services(&view.services, &orchestrated);
    let allocation = allocator::allocate(allocator::Input {
        networks,
        nodes: &view.nodes,
        services: &services,
        before: &tasks,
        after: &placed,
    });
    if !allocation.unplace.is_empty() {
        scheduled.retain(|o| task_of(o).is_none_or(|t| !allocation.unplace.contains(&t.id)));
    }
    merge(
        allocation
            .node_ops
            .into_iter()
            .chain(orchestrated)
            .chain(scheduled)
            .chain(allocation.ops),
    )
}

/// Services as they will be once the orchestrator's puts apply.
fn latest_services(services: &[Service], ops: &[Op]) -> Vec<Service> {
    let mut out = services.to_vec();
    for o in ops {
        if let Some(op::Op::Put(p)) = &o.op
            && let Some(Kind::Service(s)) = p.object.as_ref().and_then(|obj| obj.kind.as_ref())
            && let Some(slot) = out.iter_mut().find(|old| old.id == s.id)
        {
            *slot = s.clone();
        }
    }
    out
}

fn task_of(op: &Op) -> Option<&berth_proto::v1::Task> {
    match &op.op {
        Some(op::Op::Put(p)) => match p.object.as_ref()?.kind.as_ref()? {
            Kind::Task(t) => Some(t),
            _ => None,
        },
        _ => None,
    }
}

/// The task table as it will be once `ops` apply.
fn apply_to_tasks(tasks: &[berth_proto::v1::Task], ops: &[Op]) -> Vec<berth_proto::v1::Task> {
    let mut out = tasks.to_vec();
    let mut index: HashMap<String, usize> = out
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.clone(), i))
        .collect();
    let mut gone = vec![false; out.len()];
    for o in ops {
        if let Some(task) = task_of(o) {
            match index.get(&task.id) {
                Some(&i) => out[i] = task.clone(),
                None => {
                    index.insert(task.id.clone(), out.len());
                    out.push(task.clone());
                    gone.push(false);
                }
            }
        } else if let Some(op::Op::Delete(d)) = &o.op
            && d.table == "task"
            && let Some(&i) = index.get(&d.id)
        {
            gone[i] = true;
        }
    }
    out.into_iter()
        .zip(gone)
        .filter(|(_, g)| !g)
        .map(|(t, _)| t)
        .collect()
}

/// One operation per object: a later put replaces an earlier one's object but
/// keeps its precondition (the version that was read).
fn merge(ops: impl IntoIterator<Item = Op>) -> Vec<Op> {
    let mut out: Vec<Op> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for o in ops {
        let key = match &o.op {
            Some(op::Op::Put(p)) => p.object.as_ref().and_then(|obj| {
                use crate::store::ObjectExt;
                Some((obj.table()?.to_string(), obj.id().to_string()))
            }),
            Some(op::Op::Delete(d)) => Some((d.table.clone(), d.id.clone())),
            None => None,
        };
        let Some(key) = key else { continue };
        match index.get(&key) {
            Some(&i) => match (&mut out[i].op, o.op) {
                (Some(op::Op::Put(first)), Some(op::Op::Put(later))) => first.object = later.object,
                (slot, later) => *slot = later,
            },
            None => {
                index.insert(key, out.len());
                out.push(o);
            }
        }
    }
    out
}

/// Splits operations into transactions of at most `max_ops` operations and
/// about `max_bytes` bytes.
fn batches(ops: Vec<Op>, max_ops: usize, max_bytes: usize) -> Vec<Txn> {
    let mut txns = Vec::new();
    let mut current = Txn::default();
    let mut bytes = 0;
    for o in ops {
        let size = o.encoded_len() + 4;
        if !current.ops.is_empty()
            && (current.ops.len() >= max_ops.max(1) || bytes + size > max_bytes)
        {
            txns.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.ops.push(o);
    }
    if !current.ops.is_empty() {
        txns.push(current);
    }
    txns
}

#[cfg(test)]
mod tests;
