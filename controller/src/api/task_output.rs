//! One task's output for `berth logs` and an attached `berth run`: the lines
//! from the agent that runs it (opened as soon as the task has a node, so a
//! short task's output is not missed), then, with `wait`, its final record.
//! The store's watch says when the task is placed and when it ended.

use std::pin::Pin;
use std::time::Duration;

use berth_pki::Security;
use berth_proto::v1::agent_client::AgentClient;
use berth_proto::v1::{
    Task, TaskLogsRequest, TaskOutput, TaskOutputRequest, WatchEvent, task_output, watch_event,
};
use tokio::sync::broadcast;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::agent_link::{connect, node_of};
use crate::orchestrator::task::{is_terminal, observed};
use crate::raft::RaftHandle;
use crate::store::view::read_task;

pub type OutputStream = Pin<Box<dyn Stream<Item = Result<TaskOutput, Status>> + Send>>;

type Sender = mpsc::Sender<Result<TaskOutput, Status>>;

/// How often the agent is asked again while it does not know the task yet
/// (it learns of it from its session a moment after the store).
const AGENT_RETRY: Duration = Duration::from_millis(50);
/// A wait for the store without a change in between re-reads it this often.
const REREAD: Duration = Duration::from_secs(1);

/// Starts streaming `task`'s output as `req` asks.
pub fn stream(
    raft: RaftHandle,
    security: Security,
    task: Task,
    req: TaskOutputRequest,
) -> Result<OutputStream, Status> {
    // Subscribed before anything is read again: no change is missed.
    let (_, live) = raft
        .state()
        .watch()
        .subscribe(0)
        .map_err(|e| Status::internal(e.to_string()))?;
    let (tx, rx) = mpsc::channel(256);
    let mut follower = Follower {
        raft,
        live,
        task,
        gone: false,
    };
    tokio::spawn(async move {
        if let Err(status) = follower.run(&security, &req, &tx).await {
            let _ = tx.send(Err(status)).await;
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

struct Follower {
    raft: RaftHandle,
    live: broadcast::Receiver<std::sync::Arc<WatchEvent>>,
    /// The task as last seen (a removal keeps the last record).
    task: Task,
    gone: bool,
}

impl Follower {
    fn ended(&self) -> bool {
        self.gone || is_terminal(observed(&self.task))
    }

    /// Waits for the next change of the task (or `REREAD`), then takes it.
    async fn next_change(&mut self) -> Result<(), Status> {
        let id = self.task.id.clone();
        let deadline = tokio::time::sleep(REREAD);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                event = self.live.recv() => match event {
                    Ok(event) => {
                        if let Some(watch_event::Object::Task(t)) = &event.object
                            && t.id == id
                        {
                            if event.action == berth_proto::v1::WatchAction::Removed as i32 {
                                self.gone = true;
                            } else {
                                self.task = (**t).clone();
                            }
                            return Ok(());
                        }
                    }
                    // Fell behind or the store was replaced: read it again.
                    Err(_) => {
                        self.live = self.live.resubscribe();
                        return self.reread();
                    }
                },
                () = &mut deadline => return self.reread(),
            }
        }
    }

    fn reread(&mut self) -> Result<(), Status> {
        match read_task(self.raft.state(), &self.task.id)? {
            Some(t) => self.task = t,
            None => self.gone = true,
        }
        Ok(())
    }

    async fn run(
        &mut self,
        security: &Security,
        req: &TaskOutputRequest,
        tx: &Sender,
    ) -> Result<(), Status> {
        let follow = req.follow || req.wait;
        self.reread()?;
        while self.task.node_id.is_empty() && !self.ended() && follow {
            self.next_change().await?;
        }
        if !self.task.node_id.is_empty() {
            self.forward(security, follow, req.tail, tx).await?;
        }
        if req.wait {
            while !self.ended() {
                self.next_change().await?;
            }
            let exit = TaskOutput {
                item: Some(task_output::Item::Exit(self.task.clone())),
            };
            let _ = tx.send(Ok(exit)).await;
        }
        Ok(())
    }

    /// The agent's lines, until its output ends (with follow) or all are sent.
    async fn forward(
        &mut self,
        security: &Security,
        follow: bool,
        tail: u64,
        tx: &Sender,
    ) -> Result<(), Status> {
        let node = node_of(&self.raft, &self.task)?;
        let mut agent = AgentClient::new(connect(security, &node).await?);
        let request = TaskLogsRequest {
            task_id: self.task.id.clone(),
            follow,
            tail,
        };
        let mut lines = loop {
            match agent.task_logs(request.clone()).await {
                Ok(stream) => break stream.into_inner(),
                // Not there yet (or forgotten already: nothing to show).
                Err(status) if status.code() == Code::NotFound => {
                    if !follow || self.ended() {
                        return Ok(());
                    }
                    tokio::time::sleep(AGENT_RETRY).await;
                    self.reread()?;
                }
                Err(status) => return Err(status),
            }
        };
        while let Some(line) = lines.message().await? {
            let out = super::logs::log_line(&self.task, &node.name, line);
            let item = TaskOutput {
                item: Some(task_output::Item::Line(out)),
            };
            if tx.send(Ok(item)).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }
}
