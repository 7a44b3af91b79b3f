use berth_proto::store::{
    Delete, Expect, Object, Op, Put, Txn, object::Kind, op, txn_result::Failure,
};
use berth_proto::v1::{
    PortConfig, PortProtocol, Secret, Service, ServiceSpec, Task, TaskState, TaskStatus,
};

use super::*;

fn machine() -> (tempfile::TempDir, StateMachine) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::open(dir.path()).expect("sled");
    let tree = db.open_tree("state").expect("tree");
    (
        dir,
        StateMachine::new(tree, WatchHub::new(0)).expect("state"),
    )
}

fn secret(id: &str, name: &str, data: &str) -> Object {
    Object {
        kind: Some(Kind::Secret(Secret {
            id: id.into(),
            name: name.into(),
            data: data.as_bytes().to_vec(),
            ..Default::default()
        })),
    }
}

fn put(object: Object, expect: Expect, version: u64) -> Op {
    Op {
        op: Some(op::Op::Put(Put {
            object: Some(object),
            expect: expect as i32,
            version,
        })),
    }
}

fn txn(ops: Vec<Op>) -> Txn {
    Txn { ops }
}

#[test]
fn create_then_compare_and_set() {
    let (_d, sm) = machine();
    let r = sm
        .apply_txn(
            &txn(vec![put(secret("s1", "a", "1"), Expect::Absent, 0)]),
            1,
            1,
        )
        .expect("apply");
    assert!(r.error.is_empty(), "{}", r.error);
    assert_eq!(r.revision, 1);
    assert_eq!(r.objects[0].version(), 1);

    // A second create of the same id is refused.
    let r = sm
        .apply_txn(
            &txn(vec![put(secret("s1", "a", "x"), Expect::Absent, 0)]),
            2,
            1,
        )
        .expect("apply");
    assert!(r.error.contains("already exists"), "{}", r.error);

    // CAS at the current version succeeds and bumps the version.
    let r = sm
        .apply_txn(
            &txn(vec![put(secret("s1", "a", "2"), Expect::Version, 1)]),
            3,
            1,
        )
        .expect("apply");
    assert!(r.error.is_empty(), "{}", r.error);
    assert_eq!(r.objects[0].version(), 2);

    // A stale version is refused and changes nothing.
    let r = sm
        .apply_txn(
            &txn(vec![put(secret("s1", "a", "3"), Expect::Version, 1)]),
            4,
            1,
        )
        .expect("apply");
    assert!(r.error.contains("version 2, not 1"), "{}", r.error);
    let stored = sm.get(Table::Secret, "s1").expect("get").expect("present");
    match stored.kind {
        Some(Kind::Secret(s)) => assert_eq!(s.data, b"2"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(sm.applied().expect("applied").index, 4);
    assert_eq!(sm.revision().expect("rev"), 2);
}

#[test]
fn a_transaction_applies_all_or_nothing() {
    let (_d, sm) = machine();
    sm.apply_txn(
        &txn(vec![put(secret("s1", "a", "1"), Expect::Absent, 0)]),
        1,
        1,
    )
    .expect("apply");
    let r = sm
        .apply_txn(
            &txn(vec![
                put(secret("s2", "b", "1"), Expect::Absent, 0),
                put(secret("s1", "a", "x"), Expect::Version, 99),
            ]),
            2,
            1,
        )
        .expect("apply");
    assert!(!r.error.is_empty());
    assert!(
        sm.get(Table::Secret, "s2").expect("get").is_none(),
        "partial write"
    );
    assert_eq!(sm.revision().expect("rev"), 1);
}

#[test]
fn names_are_unique_per_table_and_follow_renames_and_deletes() {
    let (_d, sm) = machine();
    sm.apply_txn(
        &txn(vec![put(secret("s1", "a", "1"), Expect::Absent, 0)]),
        1,
        1,
    )
    .expect("apply");
    let r = sm
        .apply_txn(
            &txn(vec![put(secret("s2", "a", "1"), Expect::Absent, 0)]),
            2,
            1,
        )
        .expect("apply");
    assert!(r.error.contains("already used by s1"), "{}", r.error);

    // A service may carry the same name as a secret.
    let svc = Object {
        kind: Some(Kind::Service(Box::new(Service {
            id: "v1".into(),
            spec: Some(ServiceSpec {
                name: "a".into(),
                ..Default::default()
            }),
            ..Default::default()
        }))),
    };
    let r = sm
        .apply_txn(&txn(vec![put(svc, Expect::Absent, 0)]), 3, 1)
        .expect("apply");
    assert!(r.error.is_empty(), "{}", r.error);

    // Rename s1 to b: a is free again.
    sm.apply_txn(
        &txn(vec![put(secret("s1", "b", "1"), Expect::Any, 0)]),
        4,
        1,
    )
    .expect("apply");
    assert_eq!(sm.id_by_name(Table::Secret, "a").expect("name"), None);
    assert_eq!(
        sm.id_by_name(Table::Secret, "b").expect("name").as_deref(),
        Some("s1")
    );

    let del = Op {
        op: Some(op::Op::Delete(Delete {
            table: "secret".into(),
            id: "s1".into(),
            expect: Expect::Present as i32,
            version: 0,
        })),
    };
    let r = sm.apply_txn(&txn(vec![del]), 5, 1).expect("apply");
    assert!(r.error.is_empty(), "{}", r.error);
    assert_eq!(sm.id_by_name(Table::Secret, "b").expect("name"), None);
}

#[test]
fn watch_replays_from_a_revision_then_goes_live() {
    let (_d, sm) = machine();
    for (i, id) in ["s1", "s2", "s3"].iter().enumerate() {
        sm.apply_txn(
            &txn(vec![put(secret(id, id, "v"), Expect::Absent, 0)]),
            i as u64 + 1,
            1,
        )
        .expect("apply");
    }
    let (backlog, mut live) = sm.watch().subscribe(1).expect("subscribe");
    let revs: Vec<u64> = backlog.iter().map(|e| e.revision).collect();
    assert_eq!(revs, vec![2, 3]);
    sm.apply_txn(
        &txn(vec![put(secret("s4", "s4", "v"), Expect::Absent, 0)]),
        4,
        1,
    )
    .expect("apply");
    let next = live.try_recv().expect("live event");
    assert_eq!(next.revision, 4);
    // Secret data never goes out in a watch.
    match &next.object {
        Some(berth_proto::v1::watch_event::Object::Secret(s)) => assert!(s.data.is_empty()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_snapshot_dump_restores_into_an_empty_machine() {
    let (_d, sm) = machine();
    sm.apply_txn(
        &txn(vec![put(secret("s1", "a", "1"), Expect::Absent, 0)]),
        1,
        1,
    )
    .expect("apply");
    let dump = sm.dump().expect("dump");
    let (_d2, other) = machine();
    other
        .apply_txn(
            &txn(vec![put(secret("old", "z", "1"), Expect::Absent, 0)]),
            1,
            1,
        )
        .expect("apply");
    other.restore(&dump, 7, 2, b"conf").expect("restore");
    assert!(other.get(Table::Secret, "old").expect("get").is_none());
    assert!(other.get(Table::Secret, "s1").expect("get").is_some());
    assert_eq!(
        other.id_by_name(Table::Secret, "a").expect("n").as_deref(),
        Some("s1")
    );
    assert_eq!(other.applied().expect("a").index, 7);
    assert_eq!(other.revision().expect("r"), 1);
}

#[test]
fn later_transactions_of_a_group_see_earlier_ones() {
    let (_d, sm) = machine();
    let mut group = sm.begin().expect("begin");
    let mut index = 0;
    let mut put_secret = |id: &str, name: &str, expect: Expect, version: u64| {
        index += 1;
        let op = put(secret(id, name, "v"), expect, version);
        sm.apply_in(&mut group, &txn(vec![op]), index, 1).error
    };
    assert_eq!(put_secret("s1", "a", Expect::Absent, 0), "");
    // A second create of the id, or of the name, is refused within the group.
    assert!(put_secret("s1", "x", Expect::Absent, 0).contains("already exists"));
    assert!(put_secret("s2", "a", Expect::Absent, 0).contains("already used by s1"));
    // CAS against the version the group wrote (renaming to b); a stale one is refused.
    assert_eq!(put_secret("s1", "b", Expect::Version, 1), "");
    assert!(put_secret("s1", "b", Expect::Version, 1).contains("version 2, not 1"));
    // The rename freed "a" within the group.
    assert_eq!(put_secret("s3", "a", Expect::Absent, 0), "");
    // Nothing is visible before the group is written.
    assert!(sm.get(Table::Secret, "s1").expect("get").is_none());
    let (_, mut live) = sm.watch().subscribe(0).expect("subscribe");
    let events = sm.commit(group).expect("commit");
    sm.publish(events);
    assert_eq!(sm.applied().expect("applied").index, 6);
    assert_eq!(sm.revision().expect("rev"), 3);
    for (name, id) in [("a", "s3"), ("b", "s1")] {
        let holder = sm.id_by_name(Table::Secret, name).expect("name");
        assert_eq!(holder.as_deref(), Some(id));
    }
    let revisions: Vec<u64> = std::iter::from_fn(|| live.try_recv().ok())
        .map(|e| e.revision)
        .collect();
    assert_eq!(revisions, vec![1, 2, 3]);
}

fn service_publishing(id: &str, name: &str, ports: &[(u32, PortProtocol)]) -> Object {
    Object {
        kind: Some(Kind::Service(Box::new(Service {
            id: id.into(),
            spec: Some(ServiceSpec {
                name: name.into(),
                ports: ports
                    .iter()
                    .map(|&(published, protocol)| PortConfig {
                        published_port: published,
                        target_port: 80,
                        protocol: protocol as i32,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }))),
    }
}

/// Two creates that both passed the API's check (it reads without a barrier)
/// meet here: the state machine lets one service have a published port.
#[test]
fn a_published_port_belongs_to_one_service_even_within_one_group() {
    let (_d, sm) = machine();
    let tcp = PortProtocol::Tcp;
    let mut group = sm.begin().expect("begin");
    let web = txn(vec![put(
        service_publishing("v1", "web", &[(8080, tcp)]),
        Expect::Absent,
        0,
    )]);
    let api = txn(vec![put(
        service_publishing("v2", "api", &[(8080, tcp)]),
        Expect::Absent,
        0,
    )]);
    assert!(sm.apply_in(&mut group, &web, 1, 1).error.is_empty());
    let refused = sm.apply_in(&mut group, &api, 2, 1);
    assert_eq!(refused.failure, Failure::Exists as i32);
    assert!(
        refused
            .error
            .contains("port 8080/tcp is already published by service v1"),
        "{}",
        refused.error
    );
    let _ = sm.commit(group).expect("commit");
    // Over UDP the number is another port.
    let dns = service_publishing("v3", "dns", &[(8080, PortProtocol::Udp)]);
    let r = sm
        .apply_txn(&txn(vec![put(dns, Expect::Absent, 0)]), 3, 1)
        .expect("apply");
    assert!(r.error.is_empty(), "{}", r.error);
    // web moves to 9090: 8080/tcp is free for api, 9090 is taken.
    let moved = service_publishing("v1", "web", &[(9090, tcp)]);
    sm.apply_txn(&txn(vec![put(moved, Expect::Present, 0)]), 4, 1)
        .expect("apply");
    let r = sm.apply_txn(&api, 5, 1).expect("apply");
    assert!(r.error.is_empty(), "{}", r.error);
    let late = service_publishing("v4", "late", &[(9090, tcp)]);
    let r = sm
        .apply_txn(&txn(vec![put(late.clone(), Expect::Absent, 0)]), 6, 1)
        .expect("apply");
    assert!(r.error.contains("9090/tcp"), "{}", r.error);
    // Removing web frees 9090; a snapshot keeps the claims.
    let del = Op {
        op: Some(op::Op::Delete(Delete {
            table: "service".into(),
            id: "v1".into(),
            expect: Expect::Present as i32,
            version: 0,
        })),
    };
    sm.apply_txn(&txn(vec![del]), 7, 1).expect("apply");
    let (_d2, restored) = machine();
    restored
        .restore(&sm.dump().expect("dump"), 7, 1, &[])
        .expect("restore");
    let r = restored
        .apply_txn(&txn(vec![put(late, Expect::Absent, 0)]), 8, 1)
        .expect("apply");
    assert!(r.error.is_empty(), "{}", r.error);
    let again = service_publishing("v5", "again", &[(8080, tcp)]);
    let r = restored
        .apply_txn(&txn(vec![put(again, Expect::Absent, 0)]), 9, 1)
        .expect("apply");
    assert!(r.error.contains("8080/tcp"), "{}", r.error);
}

fn task_of(id: &str, service_id: &str, slot: u64, desired: TaskState, state: TaskState) -> Object {
    Object {
        kind: Some(Kind::Task(Box::new(Task {
            id: id.into(),
            service_id: service_id.into(),
            slot,
            desired_state: desired as i32,
            status: Some(TaskStatus {
                state: state as i32,
                ..Default::default()
            }),
            ..Default::default()
        }))),
    }
}

#[test]
fn a_task_is_found_by_id_prefix_service_slot_or_service_name() {
    let (_d, sm) = machine();
    let ops = vec![
        put(service_publishing("svc1", "web", &[]), Expect::Absent, 0),
        // Slot 1 was replaced: the old task is shut down, the new one runs.
        put(
            task_of("t-old", "svc1", 1, TaskState::Shutdown, TaskState::Failed),
            Expect::Absent,
            0,
        ),
        put(
            task_of("t-new", "svc1", 1, TaskState::Running, TaskState::Running),
            Expect::Absent,
            0,
        ),
        put(
            task_of("u-two", "svc1", 2, TaskState::Running, TaskState::Running),
            Expect::Absent,
            0,
        ),
    ];
    let r = sm.apply_txn(&txn(ops), 1, 1).expect("apply");
    assert!(r.error.is_empty(), "{}", r.error);
    let id = |key: &str| view::resolve_task(&sm, key).map(|t| t.id);
    assert_eq!(id("t-old").expect("by id"), "t-old");
    assert_eq!(id("u").expect("by prefix"), "u-two");
    assert!(matches!(id("t-"), Err(view::LookupError::Ambiguous { .. })));
    assert_eq!(id("web.1").expect("slot 1"), "t-new");
    assert_eq!(id("svc1.2").expect("service id and slot"), "u-two");
    assert_eq!(id("web").expect("the service's first slot"), "t-new");
    assert!(matches!(
        id("web.3"),
        Err(view::LookupError::NotFound { .. })
    ));
    assert!(matches!(
        id("db.1"),
        Err(view::LookupError::NotFound { .. })
    ));
}
