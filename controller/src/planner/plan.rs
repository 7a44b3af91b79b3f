//! One round of the leader's planning as a plain function of the cluster state:
//! the orchestrator's operations, then the scheduler's on the state they leave,
//! then the allocator's, merged into one operation per object.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};

use berth_proto::net::Ipv4Prefix;
use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Op, op};
use berth_proto::v1::{Network, Service, Task};

use crate::allocator;
use crate::orchestrator::orchestrate_timed;
use crate::orchestrator::task::wrap;
use crate::scheduler::schedule_with;
use crate::scheduler::volumes::{keep_used, put_volume_name};
use crate::store::ClusterView;
use crate::store::ops::{put, put_task, put_task_mut, target};

/// [`plan_round_with`] on a cluster without networks: tasks get no overlay
/// addresses unless their spec names a network, which then does not exist.
pub fn plan_round<T: Borrow<Task>>(
    view: &ClusterView<T>,
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<Op> {
    plan_round_with(view, &[], now_ms, new_id)
}

/// The orchestrator's operations, then the scheduler's on the state they leave,
/// then the allocator's on the state those leave, merged into one operation per
/// object (a task the orchestrator creates, the scheduler places and the
/// allocator addresses is one create). A placement whose task gets no address
/// is dropped: the task stays PENDING with the reason. Changed node block
/// lists come first, so they tend to commit with or before their tasks.
pub fn plan_round_with<T: Borrow<Task>>(
    view: &ClusterView<T>,
    networks: &[Network],
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<Op> {
    plan_round_timed(view, networks, now_ms, new_id).0
}

/// [`plan_round_with`], and the earliest time a waiting decision falls due
/// (see [`orchestrate_timed`]).
///
/// Each stage reads the task table as the stages before it leave it, by
/// reference: the view's tasks that their operations leave alone, and the
/// operations' own. At 20,000 tasks a copy of the table is ~40 MB of decoded
/// tasks; rounds that copied it per stage were the leader's largest holder
/// while a cluster converged.
pub fn plan_round_timed<T: Borrow<Task>>(
    view: &ClusterView<T>,
    networks: &[Network],
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> (Vec<Op>, Option<i64>) {
    let (orchestrated, due) = orchestrate_timed(view, now_ms, new_id);
    let tasks = placed_tasks(view.tasks.iter().map(Borrow::borrow), &orchestrated);
    let mut scheduled = schedule_with(&view.nodes, &view.volumes, &tasks, now_ms, new_id);
    let placed = placed_tasks(tasks.iter().copied(), &scheduled);
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
    add_addresses(
        &mut ops,
        allocation.addresses,
        view.tasks.iter().map(Borrow::borrow),
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
            *slot = (**s).clone();
        }
    }
    out
}

/// The task table as it will be once `ops` apply, by reference: the tasks
/// of `tasks` that `ops` leave alone, and the ops' own.
fn placed_tasks<'a>(tasks: impl Iterator<Item = &'a Task>, ops: &'a [Op]) -> Vec<&'a Task> {
    let mut out: Vec<&Task> = tasks.collect();
    if ops.is_empty() {
        return out;
    }
    let mut index: HashMap<&str, usize> = out
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut gone = vec![false; out.len()];
    for o in ops {
        if let Some(task) = put_task(o) {
            match index.get(task.id.as_str()) {
                Some(&i) => out[i] = task,
                None => {
                    index.insert(&task.id, out.len());
                    out.push(task);
                    gone.push(false);
                }
            }
        } else if let Some(op::Op::Delete(d)) = &o.op
            && d.table == "task"
            && let Some(&i) = index.get(d.id.as_str())
        {
            gone[i] = true;
        }
    }
    let mut i = 0;
    out.retain(|_| {
        i += 1;
        !gone[i - 1]
    });
    out
}

/// Adds the allocator's new addresses to the tasks as the round leaves them:
/// to the round's own put of a task, or else to a put of the task as `read`
/// (at the version read).
fn add_addresses<'a>(
    ops: &mut Vec<Op>,
    addresses: Vec<(String, BTreeMap<String, Ipv4Prefix>)>,
    read: impl Iterator<Item = &'a Task>,
) {
    if addresses.is_empty() {
        return;
    }
    let mut own = Vec::new();
    let mut others: HashMap<String, BTreeMap<String, Ipv4Prefix>> = HashMap::new();
    {
        let index: HashMap<&str, usize> = ops
            .iter()
            .enumerate()
            .filter_map(|(i, o)| put_task(o).map(|t| (t.id.as_str(), i)))
            .collect();
        for (id, new) in addresses {
            match index.get(id.as_str()) {
                Some(&i) => own.push((i, new)),
                None => {
                    others.insert(id, new);
                }
            }
        }
    }
    for (i, new) in own {
        if let Some(task) = put_task_mut(&mut ops[i]) {
            task.addresses.extend(new);
        }
    }
    for task in read {
        if others.is_empty() {
            break;
        }
        if let Some(new) = others.remove(&task.id) {
            let mut task = task.clone();
            let version = task.version;
            task.addresses.extend(new);
            ops.push(put(wrap(task), Expect::Version, version));
        }
    }
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
