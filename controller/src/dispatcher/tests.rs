//! The dispatcher through its seams: a real one-member Raft cluster, a manual
//! clock, sessions opened and read in process (no gRPC, no agents).

use std::time::Duration;

use berth_proto::store::Expect;
use berth_proto::store::object::Kind;
use berth_proto::v1::{
    NodeStatus, RegisterRequest, SessionMessage, Task, TaskState, session_message::Message,
};
use tokio_stream::StreamExt;

use super::*;
use crate::clock::ManualClock;
use crate::store::view::read_node;
use crate::store::{commit, put_kind};

fn request(name: &str, address: &str) -> RegisterRequest {
    RegisterRequest {
        name: name.into(),
        address: address.into(),
        ..Default::default()
    }
}

async fn next(stream: &mut SessionStream) -> Result<SessionMessage, DispatchError> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a session message within 10 s")
        .expect("the stream goes on")
}

async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_get_their_tasks_and_silent_nodes_go_down_by_the_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raft = crate::server::test_leader(dir.path()).await;
    let clock = ManualClock::new(1_000_000);
    let dispatcher = Dispatcher::new(
        raft.clone(),
        DispatcherSettings {
            heartbeat_period: Duration::from_secs(1),
            down_after: Duration::from_secs(8),
        },
        Arc::new(clock.clone()),
        crate::keyring::Keyring::create(dir.path()).expect("keys"),
    );
    let loops = tokio::spawn(dispatcher.clone().run());

    let h1 = dispatcher
        .register(request("h1", "198.18.0.2"))
        .await
        .expect("h1 registers");
    let h2 = dispatcher
        .register(request("h2", "198.18.0.3"))
        .await
        .expect("h2 registers");
    let mut s1 = dispatcher
        .open_session(
            h1.node_id.clone(),
            h1.session_id.clone(),
            None,
            OnDemand::Tasks,
        )
        .expect("h1's session");
    let mut s2 = dispatcher
        .open_session(
            h2.node_id.clone(),
            h2.session_id.clone(),
            None,
            OnDemand::Tasks,
        )
        .expect("h2's session");

    // The first message is the complete set.
    let Some(Message::Assignments(set)) = next(&mut s1).await.expect("a message").message else {
        panic!("the first message is the complete set")
    };
    assert_eq!(set.node_id, h1.node_id);
    let mut held = set.clone();
    berth_proto::assignments::unpack(&mut held).expect("the shared part decodes");
    let Some(Message::Assignments(_)) = next(&mut s2).await.expect("a message").message else {
        panic!("the first message is the complete set")
    };

    // A task placed on h1 reaches h1's session as a change.
    let task = Task {
        id: "t1".into(),
        service_id: "s1".into(),
        node_id: h1.node_id.clone(),
        desired_state: TaskState::Running as i32,
        spec_version: 1,
        ..Default::default()
    };
    commit(
        &raft,
        vec![put_kind(Kind::Task(Box::new(task)), Expect::Absent, 0)],
    )
    .await
    .expect("commit a task");
    let mut seen_task = false;
    for _ in 0..5 {
        match next(&mut s1).await.expect("a message").message {
            Some(Message::Delta(delta)) => {
                seen_task = delta.tasks.iter().any(|t| t.id == "t1");
                berth_proto::assignments::apply(&mut held, delta).expect("applies");
                if seen_task {
                    break;
                }
            }
            _ => continue,
        }
    }
    assert!(seen_task, "h1 is told of its task");

    // 9 s pass by the clock; only h1 shows a sign of life, at 5 s (no node
    // is older than 8 s at any moment before the second step).
    clock.advance(Duration::from_secs(5));
    dispatcher
        .heartbeat(&h1.node_id, &h1.session_id)
        .expect("h1's heartbeat");
    clock.advance(Duration::from_secs(4));
    let sm = raft.state().clone();
    let h2_id = h2.node_id.clone();
    until("h2 declared down", || {
        read_node(&sm, &h2_id)
            .ok()
            .flatten()
            .is_some_and(|n| n.status == NodeStatus::Down as i32)
    })
    .await;
    let h1_node = read_node(&sm, &h1.node_id).unwrap().unwrap();
    assert_eq!(h1_node.status, NodeStatus::Ready as i32, "h1 stays ready");
    let refused = dispatcher.heartbeat(&h2.node_id, &h2.session_id);
    assert!(
        matches!(refused, Err(DispatchError::UnknownSession)),
        "a down node's session is over: {refused:?}"
    );
    // h2's stream ends with the same word; it registers again and is READY.
    let mut ended = false;
    for _ in 0..5 {
        if let Err(DispatchError::UnknownSession) = next(&mut s2).await {
            ended = true;
            break;
        }
    }
    assert!(ended, "h2's session stream ends");
    dispatcher
        .register(RegisterRequest {
            node_id: h2.node_id.clone(),
            ..request("h2", "198.18.0.3")
        })
        .await
        .expect("h2 registers again");
    assert_eq!(
        read_node(&sm, &h2.node_id).unwrap().unwrap().status,
        NodeStatus::Ready as i32
    );
    // h1 comes back in a new session holding its set: the session starts with
    // a delta from it, which leaves out the task h1 already has.
    let again = dispatcher
        .register(RegisterRequest {
            node_id: h1.node_id.clone(),
            ..request("h1", "198.18.0.2")
        })
        .await
        .expect("h1 registers again");
    let mut resumed = dispatcher
        .open_session(
            again.node_id.clone(),
            again.session_id.clone(),
            Some(berth_proto::assignments::held_set(&held)),
            OnDemand::Tasks,
        )
        .expect("h1's new session");
    let Some(Message::Delta(delta)) = next(&mut resumed).await.expect("a message").message else {
        panic!("a session with a held set starts with a delta")
    };
    assert!(delta.tasks.is_empty(), "t1 is not sent again: {delta:?}");
    berth_proto::assignments::apply(&mut held, delta).expect("applies");
    assert!(held.tasks.iter().any(|t| t.id == "t1"));

    loops.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_taken_by_another_node_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raft = crate::server::test_leader(dir.path()).await;
    let dispatcher = Dispatcher::new(
        raft.clone(),
        DispatcherSettings::default(),
        Arc::new(ManualClock::new(0)),
        crate::keyring::Keyring::create(dir.path()).expect("keys"),
    );
    let first = dispatcher
        .register(request("h1", "198.18.0.2"))
        .await
        .expect("h1 registers");
    let err = dispatcher
        .register(RegisterRequest {
            node_id: "someone-else".into(),
            ..request("h1", "198.18.0.9")
        })
        .await
        .expect_err("the name is taken");
    assert!(err.to_string().contains(&first.node_id), "{err}");
    let node = read_node(raft.state(), &first.node_id).unwrap().unwrap();
    assert_eq!(node.address, "198.18.0.2", "nothing changed");
}

/// A session builds nothing until its stream asks: what changed before the
/// first ask goes out in the one message built then, and the message is counted
/// by kind as it is handed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_builds_its_message_only_when_the_stream_asks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raft = crate::server::test_leader(dir.path()).await;
    let clock = ManualClock::new(1_000_000);
    let dispatcher = Dispatcher::new(
        raft.clone(),
        DispatcherSettings::default(),
        Arc::new(clock.clone()),
        crate::keyring::Keyring::create(dir.path()).expect("keys"),
    );
    let loops = tokio::spawn(dispatcher.clone().run());
    let h1 = dispatcher
        .register(request("h1", "198.18.0.2"))
        .await
        .expect("h1 registers");
    let mut s1 = dispatcher
        .open_session(
            h1.node_id.clone(),
            h1.session_id.clone(),
            None,
            OnDemand::Tasks,
        )
        .expect("h1's session");
    let counted = |kind: &str| {
        raft.metrics()
            .session_messages
            .with_label_values(&[kind])
            .get()
    };
    for i in 0..3 {
        let task = Task {
            id: format!("t{i}"),
            service_id: "s1".into(),
            node_id: h1.node_id.clone(),
            desired_state: TaskState::Running as i32,
            spec_version: 1,
            ..Default::default()
        };
        commit(
            &raft,
            vec![put_kind(Kind::Task(Box::new(task)), Expect::Absent, 0)],
        )
        .await
        .expect("commit a task");
    }
    // Published and woken, but nobody asked: nothing is built.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counted(crate::metrics::SESSION_COMPLETE), 0);
    assert_eq!(counted(crate::metrics::SESSION_DELTA), 0);

    let Some(Message::Assignments(set)) = next(&mut s1).await.expect("a message").message else {
        panic!("the first message is the complete set")
    };
    assert_eq!(
        set.tasks.len(),
        3,
        "built at the ask, with every task so far"
    );
    assert_eq!(counted(crate::metrics::SESSION_COMPLETE), 1);
    assert!(
        raft.metrics()
            .session_bytes
            .with_label_values(&[crate::metrics::SESSION_COMPLETE])
            .get()
            > 0
    );
    loops.abort();
}

/// An agent from before endpoints by interest cannot ask to follow a
/// service: its session sends it every endpoint's serving tasks, as before.
/// An agent that asks gets the endpoint's head without them; one that gets
/// endpoints on demand gets none until it asks for a name of it (or runs
/// one of its tasks), then the whole endpoint, and every name it asked for
/// answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_cannot_ask_follows_every_endpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raft = crate::server::test_leader(dir.path()).await;
    let dispatcher = Dispatcher::new(
        raft.clone(),
        DispatcherSettings::default(),
        Arc::new(ManualClock::new(1_000_000)),
        crate::keyring::Keyring::create(dir.path()).expect("keys"),
    );
    let loops = tokio::spawn(dispatcher.clone().run());
    let old = dispatcher
        .register(request("old", "198.18.0.2"))
        .await
        .expect("old registers");
    let new = dispatcher
        .register(request("new", "198.18.0.3"))
        .await
        .expect("new registers");
    let runs = dispatcher
        .register(request("runs", "198.18.0.4"))
        .await
        .expect("runs registers");
    let lean = dispatcher
        .register(request("lean", "198.18.0.5"))
        .await
        .expect("lean registers");

    let address = |a: [u8; 4]| berth_proto::net::Ipv4Prefix::new(a.into(), 24);
    let service = berth_proto::v1::Service {
        id: "s1".into(),
        spec: Some(berth_proto::v1::ServiceSpec {
            name: "web".into(),
            ..Default::default()
        }),
        virtual_ips: [("n1".to_string(), address([10, 0, 0, 2]))].into(),
        ..Default::default()
    };
    let task = Task {
        id: "t1".into(),
        service_id: "s1".into(),
        node_id: runs.node_id.clone(),
        desired_state: TaskState::Running as i32,
        status: Some(berth_proto::v1::TaskStatus {
            state: TaskState::Running as i32,
            ..Default::default()
        }),
        addresses: [("n1".to_string(), address([10, 0, 0, 9]))].into(),
        ..Default::default()
    };
    commit(
        &raft,
        vec![
            put_kind(Kind::Service(Box::new(service)), Expect::Absent, 0),
            put_kind(Kind::Task(Box::new(task)), Expect::Absent, 0),
        ],
    )
    .await
    .expect("commit a service and its task");
    until("the endpoint published", || {
        dispatcher
            .hub
            .read()
            .endpoints
            .get("s1")
            .is_some_and(|e| !e.tasks.is_empty())
    })
    .await;

    let complete_set = |on_demand: OnDemand, node: &berth_proto::v1::RegisterResponse| {
        let mut stream = dispatcher
            .open_session(
                node.node_id.clone(),
                node.session_id.clone(),
                None,
                on_demand,
            )
            .expect("a session");
        async move {
            let Some(Message::Assignments(mut set)) =
                next(&mut stream).await.expect("a message").message
            else {
                panic!("the first message is the complete set")
            };
            berth_proto::assignments::unpack(&mut set).expect("the shared part decodes");
            set
        }
    };
    let serving = |set: &berth_proto::v1::Assignments| -> Vec<String> {
        set.endpoints
            .iter()
            .filter(|e| e.service_id == "s1")
            .flat_map(|e| e.tasks.iter().map(|t| t.task_id.clone()))
            .collect()
    };
    let old_set = complete_set(OnDemand::Nothing, &old).await;
    assert_eq!(serving(&old_set), ["t1"], "{:?}", old_set.endpoints);
    assert_eq!(old_set.followed, ["s1"]);
    let new_set = complete_set(OnDemand::Tasks, &new).await;
    assert!(
        new_set.endpoints.iter().any(|e| e.service_id == "s1"),
        "every node gets the head: {:?}",
        new_set.endpoints
    );
    assert!(serving(&new_set).is_empty(), "{:?}", new_set.endpoints);
    assert!(new_set.followed.is_empty());

    // Endpoints on demand: the node that runs s1's task gets it whole.
    let runs_set = complete_set(OnDemand::Endpoints, &runs).await;
    assert!(runs_set.heads_on_demand);
    assert_eq!(serving(&runs_set), ["t1"], "{:?}", runs_set.endpoints);
    assert_eq!(runs_set.followed, ["s1"]);
    // Another gets nothing of it until it asks for its name.
    let mut stream = dispatcher
        .open_session(
            lean.node_id.clone(),
            lean.session_id.clone(),
            None,
            OnDemand::Endpoints,
        )
        .expect("a session");
    let Some(Message::Assignments(mut set)) = next(&mut stream).await.expect("a message").message
    else {
        panic!("the first message is the complete set")
    };
    berth_proto::assignments::unpack(&mut set).expect("the shared part decodes");
    assert!(set.endpoints.is_empty(), "no head: {:?}", set.endpoints);
    assert!(set.answered_names.is_empty());
    dispatcher
        .follow(
            &lean.node_id,
            &lean.session_id,
            Vec::new(),
            vec!["Web".into(), "nothing".into()],
        )
        .expect("follow by name");
    let Some(Message::Delta(delta)) = next(&mut stream).await.expect("a message").message else {
        panic!("then deltas")
    };
    assert_eq!(delta.answered_names, ["nothing", "web"]);
    assert_eq!(delta.followed, ["s1"]);
    berth_proto::assignments::apply(&mut set, delta).expect("applies");
    assert_eq!(
        serving(&set),
        ["t1"],
        "the whole endpoint: {:?}",
        set.endpoints
    );
    assert_eq!(set.endpoints[0].service_name, "web");

    // A new session (the agent registers again, as after a leader change):
    // told the names before its stream opens, its first message, a delta
    // from the set it holds, keeps the endpoint.
    drop(stream);
    let again = dispatcher
        .register(RegisterRequest {
            node_id: lean.node_id.clone(),
            ..request("lean", "198.18.0.5")
        })
        .await
        .expect("lean registers again");
    dispatcher
        .follow(
            &again.node_id,
            &again.session_id,
            Vec::new(),
            vec!["web".into()],
        )
        .expect("follow by name before the stream");
    let mut resumed = dispatcher
        .open_session(
            again.node_id.clone(),
            again.session_id.clone(),
            Some(berth_proto::assignments::held_set(&set)),
            OnDemand::Endpoints,
        )
        .expect("the new session");
    let Some(Message::Delta(delta)) = next(&mut resumed).await.expect("a message").message else {
        panic!("a session with a held set starts with a delta")
    };
    assert!(delta.removed_endpoints.is_empty(), "{delta:?}");
    assert!(delta.heads_on_demand);
    berth_proto::assignments::apply(&mut set, delta).expect("applies");
    assert_eq!(serving(&set), ["t1"]);
    assert!(set.answered_names.contains(&"web".to_string()));

    loops.abort();
}
