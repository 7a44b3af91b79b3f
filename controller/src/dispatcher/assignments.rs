//! The session stream: the node's complete assignment set, sent again whenever
//! it changes (desired states, specs, networks, node list).

use std::pin::Pin;
use std::time::Duration;

use berth_proto::v1::{
    Assignments, Endpoint, NotLeader, SessionMessage, Task, TaskState, session_message,
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::Status;
use tracing::debug;

use super::{Dispatcher, endpoints};
use crate::leader::{read_networks, read_view};
use crate::raft::RaftHandle;
use crate::store::watch::touches_workloads;

type SessionStream = Pin<Box<dyn Stream<Item = Result<SessionMessage, Status>> + Send>>;

/// What the agent acts on; the set is re-sent when this changes.
#[derive(PartialEq)]
struct Fingerprint {
    tasks: Vec<(String, i32, u64)>,
    networks: Vec<(String, u64)>,
    nodes: Vec<(String, String, i32, u64)>,
    endpoints: Vec<Endpoint>,
}

fn fingerprint(a: &Assignments) -> Fingerprint {
    Fingerprint {
        tasks: a
            .tasks
            .iter()
            .map(|t| (t.id.clone(), t.desired_state, t.spec_version))
            .collect(),
        networks: a
            .networks
            .iter()
            .map(|n| (n.id.clone(), n.version))
            .collect(),
        nodes: a
            .nodes
            .iter()
            .map(|n| (n.id.clone(), n.address.clone(), n.status, n.version))
            .collect(),
        endpoints: a.endpoints.clone(),
    }
}

/// The tasks a node must know about: those that should run there, and those it
/// must still stop.
pub fn compute(raft: &RaftHandle, node_id: &str) -> Result<Assignments, Status> {
    let sm = raft.state();
    let store_err = |e: crate::store::StoreError| Status::internal(e.to_string());
    let view = read_view(sm).map_err(store_err)?;
    let networks = read_networks(sm).map_err(store_err)?;
    let tasks: Vec<Task> = view
        .tasks
        .iter()
        .filter(|task| {
            if task.node_id != node_id {
                return false;
            }
            let observed = task
                .status
                .as_ref()
                .and_then(|s| TaskState::try_from(s.state).ok())
                .unwrap_or(TaskState::New);
            let desired = TaskState::try_from(task.desired_state).unwrap_or(TaskState::Running);
            desired <= TaskState::Running || !observed.is_terminal()
        })
        .cloned()
        .collect();
    let endpoints = endpoints::compute(&view.services, &view.tasks, &view.nodes);
    Ok(Assignments {
        tasks,
        networks,
        nodes: view.nodes,
        revision: sm.revision().map_err(store_err)?,
        endpoints,
        node_id: node_id.to_string(),
    })
}

pub fn stream(dispatcher: Dispatcher, node_id: String, session_id: String) -> SessionStream {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let (_, mut live) = match dispatcher.raft.state().watch().subscribe(0) {
            Ok(sub) => sub,
            Err(err) => {
                let _ = tx.send(Err(Status::internal(err.to_string()))).await;
                return;
            }
        };
        let mut last: Option<Fingerprint> = None;
        loop {
            let status = dispatcher.raft.status().get();
            if !status.is_leader() {
                let msg = SessionMessage {
                    message: Some(session_message::Message::NotLeader(NotLeader {
                        leader_address: status.leader_address().unwrap_or_default().to_string(),
                    })),
                };
                let _ = tx.send(Ok(msg)).await;
                return;
            }
            if !dispatcher.check_session(&node_id, &session_id) {
                let _ = tx
                    .send(Err(Status::not_found(
                        "session replaced or expired; register again",
                    )))
                    .await;
                return;
            }
            match compute(&dispatcher.raft, &node_id) {
                Ok(assignments) => {
                    let print = fingerprint(&assignments);
                    if last.as_ref() != Some(&print) {
                        debug!(node = %node_id, tasks = assignments.tasks.len(), "pushing assignments");
                        let msg = SessionMessage {
                            message: Some(session_message::Message::Assignments(assignments)),
                        };
                        if tx.send(Ok(msg)).await.is_err() {
                            return;
                        }
                        last = Some(print);
                    }
                }
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
            // Wait for a relevant change (coalescing bursts) or a periodic re-check.
            loop {
                tokio::select! {
                    event = live.recv() => {
                        if let Ok(event) = &event
                            && !touches_workloads(event)
                        {
                            continue;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        while live.try_recv().is_ok() {}
                        break;
                    }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => break,
                    _ = tx.closed() => return,
                }
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
