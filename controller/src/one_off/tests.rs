use berth_proto::v1::{NodeAvailability, NodeStatus, Resources};

use super::*;

fn node(id: &str, mem: u64) -> Node {
    Node {
        id: id.into(),
        name: format!("n-{id}"),
        status: NodeStatus::Ready as i32,
        availability: NodeAvailability::Active as i32,
        resources: Some(Resources {
            milli_cpus: 2000,
            memory_bytes: mem,
            pids: 0,
        }),
        ..Default::default()
    }
}

fn spec(memory: u64) -> ServiceSpec {
    ServiceSpec {
        name: "job".into(),
        image: "busybox".into(),
        resources: Some(berth_proto::v1::ResourceRequirements {
            reservations: Some(Resources {
                memory_bytes: memory,
                ..Default::default()
            }),
            limits: None,
        }),
        ..Default::default()
    }
}

fn ids() -> (String, String) {
    ("s1".into(), "t1".into())
}

#[test]
fn a_run_is_a_one_replica_never_restarted_service_and_its_task() {
    let view = ClusterView {
        nodes: vec![node("a", 1 << 30), node("b", 1 << 30)],
        ..Default::default()
    };
    let spec = one_off_spec(spec(0), Some(&view.nodes[1]));
    let (service, task, ops) = plan_run(&view, spec, ids(), 1000).expect("fits");
    let spec = service.spec.clone().expect("spec");
    assert!(spec.one_off);
    assert_eq!(
        spec.mode,
        Some(Mode::Replicated(ReplicatedMode { replicas: 1 }))
    );
    assert_eq!(
        spec.restart_policy.map(|p| p.condition),
        Some(RestartCondition::None as i32)
    );
    assert_eq!(
        spec.placement.expect("placement").constraints,
        vec!["node.id==b".to_string()]
    );
    assert_eq!((task.service_id.as_str(), task.slot), ("s1", 1));
    assert_eq!(observed(&task), TaskState::Pending as i32);
    assert_eq!(ops.len(), 2, "the service and its task in one write");
}

#[test]
fn a_run_no_node_can_take_is_refused_with_the_schedulers_reason() {
    let view = ClusterView {
        nodes: vec![node("a", 1 << 20)],
        ..Default::default()
    };
    let err = plan_run(&view, one_off_spec(spec(1 << 30), None), ids(), 1000).expect_err("too big");
    let text = err.to_string();
    assert!(text.starts_with("no node can run job now: "), "{text}");
    assert!(text.contains("memory"), "{text}");
    let err = plan_run(
        &ClusterView::default(),
        one_off_spec(spec(0), None),
        ids(),
        1,
    )
    .expect_err("no nodes");
    assert!(matches!(err, OneOffError::NoNodeFits { .. }), "{err}");
}

fn task_of(service: &Service, state: TaskState, one_off: bool) -> Task {
    let mut spec = service.spec.clone().unwrap_or_default();
    spec.one_off = one_off;
    Task {
        id: format!("{}-task", service.id),
        service_id: service.id.clone(),
        service_name: spec.name.clone(),
        slot: 1,
        spec: Some(spec),
        status: Some(berth_proto::v1::TaskStatus {
            state: state as i32,
            ..Default::default()
        }),
        version: 3,
        ..Default::default()
    }
}

#[test]
fn removal_takes_an_ended_one_off_and_refuses_the_rest() {
    let service = Service {
        id: "s1".into(),
        spec: Some(spec(0)),
        version: 7,
        ..Default::default()
    };
    let ended = task_of(&service, TaskState::Complete, true);
    let ops = removal(&ended, Some(&service), std::slice::from_ref(&ended), false).expect("ended");
    assert_eq!(ops.len(), 2, "service and task");

    let running = task_of(&service, TaskState::Running, true);
    let err = removal(
        &running,
        Some(&service),
        std::slice::from_ref(&running),
        false,
    )
    .expect_err("running");
    assert!(
        err.to_string().contains("is running: stop it first"),
        "{err}"
    );
    // -f: the service goes now, the running task once it ended (reaper).
    let ops = removal(
        &running,
        Some(&service),
        std::slice::from_ref(&running),
        true,
    )
    .expect("-f");
    assert_eq!(ops.len(), 1);

    let web = task_of(&service, TaskState::Complete, false);
    let err = removal(&web, Some(&service), std::slice::from_ref(&web), true).expect_err("service");
    assert!(
        err.to_string().contains("belongs to service job")
            && err.to_string().contains("service scale job=N"),
        "{err}"
    );
}

#[test]
fn stop_says_what_happens_next() {
    let service = Service {
        id: "s1".into(),
        spec: Some(spec(0)),
        ..Default::default()
    };
    assert!(
        stop_outcome(&task_of(&service, TaskState::Running, true)).contains("not started again")
    );
    let replaced = stop_outcome(&task_of(&service, TaskState::Running, false));
    assert!(
        replaced.contains("restart condition any") && replaced.contains("as Swarm does"),
        "{replaced}"
    );
}
