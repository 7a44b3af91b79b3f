//! `service logs`: each task's output, fetched from the agent that runs it and
//! merged into one stream.

use std::time::Duration;

use berth_pki::{Role, Security};
use berth_proto::store::object::Kind;
use berth_proto::v1::agent_client::AgentClient;
use berth_proto::v1::log_line::Stream as LogStream;
use berth_proto::v1::{LogLine, ServiceLogsRequest, Task, TaskLogLine, TaskLogsRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::debug;

use crate::raft::RaftHandle;
use crate::store::ObjectExt;
use crate::store::Table;
use crate::store::view::resolve;

pub type LogStreamOut = ReceiverStream<Result<LogLine, Status>>;

struct Source {
    task: Task,
    node_name: String,
    api_address: String,
}

pub async fn service_logs(
    raft: &RaftHandle,
    security: &Security,
    req: ServiceLogsRequest,
) -> Result<LogStreamOut, Status> {
    raft.read_barrier().await?;
    let service = resolve(raft.state(), Table::Service, &req.service)?;
    let service_id = service.id().to_string();
    let mut sources = Vec::new();
    for object in raft.state().list(Table::Task)? {
        let Some(Kind::Task(task)) = object.kind else {
            continue;
        };
        if task.service_id != service_id || task.node_id.is_empty() {
            continue;
        }
        let Some(node) = raft.state().get(Table::Node, &task.node_id)? else {
            continue;
        };
        let Some(Kind::Node(node)) = node.kind else {
            continue;
        };
        if node.api_address.is_empty() {
            continue;
        }
        sources.push(Source {
            task: *task,
            node_name: node.name,
            api_address: node.api_address,
        });
    }
    sources.sort_by_key(|s| (s.task.slot, s.task.id.clone()));
    let (tx, rx) = mpsc::channel(1024);
    let security = security.clone();
    tokio::spawn(async move {
        if req.follow {
            for source in sources {
                let tx = tx.clone();
                let security = security.clone();
                tokio::spawn(async move { forward(security, source, true, req.tail, tx).await });
            }
        } else {
            for source in sources {
                forward(security.clone(), source, false, req.tail, tx.clone()).await;
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

async fn forward(
    security: Security,
    source: Source,
    follow: bool,
    tail: u64,
    tx: mpsc::Sender<Result<LogLine, Status>>,
) {
    let url = format!("http://{}", source.api_address);
    let channel = match tonic::transport::Endpoint::from_shared(url) {
        Ok(e) => {
            let endpoint = e.connect_timeout(Duration::from_secs(2));
            berth_pki::tls::connect(endpoint, &security, Role::Agent).await
        }
        Err(e) => {
            debug!(%e, "bad agent address");
            return;
        }
    };
    let Ok(channel) = channel else {
        let _ = tx
            .send(Err(Status::unavailable(format!(
                "node {} ({}) does not answer for the logs of task {}",
                source.node_name, source.api_address, source.task.id
            ))))
            .await;
        return;
    };
    let mut client = AgentClient::new(channel);
    let stream = client
        .task_logs(TaskLogsRequest {
            task_id: source.task.id.clone(),
            follow,
            tail,
        })
        .await;
    let mut stream = match stream {
        Ok(s) => s.into_inner(),
        Err(status) if status.code() == tonic::Code::NotFound => return,
        Err(status) => {
            let _ = tx.send(Err(status)).await;
            return;
        }
    };
    while let Ok(Some(line)) = stream.message().await {
        let out = log_line(&source.task, &source.node_name, line);
        if tx.send(Ok(out)).await.is_err() {
            return;
        }
    }
}

/// An agent's line of `task`'s output as the CLI gets it.
pub(super) fn log_line(task: &Task, node_name: &str, line: TaskLogLine) -> LogLine {
    LogLine {
        task_id: task.id.clone(),
        slot: task.slot,
        node_name: node_name.to_string(),
        stream: if line.stream == 1 {
            LogStream::Stderr as i32
        } else {
            LogStream::Stdout as i32
        },
        line: line.line,
        time: line.time,
    }
}
