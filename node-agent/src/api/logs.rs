//! `Agent.TaskLogs`: a task's output, for `berth service logs` (and `berth logs`).

use std::sync::Arc;

use berth_proto::v1::agent_server::Agent;
use berth_proto::v1::{TaskLogLine, TaskLogsRequest};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use crate::supervisor::{LogStream, Supervisor, SupervisorError};

pub(super) struct AgentApi {
    pub(super) supervisor: Arc<Supervisor>,
}

type LogLines =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<TaskLogLine, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for AgentApi {
    type TaskLogsStream = LogLines;

    async fn task_logs(
        &self,
        request: Request<TaskLogsRequest>,
    ) -> Result<Response<LogLines>, Status> {
        let req = request.into_inner();
        let tail = (req.tail > 0).then_some(req.tail as usize);
        let lines = self
            .supervisor
            .logs(&req.task_id, req.follow, tail)
            .await
            .map_err(|e| match e {
                SupervisorError::UnknownTask { .. } => Status::not_found(e.to_string()),
                other => Status::internal(other.to_string()),
            })?;
        let stream = lines.map(|line| {
            line.map(|l| TaskLogLine {
                stream: match l.stream {
                    LogStream::Stdout => 0,
                    LogStream::Stderr => 1,
                },
                line: l.text.into_bytes(),
                time: l.time,
            })
            .map_err(|e| Status::internal(e.to_string()))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
