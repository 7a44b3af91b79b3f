//! `AgentTasks`: a controller acts on a running task of this node — a signal
//! (`berth kill`, Ctrl-C on an attached `berth run`) or a stop (`berth stop`).

use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::agent_tasks_server::AgentTasks;
use berth_proto::v1::{AgentStopRequest, AgentStopResponse, SignalTaskRequest, SignalTaskResponse};
use tonic::{Request, Response, Status};

use crate::supervisor::{Supervisor, SupervisorError};

pub(super) struct AgentTasksApi {
    pub(super) supervisor: Arc<Supervisor>,
}

fn status(err: SupervisorError) -> Status {
    match err {
        SupervisorError::UnknownTask { .. } => Status::not_found(err.to_string()),
        SupervisorError::Task { .. } => Status::failed_precondition(err.to_string()),
        other => Status::internal(other.to_string()),
    }
}

#[tonic::async_trait]
impl AgentTasks for AgentTasksApi {
    async fn signal(
        &self,
        request: Request<SignalTaskRequest>,
    ) -> Result<Response<SignalTaskResponse>, Status> {
        let req = request.into_inner();
        self.supervisor
            .signal(&req.task_id, &req.signal)
            .await
            .map_err(status)?;
        Ok(Response::new(SignalTaskResponse {}))
    }

    async fn stop(
        &self,
        request: Request<AgentStopRequest>,
    ) -> Result<Response<AgentStopResponse>, Status> {
        let req = request.into_inner();
        let grace = (!req.use_task_grace).then(|| Duration::from_millis(req.grace_ms));
        let how = self
            .supervisor
            .stop_task(&req.task_id, grace)
            .await
            .map_err(status)?;
        Ok(Response::new(AgentStopResponse { how }))
    }
}
