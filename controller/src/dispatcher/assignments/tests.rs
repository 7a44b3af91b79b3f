//! The tracker, the published state and the per-session messages: what each
//! node is told, computed once for all, and what one change wakes.

use berth_proto::v1::{
    Node, NodeStatus, Service, ServiceSpec, Task, TaskState, TaskStatus, WatchAction, WatchEvent,
    session_message::Message, watch_event,
};

use super::*;
use crate::dispatcher::messages::{Interest, Sent};
use crate::dispatcher::payloads::{NoPayloads, PayloadSource};

/// The complete set as an agent holds it: its shared part unpacked. The
/// agent asked to follow nothing.
fn complete(
    published: &Published,
    node_id: &str,
    applied_everywhere: u64,
    source: &dyn PayloadSource,
) -> (berth_proto::v1::Assignments, Sent) {
    complete_asking(published, node_id, &[], applied_everywhere, source)
}

/// The complete set for an agent that asked to follow `asked`.
fn complete_asking(
    published: &Published,
    node_id: &str,
    asked: &[&str],
    applied_everywhere: u64,
    source: &dyn PayloadSource,
) -> (berth_proto::v1::Assignments, Sent) {
    complete_for(published, node_id, &ids(asked), applied_everywhere, source)
}

/// An agent's interest in the services `asked` by id.
fn ids(asked: &[&str]) -> Interest {
    Interest {
        ids: Arc::new(asked.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

/// An agent that gets endpoints on demand and asked for `names`.
fn lean(names: &[&str]) -> Interest {
    Interest {
        names: Arc::new(names.iter().map(|s| s.to_string()).collect()),
        heads_on_demand: true,
        ..Default::default()
    }
}

fn complete_for(
    published: &Published,
    node_id: &str,
    interest: &Interest,
    applied_everywhere: u64,
    source: &dyn PayloadSource,
) -> (berth_proto::v1::Assignments, Sent) {
    let (mut set, sent) = crate::dispatcher::messages::complete(
        published,
        node_id,
        interest,
        applied_everywhere,
        source,
    );
    berth_proto::assignments::unpack(&mut set).expect("the shared part decodes");
    (set, sent)
}

/// The next message for a node whose agent asked to follow nothing.
fn next(
    published: &Published,
    node_id: &str,
    applied_everywhere: u64,
    sent: &mut Sent,
    source: &dyn PayloadSource,
) -> Option<Message> {
    next_asking(published, node_id, &[], applied_everywhere, sent, source)
}

fn next_asking(
    published: &Published,
    node_id: &str,
    asked: &[&str],
    applied_everywhere: u64,
    sent: &mut Sent,
    source: &dyn PayloadSource,
) -> Option<Message> {
    crate::dispatcher::messages::next(
        published,
        node_id,
        &ids(asked),
        applied_everywhere,
        sent,
        source,
    )
}

/// The next message for an agent with `interest`, applied to `held`; the
/// delta it was, or `None` when there was none.
fn next_applied(
    published: &Published,
    node_id: &str,
    interest: &Interest,
    sent: &mut Sent,
    held: &mut berth_proto::v1::Assignments,
) -> Option<AssignmentsDelta> {
    let message =
        crate::dispatcher::messages::next(published, node_id, interest, 0, sent, &NoPayloads)?;
    let Message::Delta(delta) = message else {
        panic!("a delta, not {message:?}")
    };
    berth_proto::assignments::apply(held, delta.clone()).expect("applies");
    Some(delta)
}

/// A delta with its shared changes read into its own lists (prost's merge
/// appends each list: what a test that looks at the changes needs).
fn opened(mut delta: AssignmentsDelta) -> AssignmentsDelta {
    for piece in std::mem::take(&mut delta.shared_changes) {
        prost::Message::merge(&mut delta, piece).expect("a shared change decodes");
    }
    delta
}

fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        status: NodeStatus::Ready as i32,
        version: 1,
        ..Default::default()
    }
}

fn service(id: &str, name: &str) -> Service {
    Service {
        id: id.into(),
        spec: Some(ServiceSpec {
            name: name.into(),
            ..Default::default()
        }),
        virtual_ips: [("berth".to_string(), "10.96.240.2/16".parse().unwrap())].into(),
        ..Default::default()
    }
}

fn task(id: &str, service: &str, node: &str, observed: TaskState) -> Task {
    Task {
        id: id.into(),
        service_id: service.into(),
        node_id: node.into(),
        desired_state: TaskState::Running as i32,
        spec_version: 1,
        status: Some(TaskStatus {
            state: observed as i32,
            ..Default::default()
        }),
        addresses: [(
            "berth".to_string(),
            format!("10.96.0.{}/24", id.len()).parse().unwrap(),
        )]
        .into(),
        ..Default::default()
    }
}

/// A new service `id` named `name` and its task `task`, running on `node`,
/// committed together at `revision`.
fn service_with_task(
    revision: u64,
    id: &str,
    name: &str,
    task_id: &str,
    node: &str,
) -> [WatchEvent; 2] {
    [
        event(
            revision,
            watch_event::Object::Service(Box::new(service(id, name))),
        ),
        event(
            revision,
            watch_event::Object::Task(Box::new(task(task_id, id, node, TaskState::Running))),
        ),
    ]
}

fn event(revision: u64, object: watch_event::Object) -> WatchEvent {
    WatchEvent {
        time_ms: 0,
        revision,
        action: WatchAction::Updated as i32,
        object: Some(object),
    }
}

/// Three nodes, one service with a task on n1 and one on n2.
fn cluster() -> (Tracker, Published) {
    let view = ClusterView {
        settings: Default::default(),
        nodes: vec![node("n1"), node("n2"), node("n3")],
        services: vec![service("s1", "web")],
        tasks: vec![
            task("t1", "s1", "n1", TaskState::Running),
            task("t2", "s1", "n2", TaskState::Assigned),
        ],
        volumes: Vec::new(),
    };
    let (tracker, dirty) = Tracker::new(10, view, vec![]);
    let mut published = Published::default();
    let wake = published.update(&tracker, dirty);
    assert!(wake.shared);
    (tracker, published)
}

fn apply(tracker: &mut Tracker, published: &mut Published, events: &[WatchEvent]) -> Wake {
    let mut dirty = Dirty::default();
    for e in events {
        tracker.apply(&Arc::new(e.clone()), &mut dirty);
    }
    published.update(tracker, dirty)
}

#[test]
fn each_node_gets_its_own_tasks_and_everyone_the_shared_part() {
    let (_, published) = cluster();
    let (set, _) = complete(&published, "n1", 0, &NoPayloads);
    assert_eq!(set.tasks.len(), 1);
    assert_eq!(set.tasks[0].id, "t1");
    assert_eq!(set.nodes.len(), 3);
    assert_eq!(set.endpoints.len(), 1);
    let serving: Vec<&str> = set.endpoints[0]
        .tasks
        .iter()
        .map(|t| t.task_id.as_str())
        .collect();
    assert_eq!(serving, ["t1"], "only running tasks serve");
    let (set, _) = complete(&published, "n3", 0, &NoPayloads);
    assert!(set.tasks.is_empty());
    assert_eq!(set.node_id, "n3");
    assert_eq!(set.revision, 10);
}

#[test]
fn a_status_report_wakes_no_one_unless_it_changes_an_endpoint() {
    let (mut tracker, mut published) = cluster();
    // t2 goes from ASSIGNED to STARTING: nothing any agent acts on.
    let wake = apply(
        &mut tracker,
        &mut published,
        &[event(
            11,
            watch_event::Object::Task(Box::new(task("t2", "s1", "n2", TaskState::Starting))),
        )],
    );
    assert_eq!(wake, Wake::default());
    // RUNNING adds it to the service's endpoint: the shared part changed.
    let wake = apply(
        &mut tracker,
        &mut published,
        &[event(
            12,
            watch_event::Object::Task(Box::new(task("t2", "s1", "n2", TaskState::Running))),
        )],
    );
    assert!(wake.shared);
    assert!(wake.nodes.is_empty(), "n2's own task set is unchanged");
}

#[test]
fn a_new_task_wakes_only_its_node_and_the_delta_carries_only_it() {
    let (mut tracker, mut published) = cluster();
    let (_, mut sent_n1) = complete(&published, "n1", 0, &NoPayloads);
    let (_, mut sent_n3) = complete(&published, "n3", 0, &NoPayloads);
    let wake = apply(
        &mut tracker,
        &mut published,
        &[event(
            11,
            watch_event::Object::Task(Box::new(task("t3", "s1", "n3", TaskState::Assigned))),
        )],
    );
    assert_eq!(wake.nodes, ["n3"]);
    assert!(!wake.shared, "an assigned task serves nothing yet");
    assert!(next(&published, "n1", 0, &mut sent_n1, &NoPayloads).is_none());
    let Some(Message::Delta(delta)) = next(&published, "n3", 0, &mut sent_n3, &NoPayloads) else {
        panic!("n3 gets a delta")
    };
    let delta = opened(delta);
    assert_eq!(delta.tasks.len(), 1);
    assert_eq!(delta.tasks[0].id, "t3");
    assert!(delta.nodes.is_empty() && delta.endpoints.is_empty());
    assert!(
        next(&published, "n3", 0, &mut sent_n3, &NoPayloads).is_none(),
        "sent once"
    );
}

#[test]
fn a_stopped_and_removed_task_leaves_its_node() {
    let (mut tracker, mut published) = cluster();
    let (_, mut sent) = complete(&published, "n1", 0, &NoPayloads);
    let mut stopping = task("t1", "s1", "n1", TaskState::Running);
    stopping.desired_state = TaskState::Shutdown as i32;
    apply(
        &mut tracker,
        &mut published,
        &[event(
            11,
            watch_event::Object::Task(Box::new(stopping.clone())),
        )],
    );
    let Some(Message::Delta(delta)) = next(&published, "n1", 0, &mut sent, &NoPayloads) else {
        panic!("a desired-state change is sent")
    };
    let delta = opened(delta);
    assert_eq!(delta.tasks[0].desired_state, TaskState::Shutdown as i32);
    assert_eq!(delta.endpoint_tasks.len(), 1, "the endpoint lost its task");
    assert_eq!(delta.endpoint_tasks[0].removed_tasks, ["t1"]);
    assert!(
        delta.endpoints.is_empty(),
        "the service itself is unchanged"
    );
    let mut removed = event(12, watch_event::Object::Task(Box::new(stopping)));
    removed.action = WatchAction::Removed as i32;
    let wake = apply(&mut tracker, &mut published, &[removed]);
    assert_eq!(wake.nodes, ["n1"]);
    let Some(Message::Delta(delta)) = next(&published, "n1", 0, &mut sent, &NoPayloads) else {
        panic!("the removal is sent")
    };
    let delta = opened(delta);
    assert_eq!(delta.removed_tasks, ["t1"]);
}

#[test]
fn a_node_going_down_takes_its_tasks_out_of_endpoints() {
    let (mut tracker, mut published) = cluster();
    let (_, mut sent) = complete_asking(&published, "n3", &["s1"], 0, &NoPayloads);
    let mut down = node("n1");
    down.status = NodeStatus::Down as i32;
    down.version = 2;
    let wake = apply(
        &mut tracker,
        &mut published,
        &[event(11, watch_event::Object::Node(down))],
    );
    assert!(wake.shared);
    let Some(Message::Delta(delta)) =
        next_asking(&published, "n3", &["s1"], 0, &mut sent, &NoPayloads)
    else {
        panic!("every node hears of it")
    };
    let delta = opened(delta);
    assert!(
        delta.nodes.is_empty(),
        "a node's status is no news to an agent's overlay: {:?}",
        delta.nodes
    );
    assert_eq!(
        published.nodes["n1"].status,
        NodeStatus::Down as i32,
        "the drain watermark reads it"
    );
    assert_eq!(delta.endpoint_tasks.len(), 1);
    assert_eq!(delta.endpoint_tasks[0].removed_tasks, ["t1"]);
    assert!(delta.endpoint_tasks[0].tasks.is_empty());
}

#[test]
fn deltas_applied_by_an_agent_equal_the_complete_set() {
    let (mut tracker, mut published) = cluster();
    let (mut held, mut sent) = complete(&published, "n2", 0, &NoPayloads);
    let mut events = Vec::new();
    for (i, state) in [TaskState::Starting, TaskState::Running].iter().enumerate() {
        events.push(event(
            11 + i as u64,
            watch_event::Object::Task(Box::new(task("t2", "s1", "n2", *state))),
        ));
    }
    events.push(event(
        13,
        watch_event::Object::Task(Box::new(task("t9", "s1", "n2", TaskState::Assigned))),
    ));
    events.push(event(14, watch_event::Object::Node(node("n4"))));
    for e in events {
        apply(&mut tracker, &mut published, &[e]);
        if let Some(Message::Delta(d)) = next(&published, "n2", 0, &mut sent, &NoPayloads) {
            berth_proto::assignments::apply(&mut held, d).expect("applies");
        }
    }
    let (fresh, _) = complete(&published, "n2", 0, &NoPayloads);
    let ids = |tasks: &[Task]| tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&held.tasks), ids(&fresh.tasks));
    assert_eq!(held.nodes, fresh.nodes);
    assert_eq!(held.endpoints, fresh.endpoints);
    assert_eq!(held.revision, fresh.revision);
}

#[test]
fn a_session_too_far_behind_gets_the_complete_set_again() {
    let (mut tracker, mut published) = cluster();
    let (_, mut sent) = complete(&published, "n3", 0, &NoPayloads);
    for i in 0..(SHARED_LOG as u64 + 5) {
        // An address change: news to every agent's overlay.
        let mut n = node("n1");
        n.version = 2 + i;
        n.address = format!("198.18.{}.{}", i / 250, i % 250);
        apply(
            &mut tracker,
            &mut published,
            &[event(11 + i, watch_event::Object::Node(n))],
        );
    }
    assert!(matches!(
        next(&published, "n3", 0, &mut sent, &NoPayloads),
        Some(Message::Assignments(_))
    ));
    assert!(next(&published, "n3", 0, &mut sent, &NoPayloads).is_none());
}

#[test]
fn every_change_of_one_transaction_is_applied() {
    let (mut tracker, mut published) = cluster();
    let wake = apply(
        &mut tracker,
        &mut published,
        &[
            event(11, watch_event::Object::Node(node("n4"))),
            event(
                11,
                watch_event::Object::Task(Box::new(task("t5", "s1", "n4", TaskState::Assigned))),
            ),
            event(
                11,
                watch_event::Object::Task(Box::new(task("t6", "s1", "n3", TaskState::Assigned))),
            ),
        ],
    );
    assert_eq!(wake.nodes, ["n3", "n4"]);
    assert!(wake.shared);
}

#[test]
fn old_events_are_skipped() {
    let (mut tracker, mut published) = cluster();
    let wake = apply(
        &mut tracker,
        &mut published,
        &[event(
            10,
            watch_event::Object::Task(Box::new(task("t7", "s1", "n3", TaskState::Assigned))),
        )],
    );
    assert_eq!(wake, Wake::default());
}

#[test]
fn a_late_session_gets_every_change_in_one_message() {
    let (mut tracker, mut published) = cluster();
    // n3 runs none of s1's tasks: its agent asked for them.
    let (mut held, mut sent) = complete_asking(&published, "n3", &["s1"], 0, &NoPayloads);
    let mut stopped = task("t1", "s1", "n1", TaskState::Running);
    stopped.desired_state = TaskState::Shutdown as i32;
    let mut gone = event(
        15,
        watch_event::Object::Task(Box::new(task("t9", "s1", "n2", TaskState::Running))),
    );
    gone.action = WatchAction::Removed as i32;
    let events = [
        event(
            11,
            watch_event::Object::Task(Box::new(task("t2", "s1", "n2", TaskState::Running))),
        ),
        event(12, watch_event::Object::Task(Box::new(stopped))),
        event(
            13,
            watch_event::Object::Task(Box::new(task("t9", "s1", "n2", TaskState::Running))),
        ),
        event(
            14,
            watch_event::Object::Task(Box::new(task("t8", "s1", "n1", TaskState::Running))),
        ),
        gone,
    ];
    for e in events {
        apply(&mut tracker, &mut published, &[e]);
    }
    let Some(Message::Delta(delta)) =
        next_asking(&published, "n3", &["s1"], 0, &mut sent, &NoPayloads)
    else {
        panic!("one delta for everything")
    };
    assert_eq!(
        delta.shared_changes.len(),
        5,
        "one encoded change per revision"
    );
    let changes = opened(delta.clone());
    assert!(
        changes.endpoints.is_empty(),
        "only task changes: {changes:?}"
    );
    berth_proto::assignments::apply(&mut held, delta).expect("applies");
    let (fresh, _) = complete_asking(&published, "n3", &["s1"], 0, &NoPayloads);
    assert_eq!(held.endpoints, fresh.endpoints);
    let serving: Vec<&str> = fresh.endpoints[0]
        .tasks
        .iter()
        .map(|t| t.task_id.as_str())
        .collect();
    assert_eq!(serving, ["t2", "t8"]);
}

#[test]
fn a_stop_and_its_endpoint_leave_share_a_sequence_and_the_watermark_reaches_only_stopping_nodes() {
    let (mut tracker, mut published) = cluster();
    assert!(
        published.shared_seq >= 10,
        "a leadership numbers its shared part from its store revision up"
    );
    let (_, mut sent_n1) = complete(&published, "n1", 0, &NoPayloads);
    let (_, mut sent_n3) = complete_asking(&published, "n3", &["s1"], 0, &NoPayloads);
    let mut stopping = task("t1", "s1", "n1", TaskState::Running);
    stopping.desired_state = TaskState::Shutdown as i32;
    apply(
        &mut tracker,
        &mut published,
        &[event(11, watch_event::Object::Task(Box::new(stopping)))],
    );
    assert!(published.stopping.contains("n1"));
    let left_at = published.shared_seq;
    let Some(Message::Delta(delta)) = next(&published, "n1", 0, &mut sent_n1, &NoPayloads) else {
        panic!("n1 is told to stop t1")
    };
    let delta = opened(delta);
    assert_eq!(delta.tasks[0].desired_state, TaskState::Shutdown as i32);
    assert_eq!(
        delta.shared_seq, left_at,
        "the message with the stop brings the agent to the sequence where t1 left the endpoint"
    );
    let Some(Message::Delta(delta)) =
        next_asking(&published, "n3", &["s1"], 0, &mut sent_n3, &NoPayloads)
    else {
        panic!("n3 is told that t1 left the endpoint")
    };
    let delta = opened(delta);
    assert_eq!(delta.endpoint_tasks[0].removed_tasks, ["t1"]);
    assert_eq!(delta.shared_seq, left_at);

    // Every node applied it: only n1, which has a task to stop, hears of it.
    let Some(Message::Delta(delta)) = next(&published, "n1", left_at, &mut sent_n1, &NoPayloads)
    else {
        panic!("the new watermark goes to the stopping node")
    };
    let delta = opened(delta);
    assert_eq!(delta.applied_everywhere, left_at);
    assert!(delta.tasks.is_empty() && delta.endpoint_tasks.is_empty());
    assert!(next(&published, "n1", left_at, &mut sent_n1, &NoPayloads).is_none());
    assert!(
        next_asking(
            &published,
            "n3",
            &["s1"],
            left_at,
            &mut sent_n3,
            &NoPayloads
        )
        .is_none(),
        "a watermark alone is no news to a node with nothing to stop"
    );

    let mut ended = task("t1", "s1", "n1", TaskState::Shutdown);
    ended.desired_state = TaskState::Shutdown as i32;
    apply(
        &mut tracker,
        &mut published,
        &[event(12, watch_event::Object::Task(Box::new(ended)))],
    );
    assert!(!published.stopping.contains("n1"), "t1 has ended");
}

#[test]
fn a_session_far_behind_catches_up_in_bounded_pieces_that_add_up_to_the_complete_set() {
    let (mut tracker, mut published) = cluster();
    // n3's agent follows every service (its containers asked for them).
    let all: Vec<String> = (0..40).map(|s| format!("s{}", s + 10)).collect();
    let all: Vec<&str> = std::iter::once("s1")
        .chain(all.iter().map(String::as_str))
        .collect();
    let (mut held, mut sent) = complete_asking(&published, "n3", &all, 0, &NoPayloads);
    // Many services appear, each with more serving tasks than fit in one
    // piece together: the late session must not get them in one message.
    let services = 40;
    let per_service = SHARED_ITEMS_PER_MESSAGE / 8;
    for (revision, s) in (11..).zip(0..services) {
        let id = format!("s{}", s + 10);
        let mut events = vec![event(
            revision,
            watch_event::Object::Service(Box::new(service(&id, &format!("web{s}")))),
        )];
        for t in 0..per_service {
            events.push(event(
                revision,
                watch_event::Object::Task(Box::new(task(
                    &format!("t-{s}-{t}"),
                    &id,
                    "n1",
                    TaskState::Running,
                ))),
            ));
        }
        apply(&mut tracker, &mut published, &events);
    }
    let mut messages = 0;
    while let Some(message) = next_asking(&published, "n3", &all, 0, &mut sent, &NoPayloads) {
        let Message::Delta(delta) = message else {
            panic!("the log still reaches back: deltas, not a complete set")
        };
        let changes = opened(delta.clone());
        let items: usize = changes
            .endpoints
            .iter()
            .map(|e| 1 + e.tasks.len())
            .sum::<usize>()
            + changes
                .endpoint_tasks
                .iter()
                .map(|c| 1 + c.tasks.len())
                .sum::<usize>();
        assert!(
            items <= SHARED_ITEMS_PER_MESSAGE,
            "a piece carries {items} items"
        );
        berth_proto::assignments::apply(&mut held, delta).expect("applies");
        messages += 1;
        assert!(messages <= services, "catching up must end");
    }
    assert!(!sent.behind(&published), "caught up");
    assert!(messages > 1, "the changes came in several pieces");
    let (fresh, _) = complete_asking(&published, "n3", &all, 0, &NoPayloads);
    assert_eq!(held.endpoints, fresh.endpoints);
    assert_eq!(held.endpoints.len(), services + 1);
}

/// Endpoints by interest: a node gets every endpoint, but the serving tasks
/// only of the services it follows; changes of the others pass it by, and
/// count as applied for the drain watermark.
#[test]
fn a_node_gets_the_tasks_only_of_the_services_it_follows() {
    let (mut tracker, mut published) = cluster();
    // n3 runs nothing and asked for nothing: s1 without tasks.
    let (held, mut sent_n3) = complete(&published, "n3", 0, &NoPayloads);
    assert_eq!(held.endpoints.len(), 1);
    assert!(held.endpoints[0].tasks.is_empty(), "{:?}", held.endpoints);
    assert!(held.followed.is_empty());
    // n1 runs t1 of s1: it follows s1.
    let (held_n1, _) = complete(&published, "n1", 0, &NoPayloads);
    assert_eq!(held_n1.followed, ["s1"]);
    assert_eq!(held_n1.endpoints[0].tasks.len(), 1);

    let before = sent_n3.progress();
    apply(
        &mut tracker,
        &mut published,
        &[event(
            11,
            watch_event::Object::Task(Box::new(task("t2", "s1", "n2", TaskState::Running))),
        )],
    );
    assert!(
        next(&published, "n3", 0, &mut sent_n3, &NoPayloads).is_none(),
        "a task change of a service n3 does not follow is no news to it"
    );
    assert_eq!(
        sent_n3.progress(),
        (before.0, published.shared_seq),
        "passed"
    );

    // n3's agent asks for s1: its tasks as they are now, then their changes.
    let mut held = held;
    let Some(Message::Delta(delta)) =
        next_asking(&published, "n3", &["s1"], 0, &mut sent_n3, &NoPayloads)
    else {
        panic!("the tasks of a service asked for")
    };
    assert_eq!(delta.followed, ["s1"]);
    berth_proto::assignments::apply(&mut held, delta).expect("applies");
    assert_eq!(
        sent_n3.progress().0,
        published.shared_seq,
        "owed: to acknowledge"
    );
    let mut stopped = task("t1", "s1", "n1", TaskState::Running);
    stopped.desired_state = TaskState::Shutdown as i32;
    apply(
        &mut tracker,
        &mut published,
        &[event(12, watch_event::Object::Task(Box::new(stopped)))],
    );
    let Some(Message::Delta(delta)) =
        next_asking(&published, "n3", &["s1"], 0, &mut sent_n3, &NoPayloads)
    else {
        panic!("a change of a followed service")
    };
    berth_proto::assignments::apply(&mut held, delta).expect("applies");
    let (fresh, _) = complete_asking(&published, "n3", &["s1"], 0, &NoPayloads);
    assert_eq!(held.endpoints, fresh.endpoints);
    assert_eq!(held.followed, fresh.followed);
    let serving: Vec<&str> = held.endpoints[0]
        .tasks
        .iter()
        .map(|t| t.task_id.as_str())
        .collect();
    assert_eq!(serving, ["t2"]);
}

/// A service that publishes ports is followed by every node: the routing
/// mesh takes connections for it anywhere.
#[test]
fn every_node_gets_the_tasks_of_a_service_that_publishes_ports() {
    let (mut tracker, mut published) = cluster();
    let (mut held, mut sent_n3) = complete(&published, "n3", 0, &NoPayloads);
    let mut published_web = service("s1", "web");
    if let Some(spec) = published_web.spec.as_mut() {
        spec.ports.push(berth_proto::v1::PortConfig {
            target_port: 80,
            published_port: 8080,
            ..Default::default()
        });
    }
    apply(
        &mut tracker,
        &mut published,
        &[
            event(11, watch_event::Object::Service(Box::new(published_web))),
            event(
                11,
                watch_event::Object::Task(Box::new(task("t2", "s1", "n2", TaskState::Running))),
            ),
        ],
    );
    let Some(Message::Delta(delta)) = next(&published, "n3", 0, &mut sent_n3, &NoPayloads) else {
        panic!("the endpoint changed for everyone")
    };
    assert!(
        delta.followed.is_empty(),
        "followed by all, not by n3 alone"
    );
    berth_proto::assignments::apply(&mut held, delta).expect("applies");
    let serving: Vec<&str> = held.endpoints[0]
        .tasks
        .iter()
        .map(|t| t.task_id.as_str())
        .collect();
    assert_eq!(serving, ["t1", "t2"]);
    let (fresh, _) = complete(&published, "n3", 0, &NoPayloads);
    assert_eq!(held.endpoints, fresh.endpoints);
}

/// A service followed from now on comes with its tasks only once the
/// session has sent every older change: applied after them, an older change
/// would take a task back.
#[test]
fn a_session_behind_follows_a_service_once_it_caught_up() {
    let (mut tracker, mut published) = cluster();
    let (mut held, mut sent) = complete(&published, "n3", 0, &NoPayloads);
    // Two changes of 600 nodes each: the session needs two messages.
    for batch in 0..2 {
        let nodes: Vec<WatchEvent> = (0..600)
            .map(|i| {
                let id = format!("m{batch}-{i}");
                event(11 + batch, watch_event::Object::Node(node(&id)))
            })
            .collect();
        apply(&mut tracker, &mut published, &nodes);
    }
    let Some(Message::Delta(first)) =
        next_asking(&published, "n3", &["s1"], 0, &mut sent, &NoPayloads)
    else {
        panic!("the first piece")
    };
    assert!(first.followed.is_empty(), "behind: not yet");
    assert!(sent.behind(&published));
    berth_proto::assignments::apply(&mut held, first).expect("applies");
    let Some(Message::Delta(last)) =
        next_asking(&published, "n3", &["s1"], 0, &mut sent, &NoPayloads)
    else {
        panic!("the rest")
    };
    assert_eq!(last.followed, ["s1"]);
    berth_proto::assignments::apply(&mut held, last).expect("applies");
    assert!(!sent.behind(&published));
    let (fresh, _) = complete_asking(&published, "n3", &["s1"], 0, &NoPayloads);
    assert_eq!(held.endpoints, fresh.endpoints);
    assert_eq!(held.nodes.len(), fresh.nodes.len());
}

/// Agents get a node as their overlay reads it: its certificate, labels or
/// status are not sent, and a change of only those is no message.
#[test]
fn agents_get_nodes_as_the_overlay_reads_them() {
    let (mut tracker, mut published) = cluster();
    let mut n1 = node("n1");
    n1.name = "host-1".into();
    n1.address = "198.18.0.1".into();
    n1.labels.insert("zone".into(), "a".into());
    n1.cert_key_sha256 = vec![7; 32];
    n1.version = 2;
    apply(
        &mut tracker,
        &mut published,
        &[event(11, watch_event::Object::Node(n1.clone()))],
    );
    let (set, mut sent) = complete(&published, "n3", 0, &NoPayloads);
    let seen = set.nodes.iter().find(|n| n.id == "n1").expect("n1 is sent");
    assert_eq!(
        (seen.name.as_str(), seen.address.as_str()),
        ("host-1", "198.18.0.1")
    );
    assert!(seen.labels.is_empty() && seen.cert_key_sha256.is_empty() && seen.version == 0);

    n1.cert_key_sha256 = vec![8; 32];
    n1.version = 3;
    let wake = apply(
        &mut tracker,
        &mut published,
        &[event(12, watch_event::Object::Node(n1))],
    );
    assert!(!wake.shared, "a renewed certificate is no news to agents");
    assert!(next(&published, "n3", 0, &mut sent, &NoPayloads).is_none());
    assert_eq!(
        published.nodes["n1"].version, 3,
        "the leader keeps the whole node"
    );
}

/// A service asked for before it has an endpoint (a new leader before its
/// first publish) is followed once it has one.
#[test]
fn a_service_asked_for_before_it_has_an_endpoint_is_followed_once_it_has_one() {
    let (mut tracker, mut published) = cluster();
    let (mut held, mut sent) = complete_asking(&published, "n3", &["s2"], 0, &NoPayloads);
    assert!(held.followed.is_empty(), "s2 does not exist yet");
    apply(
        &mut tracker,
        &mut published,
        &service_with_task(11, "s2", "db", "t7", "n1"),
    );
    let Some(Message::Delta(delta)) =
        next_asking(&published, "n3", &["s2"], 0, &mut sent, &NoPayloads)
    else {
        panic!("the new service, followed")
    };
    assert_eq!(delta.followed, ["s2"]);
    berth_proto::assignments::apply(&mut held, delta).expect("applies");
    let db = held
        .endpoints
        .iter()
        .find(|e| e.service_id == "s2")
        .expect("s2");
    assert_eq!(db.tasks.len(), 1);
}

fn endpoint_ids(set: &berth_proto::v1::Assignments) -> Vec<(&str, usize)> {
    set.endpoints
        .iter()
        .map(|e| (e.service_id.as_str(), e.tasks.len()))
        .collect()
}

/// Endpoints on demand: a node gets the endpoints of the services it runs
/// tasks of and of the names it asked for, whole, and no other's head; a
/// name asked for before its service exists is followed once it does; what
/// it holds after the deltas is what a complete set would give it.
#[test]
fn endpoints_on_demand_reach_only_the_nodes_that_follow_them() {
    let (mut tracker, mut published) = cluster();
    let (n1, mut sent_n1) = complete_for(&published, "n1", &lean(&[]), 0, &NoPayloads);
    assert!(n1.heads_on_demand);
    assert_eq!(
        endpoint_ids(&n1),
        [("s1", 1)],
        "its own task's service, whole"
    );
    let (mut n3, mut sent_n3) = complete_for(&published, "n3", &lean(&[]), 0, &NoPayloads);
    assert!(n3.endpoints.is_empty(), "no head: {:?}", n3.endpoints);

    // A new service with a task on n1: n1 gets it whole, n3 nothing.
    apply(
        &mut tracker,
        &mut published,
        &service_with_task(11, "s2", "db", "t7", "n1"),
    );
    let mut n1 = n1;
    let delta = next_applied(&published, "n1", &lean(&[]), &mut sent_n1, &mut n1)
        .expect("n1's new task and its service");
    assert_eq!(delta.followed, ["s2"]);
    assert_eq!(endpoint_ids(&n1), [("s2", 1), ("s1", 1)]);
    assert!(
        next_applied(&published, "n3", &lean(&[]), &mut sent_n3, &mut n3).is_none(),
        "nothing for n3"
    );

    // n3 asks for the name "db" (any case) and one no service has yet.
    let asking = lean(&["db", "tasks.cache"]);
    let delta = next_applied(&published, "n3", &asking, &mut sent_n3, &mut n3).expect("answers");
    assert_eq!(delta.answered_names, ["db", "tasks.cache"]);
    assert_eq!(delta.followed, ["s2"]);
    assert_eq!(endpoint_ids(&n3), [("s2", 1)]);
    assert!(next_applied(&published, "n3", &asking, &mut sent_n3, &mut n3).is_none());

    // s2 gets a second task; then "cache" comes: n3 follows it.
    apply(
        &mut tracker,
        &mut published,
        &[event(
            12,
            watch_event::Object::Task(Box::new(task("t8", "s2", "n2", TaskState::Running))),
        )],
    );
    apply(
        &mut tracker,
        &mut published,
        &service_with_task(13, "s3", "cache", "t9", "n2"),
    );
    let delta = next_applied(&published, "n3", &asking, &mut sent_n3, &mut n3).expect("news");
    assert_eq!(delta.followed, ["s3"]);
    assert!(delta.answered_names.is_empty(), "answered once");
    assert_eq!(endpoint_ids(&n3), [("s3", 1), ("s2", 2)]);
    let (fresh, _) = complete_for(&published, "n3", &asking, 0, &NoPayloads);
    assert_eq!(n3.endpoints, fresh.endpoints);
    assert_eq!(n3.followed, fresh.followed);
    assert_eq!(n3.answered_names, fresh.answered_names);

    // An agent that gets every head still does (and the tasks it follows).
    let (all, _) = complete(&published, "n3", 0, &NoPayloads);
    assert_eq!(all.endpoints.len(), 3);
}

/// A service every node followed (it published a port) that stops
/// publishing: a node that gets endpoints on demand and does not follow it
/// drops it (it keeps neither the old tasks nor VIPs that may go to another
/// service), one that follows it keeps it whole, and an agent that gets
/// every head gets the new head.
#[test]
fn an_endpoint_every_node_followed_leaves_the_nodes_that_do_not_follow_it() {
    let (mut tracker, mut published) = cluster();
    let mut web = service("s1", "web");
    if let Some(spec) = web.spec.as_mut() {
        spec.ports = vec![berth_proto::v1::PortConfig {
            target_port: 80,
            published_port: 8080,
            ..Default::default()
        }];
    }
    apply(
        &mut tracker,
        &mut published,
        &[event(11, watch_event::Object::Service(Box::new(web)))],
    );
    let (mut n3, mut sent) = complete_for(&published, "n3", &lean(&[]), 0, &NoPayloads);
    assert_eq!(endpoint_ids(&n3), [("s1", 1)], "published: everyone's");
    let (mut n1, mut sent_n1) = complete_for(&published, "n1", &lean(&[]), 0, &NoPayloads);
    let (mut old, mut sent_old) = complete(&published, "n4", 0, &NoPayloads);
    apply(
        &mut tracker,
        &mut published,
        &[event(
            12,
            watch_event::Object::Service(Box::new(service("s1", "web"))),
        )],
    );
    next_applied(&published, "n3", &lean(&[]), &mut sent, &mut n3).expect("the change");
    assert!(n3.endpoints.is_empty(), "dropped: {:?}", n3.endpoints);
    next_applied(&published, "n1", &lean(&[]), &mut sent_n1, &mut n1).expect("the change");
    assert_eq!(
        endpoint_ids(&n1),
        [("s1", 1)],
        "its own task's service, whole"
    );
    assert_eq!(n1.followed, ["s1"]);
    let message = next_asking(&published, "n4", &[], 0, &mut sent_old, &NoPayloads);
    let Some(Message::Delta(delta)) = message else {
        panic!("the change")
    };
    berth_proto::assignments::apply(&mut old, delta).expect("applies");
    assert_eq!(endpoint_ids(&old), [("s1", 0)], "the head alone");
    for (set, node) in [(&n3, "n3"), (&n1, "n1")] {
        let (fresh, _) = complete_for(&published, node, &lean(&[]), 0, &NoPayloads);
        assert_eq!(set.endpoints, fresh.endpoints, "{node}");
    }
}

/// The tables read afresh (a watch that fell behind) without a service that
/// was published: marking everything published takes its endpoint, and its
/// name, away; without it the endpoint would stay for ever.
#[test]
fn a_fresh_read_removes_what_the_store_no_longer_holds() {
    let (_, mut published) = cluster();
    assert!(published.named("web").next().is_some());
    let view = ClusterView {
        settings: Default::default(),
        nodes: vec![node("n1"), node("n2"), node("n3")],
        services: Vec::new(),
        tasks: Vec::new(),
        volumes: Vec::new(),
    };
    let (tracker, mut dirty) = Tracker::new(20, view, vec![]);
    published.mark_all(&mut dirty);
    let wake = published.update(&tracker, dirty);
    assert!(wake.shared);
    assert!(published.endpoints.is_empty(), "{:?}", published.endpoints);
    assert!(published.named("web").next().is_none());
    assert!(published.assigned.is_empty());
}
