//! The `Dispatcher` gRPC service agents talk to: a thin shell over
//! [`crate::dispatcher::Dispatcher`].

use std::pin::Pin;

use berth_proto::v1::dispatcher_server::Dispatcher as DispatcherApi;
use berth_proto::v1::{
    HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse, SessionMessage,
    SessionRequest, UpdateTaskStatusRequest, UpdateTaskStatusResponse,
};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::dispatcher::Dispatcher;

pub struct DispatcherService {
    dispatcher: Dispatcher,
}

impl DispatcherService {
    pub fn new(dispatcher: Dispatcher) -> Self {
        DispatcherService { dispatcher }
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<SessionMessage, Status>> + Send>>;

#[tonic::async_trait]
impl DispatcherApi for DispatcherService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        Ok(Response::new(
            self.dispatcher.register(request.into_inner()).await?,
        ))
    }

    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<SessionRequest>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let req = request.into_inner();
        let stream = self.dispatcher.open_session(req.node_id, req.session_id)?;
        Ok(Response::new(Box::pin(
            stream.map(|m| m.map_err(Status::from)),
        )))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let req = request.into_inner();
        self.dispatcher.heartbeat(&req.node_id, &req.session_id)?;
        Ok(Response::new(HeartbeatResponse {
            period_ms: self.dispatcher.heartbeat_period().as_millis() as u64,
        }))
    }

    async fn update_task_status(
        &self,
        request: Request<UpdateTaskStatusRequest>,
    ) -> Result<Response<UpdateTaskStatusResponse>, Status> {
        let req = request.into_inner();
        self.dispatcher
            .update_task_status(&req.node_id, &req.session_id, req.updates)
            .await?;
        Ok(Response::new(UpdateTaskStatusResponse {}))
    }
}
