//! Placement: which node runs each PENDING task. A plain function of the nodes
//! and tasks to store operations; the leader loop commits them.
//!
//! Filters (ready and active, constraints, free reservations, free host ports),
//! then scoring (spread a service over nodes, then least allocated, then fewest tasks in all). Identical
//! tasks (same service and spec version) are placed in one pass. A task that
//! fits nowhere stays PENDING with a message that says why, aggregated over the
//! nodes checked. A task that mounts a named volume goes only to the volume's
//! node (`volumes.rs`).

pub mod constraint;
pub mod filter;
pub mod resources;
pub mod score;
pub mod spread;
pub mod volumes;

#[cfg(test)]
mod proptests;

use std::borrow::Borrow;
use std::collections::HashMap;

use berth_proto::store::{Expect, Op};
use berth_proto::v1::{Node, Task, TaskState, TaskStatus, Volume};
use tracing::{debug, info};

use crate::orchestrator::task::{is_terminal, observed, wants_running, wrap};
use crate::store::put;
use filter::{Request, explain, static_check};
use resources::{Demand, NodeLoad, host_ports};
use score::Candidates;
use volumes::VolumeBook;

/// [`schedule_with`] on a cluster without volume records (a task that mounts
/// a volume makes it, with an id of `ids::new_id`).
pub fn schedule(nodes: &[Node], tasks: &[Task], now_ms: i64) -> Vec<Op> {
    schedule_with(nodes, &[], tasks, now_ms, &mut crate::ids::new_id)
}

/// Places every PENDING task without a node (desired to run) on `nodes`,
/// accounting for the non-terminal tasks already placed. Returns puts at the
/// version read: placed tasks become ASSIGNED with their node; the others get a
/// message saying why they wait (written only when it changes). A task that
/// mounts named volumes goes to their node; the volumes its placement made or
/// put on a node (and those it mounts) are written too, first in the list.
pub fn schedule_with<T: Borrow<Task>>(
    nodes: &[Node],
    volumes: &[Volume],
    tasks: &[T],
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<Op> {
    // Most rounds place nothing (tasks report their states): then there are
    // no loads to add up, which at 20,000 tasks was most of a round's work.
    if !tasks.iter().map(Borrow::borrow).any(placeable) {
        return Vec::new();
    }
    let mut book = VolumeBook::new(volumes);
    let mut loads: Vec<NodeLoad> = nodes.iter().map(NodeLoad::new).collect();
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut pending: Vec<&Task> = Vec::new();
    for task in tasks.iter().map(Borrow::borrow) {
        let state = observed(task);
        if task.node_id.is_empty() {
            if placeable(task) {
                pending.push(task);
            }
        } else if !is_terminal(state)
            && let Some(&i) = index.get(task.node_id.as_str())
        {
            let spec = task.spec.as_ref();
            loads[i].add(&task.service_id, Demand::of(spec), &host_ports(spec));
        }
    }
    pending.sort_by(|a, b| {
        (&a.service_id, a.spec_version, a.slot, &a.id).cmp(&(
            &b.service_id,
            b.spec_version,
            b.slot,
            &b.id,
        ))
    });
    let mut ops = Vec::new();
    for batch in
        pending.chunk_by(|a, b| a.service_id == b.service_id && a.spec_version == b.spec_version)
    {
        let mut placing = Placing {
            nodes,
            loads: &mut loads,
            book: &mut book,
            now_ms,
            new_id: &mut *new_id,
        };
        placing.batch(batch, &mut ops);
    }
    let mut all = book.ops();
    all.extend(ops);
    all
}

/// A task the scheduler places: PENDING, on no node, desired to run.
fn placeable(task: &Task) -> bool {
    task.node_id.is_empty() && observed(task) == TaskState::Pending as i32 && wants_running(task)
}

/// What placing one batch works on.
struct Placing<'a, 'b> {
    nodes: &'a [Node],
    loads: &'a mut [NodeLoad],
    book: &'a mut VolumeBook,
    now_ms: i64,
    new_id: &'a mut (dyn FnMut() -> String + 'b),
}

impl Placing<'_, '_> {
    /// Places a batch of identical tasks; once one does not fit, none of the rest
    /// does either (the nodes only fill up).
    fn batch(&mut self, batch: &[&Task], ops: &mut Vec<Op>) {
        let (nodes, now_ms) = (self.nodes, self.now_ms);
        let Some(first) = batch.first() else {
            return;
        };
        let spec = first.spec.as_ref();
        let volume_names = spec
            .map(berth_proto::mounts::volume_names)
            .unwrap_or_default();
        let pinned = match self.book.pin(&volume_names, nodes) {
            Ok(pinned) => pinned,
            Err(why) => {
                for task in batch {
                    wait(task, &format!("cannot be placed: {why}"), now_ms, ops);
                }
                return;
            }
        };
        let (constraints, preferences) = match spec.map(placement_rules).transpose() {
            Ok(rules) => rules.unwrap_or_default(),
            Err(err) => {
                for task in batch {
                    wait(task, &format!("cannot be placed: {err}"), now_ms, ops);
                }
                return;
            }
        };
        let ports = host_ports(spec);
        let request = Request {
            constraints: &constraints,
            demand: Demand::of(spec),
            ports: &ports,
            service_id: &first.service_id,
            max_per_node: spec
                .and_then(|s| s.placement.as_ref())
                .map_or(0, |p| p.max_replicas_per_node),
        };
        // A volume's node is the only one its tasks may go to.
        let (considered, pin_prefix) = match pinned {
            Some(i) => {
                let volume = volumes::pinning_volume(self.book, &volume_names);
                if let Some(why) = volumes::unavailable(volume, &nodes[i]) {
                    for task in batch {
                        wait(task, &why, now_ms, ops);
                    }
                    return;
                }
                let prefix = format!(
                    "volume {volume} is on node {}: ",
                    volumes::node_name(&nodes[i])
                );
                (i..i + 1, prefix)
            }
            None => (0..nodes.len(), String::new()),
        };
        let eligible = considered
            .clone()
            .filter(|&i| static_check(&nodes[i], &request).is_ok())
            .collect();
        let loads = &mut *self.loads;
        let mut candidates =
            Candidates::new(eligible, loads, &first.service_id).spread_over(nodes, &preferences);
        for (done, task) in batch.iter().enumerate() {
            let Some(pos) = candidates.pick(loads, &request) else {
                let why = explain(
                    &nodes[considered.clone()],
                    &loads[considered.clone()],
                    &request,
                )
                .unwrap_or_else(|| "no node fits right now".to_string());
                let why = format!("{pin_prefix}{why}");
                info!(
                    service = %first.service_id,
                    spec_version = first.spec_version,
                    tasks = batch.len() - done,
                    reason = %why,
                    "tasks stay pending"
                );
                for task in &batch[done..] {
                    wait(task, &why, now_ms, ops);
                }
                return;
            };
            let node = candidates.nodes[pos];
            candidates.placed(pos);
            loads[node].add(&task.service_id, request.demand, &ports);
            let node = &nodes[node];
            if let Some(spec) = spec {
                self.book.placed(spec, node, now_ms, &mut *self.new_id);
            }
            debug!(task = %task.id, service = %task.service_id, node = %node.id, "task assigned");
            let mut placed = (*task).clone();
            placed.node_id = node.id.clone();
            placed.status = Some(TaskStatus {
                state: TaskState::Assigned as i32,
                message: format!("assigned to node {}", display_name(node)),
                timestamp_ms: now_ms,
                ..Default::default()
            });
            touch(&mut placed, now_ms);
            ops.push(put(wrap(placed), Expect::Version, task.version));
            if pinned.is_none() && !volume_names.is_empty() {
                // The first task put its volumes on a node: the rest of the
                // batch is pinned there now.
                return self.batch(&batch[done + 1..], ops);
            }
        }
    }
}

/// A spec's constraints and the labels its preferences spread over.
fn placement_rules(
    spec: &berth_proto::v1::ServiceSpec,
) -> Result<(Vec<constraint::Constraint>, Vec<String>), String> {
    let constraints = constraint::parse_all(spec).map_err(|e| e.to_string())?;
    let preferences = spread::parse_all(spec).map_err(|e| e.to_string())?;
    Ok((constraints, preferences))
}

/// Leaves a task PENDING with `why` as its message (no write when unchanged).
fn wait(task: &Task, why: &str, now_ms: i64, ops: &mut Vec<Op>) {
    if task.status.as_ref().is_some_and(|s| s.message == why) {
        return;
    }
    let mut waiting = task.clone();
    let status = waiting.status.get_or_insert_with(Default::default);
    status.state = TaskState::Pending as i32;
    status.message = why.to_string();
    touch(&mut waiting, now_ms);
    ops.push(put(wrap(waiting), Expect::Version, task.version));
}

fn touch(task: &mut Task, now_ms: i64) {
    let ts = task.timestamps.get_or_insert_with(Default::default);
    if ts.created_ms == 0 {
        ts.created_ms = now_ms;
    }
    ts.updated_ms = now_ms;
}

fn display_name(node: &Node) -> &str {
    if node.name.is_empty() {
        &node.id
    } else {
        &node.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::store::object::Kind;
    use berth_proto::store::op;
    use berth_proto::v1::{
        NodeAvailability, NodeStatus, Placement, ResourceRequirements, Resources, ServiceSpec,
    };

    pub(crate) fn node(name: &str, cpu: u64, mem: u64) -> Node {
        Node {
            id: format!("id-{name}"),
            name: name.into(),
            resources: Some(Resources {
                milli_cpus: cpu,
                memory_bytes: mem,
                pids: 0,
            }),
            status: NodeStatus::Ready as i32,
            availability: NodeAvailability::Active as i32,
            ..Default::default()
        }
    }

    fn spec(cpu: u64, mem: u64, constraints: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            resources: Some(ResourceRequirements {
                reservations: Some(Resources {
                    milli_cpus: cpu,
                    memory_bytes: mem,
                    pids: 0,
                }),
                limits: None,
            }),
            placement: Some(Placement {
                constraints: constraints.iter().map(|c| c.to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub(crate) fn pending(id: &str, service: &str, slot: u64, spec: &ServiceSpec) -> Task {
        Task {
            id: id.into(),
            service_id: service.into(),
            slot,
            spec: Some(spec.clone()),
            spec_version: 1,
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                state: TaskState::Pending as i32,
                ..Default::default()
            }),
            version: 3,
            ..Default::default()
        }
    }

    fn written(ops: &[Op]) -> Vec<(Task, i32, u64)> {
        ops.iter()
            .map(|o| match &o.op {
                Some(op::Op::Put(p)) => match p.object.as_ref().and_then(|o| o.kind.clone()) {
                    Some(Kind::Task(t)) => (*t, p.expect, p.version),
                    other => panic!("not a task: {other:?}"),
                },
                other => panic!("not a put: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn spreads_a_batch_and_sets_assigned_with_the_version_read() {
        let nodes = vec![node("a", 4000, 8 << 30), node("b", 4000, 8 << 30)];
        let s = spec(100, 1 << 20, &[]);
        let tasks: Vec<Task> = (1..=4)
            .map(|i| pending(&format!("t{i}"), "web", i, &s))
            .collect();
        let out = written(&schedule(&nodes, &tasks, 42));
        assert_eq!(out.len(), 4);
        let on_a = out.iter().filter(|(t, _, _)| t.node_id == "id-a").count();
        assert_eq!(on_a, 2);
        for (t, expect, version) in &out {
            assert_eq!(*expect, Expect::Version as i32);
            assert_eq!(*version, 3);
            let status = t.status.as_ref().expect("status");
            assert_eq!(status.state, TaskState::Assigned as i32);
            assert_eq!(status.timestamp_ms, 42);
            assert!(
                status.message.starts_with("assigned to node "),
                "{}",
                status.message
            );
        }
    }

    #[test]
    fn services_that_reserve_nothing_spread_over_all_nodes() {
        let nodes = vec![
            node("a", 1000, 1 << 30),
            node("b", 1000, 1 << 30),
            node("c", 1000, 1 << 30),
        ];
        let s = spec(0, 0, &[]);
        // Six one-replica services placed in one round, as a stack deploy does.
        let tasks: Vec<Task> = (1..=6)
            .map(|i| pending(&format!("t{i}"), &format!("svc{i}"), 1, &s))
            .collect();
        let out = written(&schedule(&nodes, &tasks, 1));
        for id in ["id-a", "id-b", "id-c"] {
            let here = out.iter().filter(|(t, _, _)| t.node_id == id).count();
            assert_eq!(here, 2, "two tasks on {id}: {out:?}");
        }
    }

    #[test]
    fn existing_tasks_count_for_resources_and_spread() {
        let nodes = vec![node("a", 1000, 8 << 30), node("b", 1000, 8 << 30)];
        let s = spec(600, 0, &[]);
        let mut running = pending("r1", "web", 1, &s);
        running.node_id = "id-a".into();
        running.status.as_mut().expect("status").state = TaskState::Running as i32;
        // A terminal task on b reserves nothing.
        let mut dead = pending("d1", "web", 2, &s);
        dead.node_id = "id-b".into();
        dead.status.as_mut().expect("status").state = TaskState::Failed as i32;
        let tasks = vec![
            running,
            dead,
            pending("t2", "web", 2, &s),
            pending("t3", "web", 3, &s),
        ];
        let out = written(&schedule(&nodes, &tasks, 1));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0.id, "t2");
        assert_eq!(out[0].0.node_id, "id-b");
        // t3 fits nowhere: 600 of 1000 are taken on both.
        assert_eq!(out[1].0.id, "t3");
        let status = out[1].0.status.as_ref().expect("status");
        assert_eq!(status.state, TaskState::Pending as i32);
        assert_eq!(status.message, "no node has 0.6 CPUs free: 2 nodes checked");
        assert!(out[1].0.node_id.is_empty());
    }

    #[test]
    fn an_unchanged_reason_is_not_written_again() {
        let nodes = vec![node("a", 1000, 1 << 30)];
        let s = spec(0, 4 << 30, &[]);
        let mut t = pending("t1", "web", 1, &s);
        let out = written(&schedule(&nodes, std::slice::from_ref(&t), 1));
        let msg = out[0].0.status.as_ref().expect("status").message.clone();
        assert_eq!(msg, "no node has 4 GiB of memory free: 1 node checked");
        t.status.as_mut().expect("status").message = msg;
        assert!(schedule(&nodes, &[t], 2).is_empty());
    }

    #[test]
    fn constraints_pick_the_node_and_bad_ones_are_reported() {
        let mut nodes = vec![node("a", 1000, 1 << 30), node("b", 1000, 1 << 30)];
        nodes[1].labels.insert("zone".into(), "b".into());
        let s = spec(0, 0, &["node.labels.zone==b"]);
        let out = written(&schedule(&nodes, &[pending("t1", "web", 1, &s)], 1));
        assert_eq!(out[0].0.node_id, "id-b");
        let bad = spec(0, 0, &["zone=b"]);
        let out = written(&schedule(&nodes, &[pending("t1", "web", 1, &bad)], 1));
        let status = out[0].0.status.as_ref().expect("status");
        assert_eq!(status.state, TaskState::Pending as i32);
        assert_eq!(
            status.message,
            "cannot be placed: constraint \"zone=b\" is not KEY==VALUE or KEY!=VALUE"
        );
    }

    #[test]
    fn only_pending_tasks_without_a_node_that_should_run_are_placed() {
        let nodes = vec![node("a", 1000, 1 << 30)];
        let s = spec(0, 0, &[]);
        let mut new = pending("n", "web", 1, &s);
        new.status.as_mut().expect("status").state = TaskState::New as i32;
        let mut stopping = pending("s", "web", 2, &s);
        stopping.desired_state = TaskState::Shutdown as i32;
        assert!(schedule(&nodes, &[new, stopping], 1).is_empty());
    }

    #[test]
    fn no_ready_node_is_said_plainly() {
        let mut nodes = vec![node("a", 1000, 1 << 30)];
        nodes[0].status = NodeStatus::Down as i32;
        let s = spec(0, 0, &[]);
        let out = written(&schedule(&nodes, &[pending("t", "web", 1, &s)], 1));
        assert_eq!(
            out[0].0.status.as_ref().expect("status").message,
            "no node is ready and active: 1 node checked"
        );
    }
}
