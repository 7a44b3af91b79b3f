//! `Exec`: `berth exec` and `berth attach`. Resolves the task (`exec::target`:
//! it must be running), dials the agent of its node with this controller's
//! certificate and proxies the bidirectional stream to its `AgentExec`, the
//! task id in place of what the user typed.

use std::pin::Pin;
use std::time::Duration;

use berth_pki::{Role, Security};
use berth_proto::v1::agent_exec_client::AgentExecClient;
use berth_proto::v1::exec_server::Exec;
use berth_proto::v1::{AttachInput, ExecInput, ExecOutput, Node, attach_input, exec_input};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use crate::exec::{ExecTargetError, target};
use crate::raft::RaftHandle;

pub struct ExecApi {
    raft: RaftHandle,
    security: Security,
}

impl ExecApi {
    pub fn new(raft: RaftHandle, security: Security) -> ExecApi {
        ExecApi { raft, security }
    }

    /// The running task `key` names, and a channel to its node's agent.
    async fn resolve(&self, key: &str) -> Result<(String, Channel), Status> {
        self.raft.read_barrier().await?;
        let target = target(self.raft.state(), key).map_err(|e| match e {
            ExecTargetError::Lookup(l) => Status::from(l),
            other => Status::failed_precondition(other.to_string()),
        })?;
        let channel = dial(&self.security, &target.node).await?;
        Ok((target.task.id, channel))
    }
}

type Outputs = Pin<Box<dyn Stream<Item = Result<ExecOutput, Status>> + Send>>;

/// How many messages may wait on their way to the agent.
const BUFFER: usize = 64;

async fn dial(security: &Security, node: &Node) -> Result<Channel, Status> {
    let unavailable = |why: String| {
        Status::unavailable(format!(
            "node {} ({}) does not answer: {why}",
            node.name, node.api_address
        ))
    };
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", node.api_address))
        .map_err(|e| unavailable(e.to_string()))?
        .connect_timeout(Duration::from_secs(2));
    berth_pki::tls::connect(endpoint, security, Role::Agent)
        .await
        .map_err(|e| unavailable(e.to_string()))
}

/// Passes the caller's messages after the first on to the agent.
fn forward<T: Send + 'static>(mut inbound: Streaming<T>, tx: mpsc::Sender<T>) {
    tokio::spawn(async move {
        while let Ok(Some(msg)) = inbound.message().await {
            if tx.send(msg).await.is_err() {
                return;
            }
        }
    });
}

#[tonic::async_trait]
impl Exec for ExecApi {
    type ExecStream = Outputs;
    type AttachStream = Outputs;

    async fn exec(
        &self,
        request: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Outputs>, Status> {
        let mut inbound = request.into_inner();
        let mut start = match inbound.message().await?.and_then(|m| m.input) {
            Some(exec_input::Input::Start(start)) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be `start`",
                ));
            }
        };
        if start.command.is_empty() {
            return Err(Status::invalid_argument("exec needs a command"));
        }
        let (task_id, channel) = self.resolve(&start.task).await?;
        start.task = task_id;
        let (tx, rx) = mpsc::channel(BUFFER);
        let first = ExecInput {
            input: Some(exec_input::Input::Start(start)),
        };
        tx.send(first)
            .await
            .map_err(|_| Status::internal("exec stream closed"))?;
        forward(inbound, tx);
        let outputs = AgentExecClient::new(channel)
            .exec(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Response::new(Box::pin(outputs)))
    }

    async fn attach(
        &self,
        request: Request<Streaming<AttachInput>>,
    ) -> Result<Response<Outputs>, Status> {
        let mut inbound = request.into_inner();
        let mut start = match inbound.message().await?.and_then(|m| m.input) {
            Some(attach_input::Input::Start(start)) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be `start`",
                ));
            }
        };
        let (task_id, channel) = self.resolve(&start.task).await?;
        start.task = task_id;
        let (tx, rx) = mpsc::channel(BUFFER);
        let first = AttachInput {
            input: Some(attach_input::Input::Start(start)),
        };
        tx.send(first)
            .await
            .map_err(|_| Status::internal("attach stream closed"))?;
        forward(inbound, tx);
        let outputs = AgentExecClient::new(channel)
            .attach(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Response::new(Box::pin(outputs)))
    }
}
