//! Scenarios of the orchestrator against a small in-memory store that checks
//! every compare-and-set like the real one.

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Op, op};
use berth_proto::v1::service_spec::Mode;
use berth_proto::v1::{
    GlobalMode, Node, NodeAvailability, NodeStatus, Placement, ReplicatedMode, Resources,
    RestartCondition, RestartPolicy, Service, ServiceSpec, Task, TaskState, UpdateConfig,
};

use super::task::observed;
use super::{ClusterView, orchestrate};

pub(crate) struct Sim {
    pub view: ClusterView,
    pub now: i64,
    next_id: u64,
    revision: u64,
}

impl Sim {
    pub fn new(nodes: Vec<Node>, services: Vec<Service>) -> Self {
        Sim {
            view: ClusterView {
                settings: Default::default(),
                nodes,
                services,
                tasks: Vec::new(),
                volumes: Vec::new(),
            },
            now: 1_000,
            next_id: 0,
            revision: 100,
        }
    }

    /// One orchestrator pass, applied; returns the ops.
    pub fn orchestrate(&mut self) -> Vec<Op> {
        let mut next = self.next_id;
        let ops = orchestrate(&self.view, self.now, &mut || {
            next += 1;
            format!("t{next:03}")
        });
        self.next_id = next;
        self.apply(&ops);
        ops
    }

    /// One scheduler pass, applied.
    pub fn schedule(&mut self) -> Vec<Op> {
        let ops = crate::scheduler::schedule(&self.view.nodes, &self.view.tasks, self.now);
        self.apply(&ops);
        ops
    }

    /// Applies task ops with the store's compare-and-set rules.
    pub fn apply(&mut self, ops: &[Op]) {
        for o in ops {
            self.revision += 1;
            match &o.op {
                Some(op::Op::Put(p)) => {
                    let kind = p.object.as_ref().and_then(|o| o.kind.clone());
                    if let Some(Kind::Service(mut s)) = kind {
                        assert_eq!(p.expect, Expect::Version as i32, "service put of {}", s.id);
                        let i = self
                            .view
                            .services
                            .iter()
                            .position(|x| x.id == s.id)
                            .expect("written service exists");
                        assert_eq!(
                            self.view.services[i].version, p.version,
                            "stale put of service {}",
                            s.id
                        );
                        s.version = self.revision;
                        self.view.services[i] = *s;
                        continue;
                    }
                    let Some(Kind::Task(mut t)) = kind else {
                        panic!("only tasks and services are written: {o:?}");
                    };
                    let at = self.view.tasks.iter().position(|x| x.id == t.id);
                    match (Expect::try_from(p.expect), at) {
                        (Ok(Expect::Absent), None) => {
                            t.version = self.revision;
                            self.view.tasks.push(*t);
                        }
                        (Ok(Expect::Version), Some(i)) => {
                            assert_eq!(
                                self.view.tasks[i].version, p.version,
                                "stale put of {}",
                                t.id
                            );
                            t.version = self.revision;
                            self.view.tasks[i] = *t;
                        }
                        other => panic!("bad put {other:?} for {}", t.id),
                    }
                }
                Some(op::Op::Delete(d)) if d.table == "service" => {
                    let i = self
                        .view
                        .services
                        .iter()
                        .position(|x| x.id == d.id)
                        .expect("deleted service exists");
                    assert_eq!(self.view.services[i].version, d.version);
                    self.view.services.remove(i);
                }
                Some(op::Op::Delete(d)) => {
                    assert_eq!(d.table, "task");
                    assert_eq!(d.expect, Expect::Version as i32);
                    let i = self
                        .view
                        .tasks
                        .iter()
                        .position(|x| x.id == d.id)
                        .expect("deleted task exists");
                    assert_eq!(self.view.tasks[i].version, d.version);
                    self.view.tasks.remove(i);
                }
                None => panic!("empty op"),
            }
        }
    }

    /// Agents: every assigned task desired to run is running (its health
    /// STARTING when its spec has a check), every task desired to stop has
    /// stopped; each change is stamped with the clock.
    pub fn agents_converge(&mut self) {
        let now = self.now;
        self.revision += 1;
        let up: std::collections::HashSet<String> = self
            .view
            .nodes
            .iter()
            .filter(|n| n.status == NodeStatus::Ready as i32)
            .map(|n| n.id.clone())
            .collect();
        for t in &mut self.view.tasks {
            if !up.contains(&t.node_id) {
                // No agent answers for a node that is down or gone.
                continue;
            }
            let state = observed(t);
            let checked = t.spec.as_ref().is_some_and(|s| s.healthcheck.is_some());
            let status = t.status.get_or_insert_with(Default::default);
            if t.desired_state == TaskState::Running as i32
                && !t.node_id.is_empty()
                && (TaskState::Assigned as i32..TaskState::Running as i32).contains(&state)
            {
                status.state = TaskState::Running as i32;
                status.timestamp_ms = now;
                if checked {
                    status.health = berth_proto::v1::TaskHealth::Starting as i32;
                }
            } else if t.desired_state > TaskState::Complete as i32
                && !t.node_id.is_empty()
                && state <= TaskState::Running as i32
            {
                status.state = TaskState::Shutdown as i32;
                status.timestamp_ms = now;
            }
            t.version = self.revision;
        }
    }

    /// An agent reports that `id` ended.
    pub fn end(&mut self, id: &str, state: TaskState, exit: Option<i32>) {
        let now = self.now;
        let t = self.task_mut(id);
        let status = t.status.get_or_insert_with(Default::default);
        status.state = state as i32;
        status.exit_code = exit;
        status.timestamp_ms = now;
    }

    pub fn task_mut(&mut self, id: &str) -> &mut Task {
        self.view
            .tasks
            .iter_mut()
            .find(|t| t.id == id)
            .expect("task exists")
    }

    pub fn task(&self, id: &str) -> &Task {
        self.view
            .tasks
            .iter()
            .find(|t| t.id == id)
            .expect("task exists")
    }

    /// Orchestrate, schedule and let agents act until nothing changes.
    pub fn settle(&mut self) {
        for _ in 0..20 {
            let a = self.orchestrate();
            let b = self.schedule();
            let before = self.view.tasks.clone();
            self.agents_converge();
            let agents_idle = before
                .iter()
                .zip(&self.view.tasks)
                .all(|(x, y)| x.status == y.status);
            if a.is_empty() && b.is_empty() && agents_idle {
                return;
            }
        }
        panic!("did not settle: {:#?}", self.view.tasks);
    }

    /// Tasks desired to run, by slot.
    pub fn live(&self, service: &str) -> Vec<(u64, String, String)> {
        let mut out: Vec<(u64, String, String)> = self
            .view
            .tasks
            .iter()
            .filter(|t| t.service_id == service && t.desired_state == TaskState::Running as i32)
            .map(|t| (t.slot, t.id.clone(), t.node_id.clone()))
            .collect();
        out.sort();
        out
    }
}

pub(crate) fn node(name: &str) -> Node {
    Node {
        id: format!("id-{name}"),
        name: name.into(),
        resources: Some(Resources {
            milli_cpus: 4_000,
            memory_bytes: 8 << 30,
            pids: 0,
        }),
        status: NodeStatus::Ready as i32,
        availability: NodeAvailability::Active as i32,
        ..Default::default()
    }
}

pub(crate) fn replicated(id: &str, replicas: u64) -> Service {
    Service {
        id: id.into(),
        spec: Some(ServiceSpec {
            name: format!("{id}-name"),
            image: "busybox:1".into(),
            mode: Some(Mode::Replicated(ReplicatedMode { replicas })),
            restart_policy: Some(RestartPolicy {
                condition: RestartCondition::Any as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        spec_version: 1,
        version: 1,
        ..Default::default()
    }
}

fn global(id: &str) -> Service {
    let mut s = replicated(id, 0);
    if let Some(spec) = s.spec.as_mut() {
        spec.mode = Some(Mode::Global(GlobalMode {}));
    }
    s
}

fn service_mut<'a>(sim: &'a mut Sim, id: &str) -> &'a mut Service {
    sim.view
        .services
        .iter_mut()
        .find(|s| s.id == id)
        .expect("service exists")
}

fn set_replicas(sim: &mut Sim, id: &str, replicas: u64) {
    let s = service_mut(sim, id);
    s.spec_version += 1;
    if let Some(spec) = s.spec.as_mut() {
        spec.mode = Some(Mode::Replicated(ReplicatedMode { replicas }));
    }
}

#[test]
fn scale_up_creates_pending_tasks_with_a_copy_of_the_spec() {
    let mut sim = Sim::new(vec![node("a")], vec![replicated("web", 3)]);
    let ops = sim.orchestrate();
    assert_eq!(ops.len(), 3);
    let mut slots = Vec::new();
    for t in &sim.view.tasks {
        assert_eq!(t.service_id, "web");
        assert_eq!(t.service_name, "web-name");
        assert_eq!(t.spec_version, 1);
        assert_eq!(t.spec, sim.view.services[0].spec);
        assert_eq!(t.desired_state, TaskState::Running as i32);
        assert_eq!(observed(t), TaskState::Pending as i32);
        assert!(t.node_id.is_empty());
        slots.push((t.slot, t.id.clone()));
    }
    assert_eq!(
        slots,
        vec![(1, "t001".into()), (2, "t002".into()), (3, "t003".into())]
    );
    // A second pass over the same state changes nothing.
    assert!(sim.orchestrate().is_empty());
}

#[test]
fn scale_down_stops_the_highest_slots() {
    let mut sim = Sim::new(vec![node("a"), node("b")], vec![replicated("web", 4)]);
    sim.settle();
    set_replicas(&mut sim, "web", 2);
    sim.orchestrate();
    let stopping: Vec<u64> = sim
        .view
        .tasks
        .iter()
        .filter(|t| t.desired_state == TaskState::Shutdown as i32)
        .map(|t| t.slot)
        .collect();
    assert_eq!(stopping, vec![3, 4]);
    sim.settle();
    assert_eq!(
        sim.live("web").iter().map(|l| l.0).collect::<Vec<_>>(),
        vec![1, 2]
    );
    // Scaling only bumped the spec version: nothing was replaced.
    assert_eq!(sim.view.tasks.len(), 4);
}

#[test]
fn a_failed_task_is_replaced_in_its_slot_after_the_delay() {
    let mut sim = Sim::new(vec![node("a")], vec![replicated("web", 2)]);
    if let Some(p) = service_mut(&mut sim, "web")
        .spec
        .as_mut()
        .and_then(|s| s.restart_policy.as_mut())
    {
        p.delay_ms = 5_000;
    }
    sim.settle();
    let (slot, id, _) = sim.live("web")[1].clone();
    sim.end(&id, TaskState::Failed, Some(1));
    sim.now += 4_999;
    assert!(sim.orchestrate().is_empty(), "the delay has not passed");
    sim.now += 1;
    let ops = sim.orchestrate();
    assert_eq!(ops.len(), 2, "old task stopped, new one created");
    assert_eq!(sim.task(&id).desired_state, TaskState::Shutdown as i32);
    sim.settle();
    let live = sim.live("web");
    assert_eq!(live.len(), 2);
    assert_eq!(live[1].0, slot);
    assert_ne!(live[1].1, id);
}

#[test]
fn on_failure_leaves_a_clean_exit_finished() {
    let mut sim = Sim::new(vec![node("a")], vec![replicated("job", 1)]);
    if let Some(p) = service_mut(&mut sim, "job")
        .spec
        .as_mut()
        .and_then(|s| s.restart_policy.as_mut())
    {
        p.condition = RestartCondition::OnFailure as i32;
    }
    sim.settle();
    let id = sim.live("job")[0].1.clone();
    sim.end(&id, TaskState::Complete, Some(0));
    sim.orchestrate();
    assert_eq!(sim.task(&id).desired_state, TaskState::Complete as i32);
    assert_eq!(sim.view.tasks.len(), 1, "no replacement");
    sim.settle();
    assert_eq!(sim.view.tasks.len(), 1);
}

#[test]
fn max_attempts_stops_a_crash_loop() {
    let mut sim = Sim::new(vec![node("a")], vec![replicated("web", 1)]);
    if let Some(p) = service_mut(&mut sim, "web")
        .spec
        .as_mut()
        .and_then(|s| s.restart_policy.as_mut())
    {
        p.max_attempts = 2;
    }
    sim.settle();
    for _ in 0..5 {
        if let Some((_, id, _)) = sim.live("web").first().cloned() {
            sim.end(&id, TaskState::Failed, Some(1));
        }
        sim.settle();
    }
    // The first task and two restarts.
    assert_eq!(sim.view.tasks.len(), 3);
    assert_eq!(
        sim.view
            .tasks
            .iter()
            .filter(|t| t.desired_state == TaskState::Complete as i32)
            .count(),
        1
    );
}

#[test]
fn tasks_of_down_drained_and_removed_nodes_are_replaced_elsewhere() {
    let mut sim = Sim::new(
        vec![node("a"), node("b"), node("c")],
        vec![replicated("web", 3)],
    );
    sim.settle();
    let on = |sim: &Sim, n: &str| {
        sim.live("web")
            .into_iter()
            .find(|l| l.2 == format!("id-{n}"))
            .expect("a task on the node")
    };
    let (slot_a, task_a, _) = on(&sim, "a");
    let (slot_b, task_b, _) = on(&sim, "b");
    let (slot_c, task_c, _) = on(&sim, "c");
    sim.view.nodes[0].status = NodeStatus::Down as i32;
    sim.view.nodes[1].availability = NodeAvailability::Drain as i32;
    sim.settle();
    assert_eq!(sim.task(&task_a).desired_state, TaskState::Shutdown as i32);
    assert_eq!(sim.task(&task_b).desired_state, TaskState::Shutdown as i32);
    let live = sim.live("web");
    assert_eq!(live.len(), 3);
    assert!(live.iter().all(|l| l.2 == "id-c"), "{live:?}");
    let mut slots: Vec<u64> = live.iter().map(|l| l.0).collect();
    slots.sort();
    let mut want = vec![slot_a, slot_b, slot_c];
    want.sort();
    assert_eq!(slots, want);

    // Node c leaves the cluster: its tasks are orphaned and replaced on a.
    sim.view.nodes[0].status = NodeStatus::Ready as i32;
    sim.view.nodes.remove(2);
    sim.settle();
    assert_eq!(observed(sim.task(&task_c)), TaskState::Orphaned as i32);
    assert!(sim.live("web").iter().all(|l| l.2 == "id-a"));
}

#[test]
fn a_removed_service_is_stopped_then_reaped() {
    let mut sim = Sim::new(
        vec![node("a")],
        vec![replicated("web", 2), replicated("big", 1)],
    );
    if let Some(spec) = service_mut(&mut sim, "big").spec.as_mut() {
        spec.placement = Some(Placement {
            constraints: vec!["node.labels.zone==nowhere".into()],
            ..Default::default()
        });
    }
    sim.settle();
    assert_eq!(sim.view.tasks.len(), 3);
    sim.view.services.clear();
    sim.orchestrate();
    assert!(
        sim.view
            .tasks
            .iter()
            .all(|t| t.desired_state == TaskState::Shutdown as i32)
    );
    // The never-placed task of "big" needs no agent to stop.
    let big: Vec<&Task> = sim
        .view
        .tasks
        .iter()
        .filter(|t| t.service_id == "big")
        .collect();
    assert_eq!(observed(big[0]), TaskState::Shutdown as i32);
    sim.settle();
    assert!(sim.view.tasks.is_empty(), "{:#?}", sim.view.tasks);
}

#[test]
fn history_is_kept_to_five_per_slot() {
    let mut sim = Sim::new(vec![node("a")], vec![replicated("web", 1)]);
    sim.settle();
    for _ in 0..8 {
        sim.now += 10;
        let id = sim.live("web")[0].1.clone();
        sim.end(&id, TaskState::Failed, Some(1));
        sim.settle();
    }
    // One running + five finished.
    assert_eq!(sim.view.tasks.len(), 6);
    assert_eq!(sim.live("web").len(), 1);
}

#[test]
fn a_spec_update_replaces_every_task_within_parallelism() {
    let mut sim = Sim::new(vec![node("a"), node("b")], vec![replicated("web", 4)]);
    sim.settle();
    let old: Vec<String> = sim.live("web").into_iter().map(|l| l.1).collect();
    {
        let s = service_mut(&mut sim, "web");
        s.spec_version = 2;
        if let Some(spec) = s.spec.as_mut() {
            spec.image = "busybox:2".into();
            spec.update_config = Some(UpdateConfig {
                parallelism: 1,
                ..Default::default()
            });
        }
    }
    sim.orchestrate();
    let stopping = old
        .iter()
        .filter(|id| sim.task(id).desired_state == TaskState::Shutdown as i32)
        .count();
    assert_eq!(stopping, 1, "parallelism 1");
    // Not running yet: the update waits.
    assert!(sim.orchestrate().is_empty());
    sim.settle();
    let live = sim.live("web");
    assert_eq!(live.len(), 4);
    for (_, id, _) in &live {
        assert!(!old.contains(id));
        assert_eq!(sim.task(id).spec_version, 2);
        assert_eq!(
            sim.task(id).spec.as_ref().map(|s| s.image.as_str()),
            Some("busybox:2")
        );
    }
}

#[test]
fn global_services_run_once_on_every_eligible_node() {
    let mut nodes = vec![node("a"), node("b"), node("c")];
    nodes[2].labels.insert("zone".into(), "x".into());
    let mut svc = global("mon");
    if let Some(spec) = svc.spec.as_mut() {
        spec.placement = Some(Placement {
            constraints: vec!["node.labels.zone!=x".into()],
            ..Default::default()
        });
    }
    let mut sim = Sim::new(nodes, vec![svc]);
    sim.orchestrate();
    let mut on: Vec<String> = sim.view.tasks.iter().map(|t| t.node_id.clone()).collect();
    on.sort();
    assert_eq!(on, vec!["id-a", "id-b"]);
    assert!(
        sim.view
            .tasks
            .iter()
            .all(|t| observed(t) == TaskState::Assigned as i32 && t.slot == 0)
    );
    assert!(sim.schedule().is_empty(), "no scheduling for global tasks");
    sim.settle();

    // A node joins; another is drained; a third goes down (its task stays).
    sim.view.nodes.push(node("d"));
    sim.view.nodes[0].availability = NodeAvailability::Drain as i32;
    sim.view.nodes[1].status = NodeStatus::Down as i32;
    sim.settle();
    let mut live: Vec<String> = sim.live("mon").into_iter().map(|l| l.2).collect();
    live.sort();
    assert_eq!(live, vec!["id-b", "id-d"]);
}

#[test]
fn a_failed_global_task_is_replaced_on_its_node() {
    let mut sim = Sim::new(vec![node("a")], vec![global("mon")]);
    sim.settle();
    let id = sim.live("mon")[0].1.clone();
    sim.end(&id, TaskState::Failed, Some(3));
    sim.settle();
    let live = sim.live("mon");
    assert_eq!(live.len(), 1);
    assert_ne!(live[0].1, id);
    assert_eq!(live[0].2, "id-a");
}

#[test]
fn two_tasks_in_one_slot_become_one() {
    let mut sim = Sim::new(vec![node("a")], vec![replicated("web", 1)]);
    sim.settle();
    let mut twin = sim.view.tasks[0].clone();
    twin.id = "twin".into();
    if let Some(ts) = twin.timestamps.as_mut() {
        ts.created_ms -= 1;
    }
    sim.view.tasks.push(twin);
    sim.orchestrate();
    assert_eq!(sim.task("twin").desired_state, TaskState::Shutdown as i32);
    assert_eq!(sim.live("web").len(), 1);
}

fn update_image(sim: &mut Sim, image: &str, order: berth_proto::v1::UpdateOrder) {
    let s = service_mut(sim, "web");
    s.spec_version += 1;
    if let Some(spec) = s.spec.as_mut() {
        spec.image = image.into();
        spec.update_config = Some(UpdateConfig {
            parallelism: 1,
            order: order as i32,
            ..Default::default()
        });
    }
}

#[test]
fn stop_first_refills_a_slot_only_once_the_old_task_ended() {
    let mut sim = Sim::new(vec![node("a")], vec![replicated("web", 1)]);
    sim.settle();
    let old = sim.live("web")[0].1.clone();
    update_image(
        &mut sim,
        "busybox:2",
        berth_proto::v1::UpdateOrder::StopFirst,
    );
    sim.orchestrate();
    assert_eq!(sim.task(&old).desired_state, TaskState::Shutdown as i32);
    assert_eq!(
        sim.view.tasks.len(),
        1,
        "no replacement while the old one runs"
    );
    assert!(sim.orchestrate().is_empty());
    sim.end(&old, TaskState::Shutdown, Some(0));
    sim.orchestrate();
    assert_eq!(sim.view.tasks.len(), 2);
    assert_eq!(sim.live("web").len(), 1);

    // A node that went down cannot report the stop: no waiting for it.
    let new = sim.live("web")[0].1.clone();
    sim.settle();
    update_image(
        &mut sim,
        "busybox:3",
        berth_proto::v1::UpdateOrder::StopFirst,
    );
    sim.orchestrate();
    assert_eq!(sim.task(&new).desired_state, TaskState::Shutdown as i32);
    sim.view.nodes[0].status = NodeStatus::Down as i32;
    sim.orchestrate();
    assert_eq!(sim.live("web").len(), 1, "replacement created");
}

#[test]
fn start_first_creates_the_replacement_at_once() {
    let mut sim = Sim::new(vec![node("a")], vec![replicated("web", 1)]);
    sim.settle();
    update_image(
        &mut sim,
        "busybox:2",
        berth_proto::v1::UpdateOrder::StartFirst,
    );
    sim.orchestrate();
    assert_eq!(sim.view.tasks.len(), 2);
    // The old task runs until its replacement does.
    assert_eq!(sim.live("web").len(), 2);
    sim.settle();
    assert_eq!(sim.live("web").len(), 1);
    assert_eq!(sim.task(&sim.live("web")[0].1).spec_version, 2);
}

fn one_off(id: &str, auto_remove: bool) -> Service {
    let mut service = replicated(id, 1);
    if let Some(spec) = service.spec.as_mut() {
        spec.one_off = true;
        spec.auto_remove = auto_remove;
        spec.restart_policy = Some(RestartPolicy {
            condition: RestartCondition::None as i32,
            ..Default::default()
        });
    }
    service
}

#[test]
fn an_auto_removed_one_off_goes_with_its_task_once_it_ended() {
    let mut sim = Sim::new(
        vec![node("a")],
        vec![one_off("rm", true), one_off("keep", false)],
    );
    sim.settle();
    let (_, rm, _) = sim.live("rm")[0].clone();
    let (_, keep, _) = sim.live("keep")[0].clone();
    assert!(sim.orchestrate().is_empty(), "running: nothing to do");
    sim.end(&rm, TaskState::Failed, Some(3));
    sim.end(&keep, TaskState::Complete, Some(0));
    let ops = sim.orchestrate();
    let deletes = ops
        .iter()
        .filter(|o| matches!(&o.op, Some(op::Op::Delete(_))))
        .count();
    assert_eq!(deletes, 2, "the ended --rm one-off and its task: {ops:?}");
    assert!(sim.view.services.iter().all(|s| s.id != "rm"));
    assert!(sim.view.tasks.iter().all(|t| t.service_id != "rm"));
    // Without --rm it stays, ended, and is not restarted.
    sim.settle();
    let kept: Vec<_> = sim
        .view
        .tasks
        .iter()
        .filter(|t| t.service_id == "keep")
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].id, keep);
    assert!(sim.view.services.iter().any(|s| s.id == "keep"));
}

#[test]
fn a_one_off_runs_once_whatever_happens_to_its_node() {
    let mut sim = Sim::new(
        vec![node("a"), node("b")],
        vec![one_off("down", false), one_off("drained", false)],
    );
    sim.settle();
    let (_, down, down_node) = sim.live("down")[0].clone();
    let (_, drained, drained_node) = sim.live("drained")[0].clone();
    let down_index = sim
        .view
        .nodes
        .iter()
        .position(|n| n.id == down_node)
        .expect("node");
    sim.view.nodes[down_index].status = NodeStatus::Down as i32;
    sim.settle();
    // Its node is down: the task is left to it, nothing runs it elsewhere.
    assert_eq!(sim.task(&down).desired_state, TaskState::Running as i32);
    sim.view.nodes[down_index].status = NodeStatus::Ready as i32;
    let drained_index = sim
        .view
        .nodes
        .iter()
        .position(|n| n.id == drained_node)
        .expect("node");
    sim.view.nodes[drained_index].availability = NodeAvailability::Drain as i32;
    sim.settle();
    // Drained: stopped, and not replaced.
    assert_eq!(sim.task(&drained).desired_state, TaskState::Shutdown as i32);
    for service in ["down", "drained"] {
        let tasks = sim
            .view
            .tasks
            .iter()
            .filter(|t| t.service_id == service)
            .count();
        assert_eq!(tasks, 1, "{service}: one task, ever");
    }
}
