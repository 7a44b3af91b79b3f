//! The derivation (old value -> new value -> events), the deriver's memory,
//! the filter and the replay's reach.

use std::sync::Arc;

use berth_proto::v1::update_status::State as RolloutState;
use berth_proto::v1::{
    Event, EventType, Node, NodeAvailability, NodeStatus, Service, ServiceSpec, Task, TaskState,
    TaskStatus, UpdateStatus, WatchAction, WatchEvent, watch_event::Object,
};

use super::derive::derive;
use super::{Deriver, Filter, gap};

fn change(revision: u64, action: WatchAction, object: Object) -> WatchEvent {
    WatchEvent {
        revision,
        action: action as i32,
        object: Some(object),
        time_ms: revision as i64 * 1000,
    }
}

fn service(spec_version: u64, rollout: Option<(RolloutState, i64)>) -> Object {
    Object::Service(Box::new(Service {
        id: "s1".into(),
        spec: Some(ServiceSpec {
            name: "web".into(),
            image: "nginx:1".into(),
            ..Default::default()
        }),
        spec_version,
        update_status: rollout.map(|(state, started_ms)| UpdateStatus {
            state: state as i32,
            started_ms,
            from_version: 1,
            to_version: 2,
            ..Default::default()
        }),
        ..Default::default()
    }))
}

fn task(state: TaskState, desired: TaskState, message: &str, exit: Option<i32>) -> Object {
    Object::Task(Box::new(Task {
        id: "t1".into(),
        service_id: "s1".into(),
        service_name: "web".into(),
        slot: 2,
        node_id: "n1".into(),
        desired_state: desired as i32,
        status: Some(TaskStatus {
            state: state as i32,
            message: message.into(),
            exit_code: exit,
            ..Default::default()
        }),
        ..Default::default()
    }))
}

fn node(status: NodeStatus, availability: NodeAvailability) -> Object {
    Object::Node(Node {
        id: "n1".into(),
        name: "host-a".into(),
        status: status as i32,
        availability: availability as i32,
        status_message: if status == NodeStatus::Down {
            "heartbeat missed".into()
        } else {
            String::new()
        },
        ..Default::default()
    })
}

fn actions(events: &[Event]) -> Vec<(EventType, &str)> {
    events
        .iter()
        .map(|e| {
            (
                EventType::try_from(e.r#type).expect("type"),
                e.action.as_str(),
            )
        })
        .collect()
}

#[test]
fn a_service_is_created_updated_and_removed() {
    use WatchAction::*;
    let created = change(1, Created, service(1, None));
    let events = derive(None, &created);
    assert_eq!(actions(&events), vec![(EventType::Service, "create")]);
    assert_eq!(events[0].name, "web");
    assert_eq!(events[0].attributes["image"], "nginx:1");
    assert_eq!((events[0].revision, events[0].time_ms), (1, 1000));

    let updated = change(2, Updated, service(2, Some((RolloutState::Updating, 50))));
    let events = derive(Some(&created), &updated);
    assert_eq!(
        actions(&events),
        vec![
            (EventType::Service, "update"),
            (EventType::Rollout, "start")
        ]
    );
    assert_eq!(events[0].attributes["version.old"], "1");
    assert_eq!(events[1].attributes["version.to"], "2");

    let removed = change(3, Removed, service(2, Some((RolloutState::Updating, 50))));
    assert_eq!(
        actions(&derive(Some(&updated), &removed)),
        vec![(EventType::Service, "remove")]
    );
}

#[test]
fn a_rollout_is_told_by_its_state_not_by_every_write() {
    use RolloutState::*;
    let at = |state, started| change(5, WatchAction::Updated, service(2, Some((state, started))));
    let step = |old: &WatchEvent, new: &WatchEvent| {
        derive(Some(old), new)
            .into_iter()
            .map(|e| e.action)
            .collect::<Vec<_>>()
    };
    // The same rollout written again (its progress time): nothing happened.
    assert!(step(&at(Updating, 50), &at(Updating, 50)).is_empty());
    assert_eq!(step(&at(Updating, 50), &at(Paused, 50)), ["pause"]);
    assert_eq!(step(&at(Paused, 50), &at(Updating, 50)), ["resume"]);
    assert_eq!(step(&at(Completed, 50), &at(Updating, 90)), ["start"]);
    assert_eq!(step(&at(Updating, 50), &at(Completed, 50)), ["complete"]);
    assert_eq!(
        step(&at(Updating, 50), &at(RollbackStarted, 70)),
        ["rollback"]
    );
    assert_eq!(
        step(&at(RollbackStarted, 70), &at(RollbackCompleted, 70)),
        ["rollback complete"]
    );
}

#[test]
fn a_task_is_told_when_its_state_changes() {
    use TaskState::*;
    use WatchAction::*;
    let created = change(1, Created, task(Pending, Running, "", None));
    let events = derive(None, &created);
    assert_eq!(actions(&events), vec![(EventType::Task, "create")]);
    assert_eq!(events[0].name, "web.2");
    assert_eq!(events[0].attributes["service"], "web");
    assert_eq!(events[0].attributes["state"], "pending");

    let running = change(2, Updated, task(Running, Running, "started", None));
    let events = derive(Some(&created), &running);
    assert_eq!(actions(&events), vec![(EventType::Task, "running")]);
    assert_eq!(events[0].attributes["state.old"], "pending");
    assert_eq!(events[0].attributes["message"], "started");

    // Only the desired state changed: the task did nothing yet.
    let stopping = change(3, Updated, task(Running, Shutdown, "started", None));
    assert!(derive(Some(&running), &stopping).is_empty());

    let failed = change(4, Updated, task(Failed, Shutdown, "exited with 1", Some(1)));
    let events = derive(Some(&stopping), &failed);
    assert_eq!(actions(&events), vec![(EventType::Task, "failed")]);
    assert_eq!(events[0].attributes["exit_code"], "1");

    let removed = change(5, Removed, task(Failed, Shutdown, "exited with 1", Some(1)));
    assert_eq!(
        actions(&derive(Some(&failed), &removed)),
        vec![(EventType::Task, "remove")]
    );
}

#[test]
fn a_node_goes_down_and_is_drained() {
    use NodeAvailability::*;
    use NodeStatus::*;
    let ready = change(1, WatchAction::Updated, node(Ready, Active));
    let down = change(2, WatchAction::Updated, node(Down, Active));
    let events = derive(Some(&ready), &down);
    assert_eq!(actions(&events), vec![(EventType::Node, "down")]);
    assert_eq!(events[0].name, "host-a");
    assert_eq!(events[0].attributes["message"], "heartbeat missed");

    let drained = change(3, WatchAction::Updated, node(Down, Drain));
    assert_eq!(
        actions(&derive(Some(&down), &drained)),
        vec![(EventType::Node, "drain")]
    );
    // Its old value unknown: only what a new node would not be is told.
    assert_eq!(
        actions(&derive(None, &ready)),
        vec![(EventType::Node, "ready")]
    );
    // Kinds events do not tell.
    let network = change(4, WatchAction::Created, Object::Network(Default::default()));
    assert!(derive(None, &network).is_empty());
}

#[test]
fn the_deriver_remembers_each_object_and_forgets_removed_ones() {
    use TaskState::*;
    let mut deriver = Deriver::default();
    let seq = [
        change(1, WatchAction::Created, task(Pending, Running, "", None)),
        change(2, WatchAction::Updated, task(Pending, Running, "", None)),
        change(3, WatchAction::Updated, task(Running, Running, "", None)),
        change(4, WatchAction::Removed, task(Running, Running, "", None)),
        // Created again under the same id: a fresh object.
        change(5, WatchAction::Updated, task(Running, Running, "", None)),
    ];
    let told: Vec<Vec<String>> = seq
        .into_iter()
        .map(|c| {
            deriver
                .next(&Arc::new(c))
                .into_iter()
                .map(|e| e.action)
                .collect()
        })
        .collect();
    assert_eq!(
        told,
        vec![
            vec!["create".to_string()],
            vec![],
            vec!["running".to_string()],
            vec!["remove".to_string()],
            vec!["running".to_string()],
        ]
    );
}

#[test]
fn filters_by_type_and_service_name_or_id() {
    use TaskState::*;
    let service_event = derive(None, &change(1, WatchAction::Created, service(1, None))).remove(0);
    let task_event = derive(
        None,
        &change(2, WatchAction::Created, task(Pending, Running, "", None)),
    )
    .remove(0);
    let node_event = derive(
        None,
        &change(
            3,
            WatchAction::Updated,
            node(NodeStatus::Down, NodeAvailability::Active),
        ),
    )
    .remove(0);
    let all = [&service_event, &task_event, &node_event];
    let kept = |f: Filter| all.iter().filter(|e| f.matches(e)).count();
    assert_eq!(kept(Filter::default()), 3);
    assert_eq!(kept(Filter::new(vec![EventType::Task], vec![])), 1);
    assert_eq!(
        kept(Filter::new(
            vec![EventType::Node, EventType::Service],
            vec![]
        )),
        2
    );
    // A service filter: the service's and its tasks' events, no node's.
    assert_eq!(kept(Filter::new(vec![], vec!["web".into()])), 2);
    assert_eq!(kept(Filter::new(vec![], vec!["s1".into()])), 2);
    assert_eq!(kept(Filter::new(vec![], vec!["other".into()])), 0);
    assert_eq!(
        kept(Filter::new(vec![EventType::Task], vec!["web".into()])),
        1
    );
}

#[test]
fn a_replay_says_when_the_history_does_not_reach_back() {
    let held: Vec<Arc<WatchEvent>> = (5..8)
        .map(|r| Arc::new(change(r, WatchAction::Created, service(1, None))))
        .collect();
    // The whole history is held: nothing to say, whatever the time.
    assert!(gap(1, 0, &held).is_none());
    // No replay asked.
    assert!(gap(0, 4, &held).is_none());
    // The held history starts before the time asked.
    assert!(gap(5_000, 4, &held).is_none());
    assert!(gap(6_000, 4, &held).is_none());
    // It starts after it.
    let g = gap(4_999, 4, &held).expect("a gap");
    assert_eq!((g.oldest_ms, g.oldest_revision), (5_000, 5));
    let g = gap(1, 9, &[]).expect("a gap");
    assert_eq!((g.oldest_ms, g.oldest_revision), (0, 10));
}

/// A state machine in a temporary directory.
fn machine() -> (tempfile::TempDir, crate::store::StateMachine) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::open(dir.path()).expect("sled");
    let tree = db.open_tree("state").expect("tree");
    let sm = crate::store::StateMachine::new(tree, crate::store::WatchHub::new(0)).expect("state");
    (dir, sm)
}

/// Writes the task as `task()` makes it, at `index`.
fn write_task(sm: &crate::store::StateMachine, index: u64, state: TaskState, expect_version: u64) {
    use berth_proto::store::{Expect, Txn};
    let Object::Task(t) = task(state, TaskState::Running, "", None) else {
        unreachable!("task() makes a task")
    };
    let expect = if expect_version == 0 {
        Expect::Absent
    } else {
        Expect::Version
    };
    let op = crate::store::put_kind(
        berth_proto::store::object::Kind::Task(t),
        expect,
        expect_version,
    );
    let result = sm
        .apply_txn(&Txn { ops: vec![op] }, index, 1)
        .expect("apply");
    assert!(result.error.is_empty(), "{}", result.error);
}

#[tokio::test]
async fn a_stream_replays_the_history_then_goes_live() {
    use TaskState::*;
    let (_dir, sm) = machine();
    write_task(&sm, 1, Pending, 0);
    write_task(&sm, 2, Running, 1);
    let mut opened = super::open(&sm, 1, &Filter::default()).expect("open");
    assert!(opened.gap.is_none());
    let replayed: Vec<&str> = opened.replay.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(replayed, ["create", "running"]);

    write_task(&sm, 3, Failed, 2);
    let change = opened.live.recv().await.expect("a live change");
    let live = opened.deriver.next(&change);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].action, "failed");
    assert_eq!(live[0].attributes["state.old"], "running");
}

#[tokio::test]
async fn objects_the_history_lost_are_known_from_the_store() {
    use TaskState::*;
    let (_dir, sm) = machine();
    write_task(&sm, 1, Running, 0);
    // The history forgot everything (as after a snapshot).
    sm.watch().reset(1);
    let mut opened = super::open(&sm, 0, &Filter::default()).expect("open");
    assert!(opened.replay.is_empty());
    // Asked from the start, it says the history does not reach back.
    assert!(
        super::open(&sm, 1, &Filter::default())
            .expect("open")
            .gap
            .is_some()
    );

    write_task(&sm, 2, Failed, 1);
    let change = opened.live.recv().await.expect("a live change");
    let live = opened.deriver.next(&change);
    assert_eq!(live[0].action, "failed");
    assert_eq!(live[0].attributes["state.old"], "running");
}
