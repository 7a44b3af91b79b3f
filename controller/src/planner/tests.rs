//! The leader's pure planning, its batching, and the loop itself on a real
//! one-member Raft cluster.

use std::time::Duration;

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object, Op, op};
use berth_proto::v1::service_spec::Mode;
use berth_proto::v1::{
    Node, NodeAvailability, NodeStatus, ReplicatedMode, Resources, RestartCondition, RestartPolicy,
    Service, ServiceSpec, Task, TaskState, TaskStatus,
};

use super::plan::merge;
use super::*;
use crate::raft::RaftHandle;
use crate::store::commit::batches;
use crate::store::{ClusterView, put, read_view};
use berth_proto::store::Txn;
use prost::Message as _;

fn node(name: &str) -> Node {
    Node {
        id: format!("id-{name}"),
        name: name.into(),
        resources: Some(Resources {
            milli_cpus: 2_000,
            memory_bytes: 4 << 30,
            pids: 0,
        }),
        status: NodeStatus::Ready as i32,
        availability: NodeAvailability::Active as i32,
        ..Default::default()
    }
}

fn service(replicas: u64) -> Service {
    Service {
        id: "svc1".into(),
        spec: Some(ServiceSpec {
            name: "web".into(),
            image: "busybox".into(),
            mode: Some(Mode::Replicated(ReplicatedMode { replicas })),
            restart_policy: Some(RestartPolicy {
                condition: RestartCondition::Any as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        spec_version: 1,
        ..Default::default()
    }
}

fn tasks_of(ops: &[Op]) -> Vec<(Task, i32)> {
    ops.iter()
        .filter_map(|o| match &o.op {
            Some(op::Op::Put(p)) => match p.object.as_ref().and_then(|o| o.kind.clone()) {
                Some(Kind::Task(t)) => Some((*t, p.expect)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn a_round_creates_and_places_in_one_operation_per_task() {
    let view: ClusterView = ClusterView {
        settings: Default::default(),
        nodes: vec![node("a"), node("b"), node("c")],
        services: vec![service(3)],
        tasks: Vec::new(),
        volumes: Vec::new(),
    };
    let mut n = 0;
    let ops = plan_round(&view, 7, &mut || {
        n += 1;
        format!("t{n}")
    });
    let tasks = tasks_of(&ops);
    assert_eq!(ops.len(), 3);
    let mut nodes: Vec<String> = tasks.iter().map(|(t, _)| t.node_id.clone()).collect();
    nodes.sort();
    assert_eq!(nodes, vec!["id-a", "id-b", "id-c"]);
    for (t, expect) in &tasks {
        assert_eq!(*expect, Expect::Absent as i32);
        assert_eq!(
            t.status.as_ref().map(|s| s.state),
            Some(TaskState::Assigned as i32)
        );
    }
}

#[test]
fn merge_keeps_the_first_precondition_and_the_last_object() {
    let task = |id: &str, node: &str| Object {
        kind: Some(Kind::Task(Box::new(Task {
            id: id.into(),
            node_id: node.into(),
            ..Default::default()
        }))),
    };
    let ops = vec![
        put(task("a", ""), Expect::Version, 4),
        put(task("b", ""), Expect::Absent, 0),
        put(task("a", "n1"), Expect::Version, 4),
        put(task("b", "n2"), Expect::Version, 0),
    ];
    let merged = merge(ops);
    assert_eq!(merged.len(), 2);
    let tasks = tasks_of(&merged);
    assert_eq!(
        (tasks[0].0.node_id.as_str(), tasks[0].1),
        ("n1", Expect::Version as i32)
    );
    assert_eq!(
        (tasks[1].0.node_id.as_str(), tasks[1].1),
        ("n2", Expect::Absent as i32)
    );
}

#[test]
fn a_rollout_status_and_a_vip_are_one_put_of_the_service() {
    use berth_proto::v1::update_status::State;
    use berth_proto::v1::{Network, UpdateStatus};
    let mut svc = service(1);
    svc.version = 7;
    svc.spec_version = 2;
    if let Some(spec) = svc.spec.as_mut() {
        spec.networks = vec!["front".into()];
    }
    svc.update_status = Some(UpdateStatus {
        state: State::Updating as i32,
        from_version: 1,
        to_version: 2,
        started_ms: 1_000,
        progress_ms: 1_000,
        ..Default::default()
    });
    let task = Task {
        id: "t1".into(),
        service_id: svc.id.clone(),
        slot: 1,
        node_id: "id-a".into(),
        spec: svc.spec.clone(),
        spec_version: 2,
        desired_state: TaskState::Running as i32,
        status: Some(TaskStatus {
            state: TaskState::Running as i32,
            timestamp_ms: 1_000,
            ..Default::default()
        }),
        version: 3,
        ..Default::default()
    };
    let view: ClusterView = ClusterView {
        settings: Default::default(),
        nodes: vec![node("a")],
        services: vec![svc],
        tasks: vec![task],
        volumes: Vec::new(),
    };
    let network = Network {
        id: "net-front".into(),
        name: "front".into(),
        subnet: "10.20.0.0/16".into(),
        vxlan_id: 4097,
        version: 1,
        ..Default::default()
    };
    // Past the monitor window: the orchestrator completes the rollout, the
    // allocator gives the service its VIP, in one put at the version read.
    let ops = plan_round_with(&view, &[network], 60_000, &mut || "new".to_string());
    let services: Vec<(Service, i32, u64)> = ops
        .iter()
        .filter_map(|o| match &o.op {
            Some(op::Op::Put(p)) => match p.object.as_ref().and_then(|o| o.kind.clone()) {
                Some(Kind::Service(s)) => Some((*s, p.expect, p.version)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(services.len(), 1, "{ops:#?}");
    let (written, expect, version) = &services[0];
    assert_eq!((*expect, *version), (Expect::Version as i32, 7));
    assert!(written.virtual_ips.contains_key("front"));
    assert_eq!(
        written.update_status.as_ref().map(|s| s.state),
        Some(State::Completed as i32)
    );
}

#[test]
fn batches_respect_count_and_size() {
    let ops: Vec<Op> = (0..450)
        .map(|i| {
            put(
                Object {
                    kind: Some(Kind::Task(Box::new(Task {
                        id: format!("t{i}"),
                        ..Default::default()
                    }))),
                },
                Expect::Absent,
                0,
            )
        })
        .collect();
    let sizes: Vec<usize> = batches(ops.clone(), 200, usize::MAX)
        .iter()
        .map(|t| t.ops.len())
        .collect();
    assert_eq!(sizes, vec![200, 200, 50]);
    let one = ops[0].encoded_len() + 4;
    let sizes: Vec<usize> = batches(ops, 200, one * 10)
        .iter()
        .map(|t| t.ops.len())
        .collect();
    assert!(sizes.iter().all(|n| *n <= 10), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 450);
}

#[test]
fn only_changes_a_round_neither_read_nor_made_call_for_another() {
    let (tx, events) = tokio::sync::broadcast::channel(16);
    let mut watched = Watched {
        events,
        open: true,
        live: Some(LiveView::default()),
        own_through: 0,
    };
    let event = |revision| {
        std::sync::Arc::new(berth_proto::v1::WatchEvent {
            time_ms: 0,
            revision,
            ..Default::default()
        })
    };
    let outcome = RoundOutcome {
        read_revision: 10,
        own_revisions: vec![11, 12],
        ..Default::default()
    };
    for r in [9, 10, 11, 12] {
        tx.send(event(r)).expect("send");
    }
    assert!(!watched.drain(Some(&outcome)));
    for r in [11, 13] {
        tx.send(event(r)).expect("send");
    }
    assert!(watched.drain(Some(&outcome)));
    assert!(!watched.drain(Some(&outcome)), "drained");
    assert_eq!(
        watched.live.as_ref().map(LiveView::revision),
        Some(13),
        "the view took the changes in"
    );
}

#[test]
fn a_stream_that_fell_behind_drops_the_view_and_calls_for_a_round() {
    let (tx, events) = tokio::sync::broadcast::channel(2);
    let mut watched = Watched {
        events,
        open: true,
        live: Some(LiveView::default()),
        own_through: 0,
    };
    for revision in 1..=4 {
        tx.send(std::sync::Arc::new(berth_proto::v1::WatchEvent {
            revision,
            ..Default::default()
        }))
        .expect("send");
    }
    let outcome = RoundOutcome {
        read_revision: 10,
        ..Default::default()
    };
    assert!(
        watched.drain(Some(&outcome)),
        "missed changes call for a round"
    );
    assert!(
        watched.live.is_none(),
        "the next round reads the store again"
    );
}

/// The raft thread answers a commit before the watchers get its changes: a
/// round waits for its predecessor's own commits to reach the view, and reads
/// the store when they do not come.
#[tokio::test]
async fn a_round_plans_only_from_a_view_with_the_last_rounds_own_commits() {
    let (tx, events) = tokio::sync::broadcast::channel(16);
    let mut watched = Watched {
        events,
        open: true,
        live: Some(LiveView::default()),
        own_through: 7,
    };
    let late = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        for revision in [6, 7] {
            tx.send(std::sync::Arc::new(berth_proto::v1::WatchEvent {
                revision,
                ..Default::default()
            }))
            .expect("send");
        }
        tx
    });
    watched.catch_up().await;
    assert_eq!(
        watched.live.as_ref().map(LiveView::revision),
        Some(7),
        "waited for the own commits"
    );
    let _tx = late.await.expect("sender");
    watched.own_through = 9;
    watched.catch_up().await;
    assert!(
        watched.live.is_none(),
        "commits that never came: the store is read instead"
    );
}

/// A one-member cluster on a temporary data dir, as `server::run` builds it.
fn single_member(dir: &std::path::Path) -> RaftHandle {
    crate::server::test_member(dir)
}

/// Polls `check` on the state until it holds (bounded so a bug fails the test
/// instead of hanging it).
async fn until(raft: &RaftHandle, what: &str, check: impl Fn(&ClusterView) -> bool) -> ClusterView {
    for _ in 0..600 {
        let view = read_view(raft.state()).expect("read");
        if check(&view) {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "never reached: {what}: {:#?}",
        read_view(raft.state()).expect("read").tasks
    );
}

fn running_on_nodes(view: &ClusterView) -> Vec<&Task> {
    view.tasks
        .iter()
        .filter(|t| t.desired_state == TaskState::Running as i32 && !t.node_id.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_places_a_service_and_replaces_a_failed_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raft = single_member(dir.path());
    until(&raft, "leadership", |_| raft.status().get().is_leader()).await;
    let wrap = |kind| Object { kind: Some(kind) };
    let mut ops: Vec<Op> = ["a", "b", "c"]
        .iter()
        .map(|n| put(wrap(Kind::Node(node(n))), Expect::Absent, 0))
        .collect();
    ops.push(put(
        wrap(Kind::Service(Box::new(service(3)))),
        Expect::Absent,
        0,
    ));
    let result = raft.propose(Txn { ops }).await.expect("propose");
    assert!(result.error.is_empty(), "{}", result.error);

    let settings = PlannerSettings {
        tick: Duration::from_millis(100),
        ..Default::default()
    };
    let driver = tokio::spawn(run(raft.clone(), settings, crate::clock::system()));

    let view = until(&raft, "three tasks assigned", |v| {
        let placed = running_on_nodes(v);
        placed.len() == 3
            && placed
                .iter()
                .all(|t| t.status.as_ref().map(|s| s.state) == Some(TaskState::Assigned as i32))
    })
    .await;
    let mut nodes: Vec<&str> = running_on_nodes(&view)
        .iter()
        .map(|t| t.node_id.as_str())
        .collect();
    nodes.sort();
    assert_eq!(nodes, vec!["id-a", "id-b", "id-c"]);

    // An agent reports a failure, as the dispatcher would write it.
    let mut failed = running_on_nodes(&view)[0].clone();
    let failed_id = failed.id.clone();
    let slot = failed.slot;
    let version = failed.version;
    failed.status = Some(TaskStatus {
        state: TaskState::Failed as i32,
        exit_code: Some(1),
        timestamp_ms: crate::clock::now_ms(),
        ..Default::default()
    });
    let result = raft
        .propose(Txn {
            ops: vec![put(
                wrap(Kind::Task(Box::new(failed))),
                Expect::Version,
                version,
            )],
        })
        .await
        .expect("propose");
    assert!(result.error.is_empty(), "{}", result.error);

    let view = until(&raft, "the failed task replaced in its slot", |v| {
        let placed = running_on_nodes(v);
        placed.len() == 3 && placed.iter().all(|t| t.id != failed_id)
    })
    .await;
    let replacement = running_on_nodes(&view)
        .into_iter()
        .find(|t| t.slot == slot)
        .expect("slot refilled");
    assert_ne!(replacement.id, failed_id);
    let old = view
        .tasks
        .iter()
        .find(|t| t.id == failed_id)
        .expect("kept as history");
    assert_eq!(old.desired_state, TaskState::Shutdown as i32);
    driver.abort();
}
