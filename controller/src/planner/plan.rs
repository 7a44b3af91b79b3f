//! One round of the leader's planning as a plain function of the cluster state:
//! the orchestrator's operations, then the scheduler's on the state they leave,
//! then the allocator's, merged into one operation per object.

use std::collections::HashMap;

use berth_proto::store::object::Kind;
use berth_proto::store::{Op, op};
use berth_proto::v1::{Network, Service, Task};

use crate::allocator;
use crate::orchestrator::orchestrate_timed;
use crate::scheduler::schedule_with;
use crate::scheduler::volumes::{keep_used, put_volume_name};
use crate::store::ClusterView;
use crate::store::ops::{put_task, target};

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
    plan_round_timed(view, networks, now_ms, new_id).0
}

/// [`plan_round_with`], and the earliest time a waiting decision falls due
/// (see [`orchestrate_timed`]).
pub fn plan_round_timed(
    view: &ClusterView,
    networks: &[Network],
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> (Vec<Op>, Option<i64>) {
    let (orchestrated, due) = orchestrate_timed(view, now_ms, new_id);
    let tasks = apply_to_tasks(view.tasks.clone(), &orchestrated);
    plan_rest(view, tasks, orchestrated, due, networks, now_ms, new_id)
}

/// [`plan_round_timed`] on a view the caller gives up: the orchestrator's
/// changes are applied to its task table in place, not to a copy. At 20,000
/// tasks each copy of the table is ~40 MB of decoded tasks; a round held three
/// at once (the view's, after the orchestrator, after the scheduler), the
/// leader's largest holder after the sessions while services were created.
pub fn plan_round_owned(
    mut view: ClusterView,
    networks: &[Network],
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> (Vec<Op>, Option<i64>) {
    let (orchestrated, due) = orchestrate_timed(&view, now_ms, new_id);
    let tasks = apply_to_tasks(std::mem::take(&mut view.tasks), &orchestrated);
    plan_rest(&view, tasks, orchestrated, due, networks, now_ms, new_id)
}

/// The scheduler and the allocator on `tasks` (the view's tasks after the
/// orchestrator's `orchestrated`), merged with those.
fn plan_rest(
    view: &ClusterView,
    tasks: Vec<Task>,
    orchestrated: Vec<Op>,
    due: Option<i64>,
    networks: &[Network],
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> (Vec<Op>, Option<i64>) {
    let mut scheduled = schedule_with(&view.nodes, &view.volumes, &tasks, now_ms, new_id);
    // The table after the placements, by reference: a copy of every task
    // for each round that placed one was a large part of the leader's memory
    // while a cluster converged.
    let placed = placed_tasks(&tasks, &scheduled);
    let services = latest_services(&view.services, &orchestrated);
    let allocation = allocator::allocate(allocator::Input {
        networks,
        nodes: &view.nodes,
        services: &services,
        before: &tasks,
        after: &placed,
    });
    drop(placed);
    if !allocation.unplace.is_empty() {
        scheduled.retain(|o| put_task(o).is_none_or(|t| !allocation.unplace.contains(&t.id)));
        keep_used(&mut scheduled);
    }
    let mut ops = merge(
        allocation
            .node_ops
            .into_iter()
            .chain(orchestrated)
            .chain(scheduled)
            .chain(allocation.ops),
    );
    // Volume writes first: a placement on a volume's node never commits
    // without (or before) the write that puts the volume there; the planner
    // stops a round at a refused transaction that holds one.
    ops.sort_by_key(|o| put_volume_name(o).is_none());
    (ops, due)
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

/// The task table as it will be once `ops` apply, by reference: the tasks
/// of `tasks` that `ops` leave alone, and the ops' own.
fn placed_tasks<'a>(tasks: &'a [Task], ops: &'a [Op]) -> Vec<&'a Task> {
    let mut out: Vec<&Task> = tasks.iter().collect();
    apply_ops(&mut out, ops, |t| t);
    out
}

/// The task table as it will be once `ops` apply (in place).
fn apply_to_tasks(mut out: Vec<Task>, ops: &[Op]) -> Vec<Task> {
    apply_ops(&mut out, ops, Task::clone);
    out
}

/// Applies the task puts and deletes of `ops` to `out` (tasks, or
/// references to them: `from` makes one of a put's).
fn apply_ops<'a, T: std::borrow::Borrow<Task>>(
    out: &mut Vec<T>,
    ops: &'a [Op],
    from: impl Fn(&'a Task) -> T,
) {
    if ops.is_empty() {
        return;
    }
    let mut index: HashMap<String, usize> = out
        .iter()
        .enumerate()
        .map(|(i, t)| (t.borrow().id.clone(), i))
        .collect();
    // New tasks grow the table once, to its size: doubling a vector of
    // 20,000 tasks copied it into twice the pages.
    let new = ops
        .iter()
        .filter_map(put_task)
        .filter(|task| !index.contains_key(&task.id))
        .count();
    out.reserve_exact(new);
    let mut gone = vec![false; out.len()];
    for o in ops {
        if let Some(task) = put_task(o) {
            match index.get(&task.id) {
                Some(&i) => out[i] = from(task),
                None => {
                    index.insert(task.id.clone(), out.len());
                    out.push(from(task));
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
    let mut i = 0;
    out.retain(|_| {
        i += 1;
        !gone[i - 1]
    });
}

/// One operation per object: a later put replaces an earlier one's object but
/// keeps its precondition (the version that was read).
pub(super) fn merge(ops: impl IntoIterator<Item = Op>) -> Vec<Op> {
    let mut out: Vec<Op> = Vec::new();
    let mut index: HashMap<(crate::store::Table, String), usize> = HashMap::new();
    for o in ops {
        let Some(key) = target(&o).map(|(table, id)| (table, id.to_string())) else {
            continue;
        };
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
