//! The session against an in-process fake dispatcher, driving a fake runner:
//! no controller, no containers.

use std::sync::Arc;

use berth_proto::v1::session_message::Message;
use berth_proto::v1::{
    Assignments, NotLeader, SessionMessage, Task, TaskState, TaskStatus, TaskStatusUpdate,
};
use tokio::task::JoinHandle;

use super::fake_dispatcher::{FakeDispatcher, wait_until};
use super::fake_runner::FakeRunner;
use super::{NodeIdentity, SessionConfig};

/// A running session with `controllers`, its data dir and its runner.
struct Agent {
    runner: Arc<FakeRunner>,
    data_dir: tempfile::TempDir,
    session: JoinHandle<()>,
}

impl Agent {
    fn start(controllers: &[&FakeDispatcher]) -> Agent {
        let data_dir = tempfile::tempdir().expect("a data dir");
        let config = SessionConfig {
            data_dir: data_dir.path().to_path_buf(),
            controllers: controllers.iter().map(|c| c.address.clone()).collect(),
            name: "n1".into(),
            advertise: "127.0.0.1".into(),
            labels: Default::default(),
            api_port: 4701,
            // The fake dispatcher speaks plain gRPC; TLS is tested end to end.
            security: berth_pki::Security::Plaintext,
            renew_now: Default::default(),
        };
        let (runner, updates) = FakeRunner::new();
        let session = tokio::spawn({
            let runner = runner.clone();
            async move {
                let ended = super::run(config, runner, updates).await;
                panic!("the session ended: {ended:?}");
            }
        });
        Agent {
            runner,
            data_dir,
            session,
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.session.abort();
    }
}

fn set(revision: u64, tasks: &[&str]) -> Assignments {
    Assignments {
        node_id: "node-7".into(),
        revision,
        tasks: tasks
            .iter()
            .map(|id| Task {
                id: id.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn assignments(set: Assignments) -> SessionMessage {
    SessionMessage {
        message: Some(Message::Assignments(set)),
    }
}

fn running(task: &str) -> TaskStatusUpdate {
    TaskStatusUpdate {
        task_id: task.into(),
        status: Some(TaskStatus {
            state: TaskState::Running.into(),
            container_id: format!("c-{task}"),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn registers_stores_its_node_id_and_registers_with_it_again() {
    let controller = FakeDispatcher::start("node-7").await;
    let agent = Agent::start(&[&controller]);
    controller
        .wait_until("a session", |s| s.sessions.len() == 1)
        .await;
    controller.seen(|s| {
        let first = &s.registers[0];
        assert_eq!(first.node_id, "", "a new agent has no id yet");
        assert_eq!(first.name, "n1");
        assert_eq!(first.address, "127.0.0.1");
        assert_eq!(first.api_address, "127.0.0.1:4701");
        assert_eq!(s.sessions[0].node_id, "node-7");
        assert_eq!(s.sessions[0].session_id, "session-1");
    });
    let stored = NodeIdentity::load(agent.data_dir.path()).expect("the identity file");
    assert_eq!(stored.node_id, "node-7");

    controller.end_stream();
    controller
        .wait_until("a second registration", |s| s.registers.len() == 2)
        .await;
    controller.seen(|s| assert_eq!(s.registers[1].node_id, "node-7"));
}

#[tokio::test]
async fn follows_a_not_leader_message_to_the_leader() {
    let (follower, leader) = (
        FakeDispatcher::start("node-7").await,
        FakeDispatcher::start("node-7").await,
    );
    let agent = Agent::start(&[&follower]);
    follower
        .send(SessionMessage {
            message: Some(Message::NotLeader(NotLeader {
                leader_address: leader.address.clone(),
            })),
        })
        .await;
    leader
        .wait_until("a session with the leader", |s| s.sessions.len() == 1)
        .await;
    leader.send(assignments(set(3, &["t1"]))).await;
    wait_until("the leader's set", || {
        agent.runner.sets() == [set(3, &["t1"])]
    })
    .await;
    assert_eq!(follower.seen(|s| s.registers.len()), 1);
}

#[tokio::test]
async fn follows_a_refused_registration_to_the_leader() {
    let (follower, leader) = (
        FakeDispatcher::start("node-7").await,
        FakeDispatcher::start("node-7").await,
    );
    follower.redirect_to(&leader.address);
    let _agent = Agent::start(&[&follower]);
    leader
        .wait_until("a session with the leader", |s| s.sessions.len() == 1)
        .await;
    assert_eq!(follower.seen(|s| s.sessions.len()), 0);
}

#[tokio::test]
async fn a_lost_stream_means_registering_again_without_stopping_tasks() {
    let controller = FakeDispatcher::start("node-7").await;
    let agent = Agent::start(&[&controller]);
    controller.send(assignments(set(1, &["t1", "t2"]))).await;
    wait_until("the first set", || agent.runner.sets().len() == 1).await;
    agent.runner.report(running("t1"));
    controller
        .wait_until("t1's status", |s| s.statuses.len() == 1)
        .await;

    controller.end_stream();
    controller
        .wait_until("a new session", |s| s.sessions.len() == 2)
        .await;
    // The runner was given nothing new: t1 and t2 keep running.
    assert_eq!(agent.runner.sets(), [set(1, &["t1", "t2"])]);
    // What the old session reported may be lost: the new one reports it all.
    controller
        .wait_until("t1's status again", |s| s.statuses.len() == 2)
        .await;
    controller.seen(|s| {
        assert_eq!(s.statuses[1].updates, [running("t1")]);
        assert_eq!(s.statuses[1].session_id, "session-2");
    });
    // The new session's sets reach the runner.
    controller.send(assignments(set(2, &["t1"]))).await;
    wait_until("the second set", || agent.runner.sets().len() == 2).await;
    assert_eq!(agent.runner.sets()[1], set(2, &["t1"]));
}

#[tokio::test]
async fn status_reports_reach_the_dispatcher() {
    let controller = FakeDispatcher::start("node-7").await;
    let agent = Agent::start(&[&controller]);
    controller
        .wait_until("a session", |s| s.sessions.len() == 1)
        .await;
    agent.runner.report(running("t1"));
    agent.runner.report(running("t2"));
    controller
        .wait_until("both statuses", |s| {
            s.statuses.iter().map(|r| r.updates.len()).sum::<usize>() == 2
        })
        .await;
    controller.seen(|s| {
        let reported: Vec<&TaskStatusUpdate> = s.statuses.iter().flat_map(|r| &r.updates).collect();
        assert_eq!(reported, [&running("t1"), &running("t2")]);
        for request in &s.statuses {
            assert_eq!(request.node_id, "node-7");
            assert_eq!(request.session_id, "session-1");
        }
    });
}

#[tokio::test]
async fn heartbeats_carry_the_session_id() {
    let controller = FakeDispatcher::start("node-7").await;
    let _agent = Agent::start(&[&controller]);
    controller
        .wait_until("three heartbeats", |s| s.heartbeats.len() >= 3)
        .await;
    controller.seen(|s| {
        for beat in &s.heartbeats {
            assert_eq!(beat.node_id, "node-7");
            assert_eq!(beat.session_id, "session-1");
        }
    });
}

#[tokio::test]
async fn heartbeats_go_on_one_stream_or_as_calls_to_an_older_controller() {
    let controller = FakeDispatcher::start("node-7").await;
    let _agent = Agent::start(&[&controller]);
    controller
        .wait_until("three heartbeats", |s| s.heartbeats.len() >= 3)
        .await;
    assert_eq!(controller.seen(|s| s.heartbeat_calls), 0, "on the stream");

    let older = FakeDispatcher::start("node-8").await;
    older.without_heartbeat_stream();
    let _agent = Agent::start(&[&older]);
    older
        .wait_until("three heartbeats", |s| s.heartbeat_calls >= 3)
        .await;
    older.seen(|s| {
        assert_eq!(s.heartbeats.len(), s.heartbeat_calls, "calls only");
        assert!(s.heartbeats.iter().all(|b| b.session_id == "session-1"));
    });
}

#[tokio::test]
async fn each_applied_shared_sequence_is_acknowledged_on_the_session() {
    let controller = FakeDispatcher::start("node-7").await;
    let agent = Agent::start(&[&controller]);
    controller
        .wait_until("a session", |s| s.sessions.len() == 1)
        .await;
    agent.runner.applied.send_replace(12);
    controller
        .wait_until("an ack of 12", |s| {
            s.acks.last().is_some_and(|a| a.shared_seq == 12)
        })
        .await;
    agent.runner.applied.send_replace(13);
    controller
        .wait_until("an ack of 13", |s| {
            s.acks.last().is_some_and(|a| a.shared_seq == 13)
        })
        .await;
    controller.seen(|s| {
        assert!(
            s.acks.iter().all(|a| a.shared_seq >= 12),
            "nothing applied, nothing acknowledged"
        );
        for ack in &s.acks {
            assert_eq!(ack.node_id, "node-7");
            assert_eq!(ack.session_id, "session-1");
        }
    });
}
