//! The `Dispatcher` gRPC service agents talk to: a thin shell over
//! [`crate::dispatcher::Dispatcher`].

use std::pin::Pin;

use berth_proto::v1::dispatcher_server::Dispatcher as DispatcherApi;
use berth_proto::v1::{
    AckSharedRequest, AckSharedResponse, FollowRequest, FollowResponse, HeartbeatRequest,
    HeartbeatResponse, RegisterRequest, RegisterResponse, SessionMessage, SessionRequest,
    UpdateTaskStatusRequest, UpdateTaskStatusResponse,
};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::ca::gate::caller;
use crate::dispatcher::registration::NodeCertificate;
use crate::dispatcher::{Dispatcher, OnDemand};

/// Services one Follow request may name (an agent asks for the names its
/// containers look up, a few at a time).
const MAX_FOLLOW: usize = 1024;

/// The longest name a Follow may ask for: a DNS name's length.
const MAX_NAME: usize = 253;

pub struct DispatcherService {
    dispatcher: Dispatcher,
}

impl DispatcherService {
    pub fn new(dispatcher: Dispatcher) -> Self {
        DispatcherService { dispatcher }
    }
}

/// An agent speaks only for the node its certificate names.
fn same_node<T>(request: &Request<T>, node_id: &str) -> Result<(), Status> {
    certified_for(
        caller(request).map(|identity| identity.node_id.as_str()),
        node_id,
    )
}

/// `certified`: the node id of the caller's certificate (none in plain text).
fn certified_for(certified: Option<&str>, node_id: &str) -> Result<(), Status> {
    match certified {
        Some(id) if id != node_id => Err(Status::permission_denied(format!(
            "this agent's certificate is for node {id}, not node {node_id}"
        ))),
        _ => Ok(()),
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<SessionMessage, Status>> + Send>>;
type HeartbeatStream = Pin<Box<dyn Stream<Item = Result<HeartbeatResponse, Status>> + Send>>;

impl DispatcherService {
    /// One heartbeat, from a call or a stream; `certified` is the node id of
    /// the caller's certificate (none in plain text).
    async fn beat(
        &self,
        certified: Option<&str>,
        req: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, Status> {
        certified_for(certified, &req.node_id)?;
        self.dispatcher.heartbeat(&req.node_id, &req.session_id)?;
        self.dispatcher
            .report_conflict(&req.node_id, &req.dataplane_conflict)
            .await?;
        Ok(HeartbeatResponse {
            period_ms: self.dispatcher.heartbeat_period().as_millis() as u64,
            ca_digest: self.dispatcher.ca_digest(),
        })
    }
}

#[tonic::async_trait]
impl DispatcherApi for DispatcherService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let cert = berth_pki::authorize::peer_certificate(&request);
        let mut req = request.into_inner();
        let cert = match cert {
            Some(cert) => {
                // Registering as an existing node needs that node's certificate.
                let id = cert.identity.node_id;
                if !req.node_id.is_empty() && req.node_id != id {
                    return Err(Status::permission_denied(format!(
                        "this agent's certificate is for node {id}; it cannot register as node {}",
                        req.node_id
                    )));
                }
                req.node_id = id;
                Some(NodeCertificate {
                    not_after_ms: cert.not_after_ms,
                    key_sha256: cert.public_key_sha256,
                    authority_key_id: cert.authority_key_id,
                })
            }
            None => None,
        };
        Ok(Response::new(
            self.dispatcher.register_certified(req, cert).await?,
        ))
    }

    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<SessionRequest>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        same_node(&request, &request.get_ref().node_id)?;
        let req = request.into_inner();
        let stream = self.dispatcher.open_session(
            req.node_id,
            req.session_id,
            req.held,
            OnDemand::of(req.follows_on_demand, req.heads_on_demand),
        )?;
        Ok(Response::new(Box::pin(
            stream.map(|m| m.map_err(Status::from)),
        )))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let certified = caller(&request).map(|identity| identity.node_id.clone());
        let answer = self
            .beat(certified.as_deref(), request.into_inner())
            .await?;
        Ok(Response::new(answer))
    }

    type HeartbeatsStream = HeartbeatStream;

    async fn heartbeats(
        &self,
        request: Request<Streaming<HeartbeatRequest>>,
    ) -> Result<Response<Self::HeartbeatsStream>, Status> {
        // The certificate is the connection's: one check for every beat.
        let certified = caller(&request).map(|identity| identity.node_id.clone());
        let mut beats = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let service = DispatcherService::new(self.dispatcher.clone());
        tokio::spawn(async move {
            loop {
                let answer = match beats.message().await {
                    Ok(Some(beat)) => service.beat(certified.as_deref(), beat).await,
                    Ok(None) => return,
                    Err(status) => Err(status),
                };
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn ack_shared(
        &self,
        request: Request<AckSharedRequest>,
    ) -> Result<Response<AckSharedResponse>, Status> {
        same_node(&request, &request.get_ref().node_id)?;
        let req = request.into_inner();
        self.dispatcher
            .ack_shared(&req.node_id, &req.session_id, req.shared_seq)?;
        Ok(Response::new(AckSharedResponse {}))
    }

    async fn follow(
        &self,
        request: Request<FollowRequest>,
    ) -> Result<Response<FollowResponse>, Status> {
        same_node(&request, &request.get_ref().node_id)?;
        let req = request.into_inner();
        if req.service_ids.len() > MAX_FOLLOW || req.names.len() > MAX_FOLLOW {
            return Err(Status::invalid_argument(format!(
                "follow: {} services and {} names in one request (at most {MAX_FOLLOW} each)",
                req.service_ids.len(),
                req.names.len()
            )));
        }
        if let Some(name) = req
            .names
            .iter()
            .find(|n| n.is_empty() || n.len() > MAX_NAME)
        {
            return Err(Status::invalid_argument(format!(
                "follow: the name {name:?} is no DNS name (1 to {MAX_NAME} characters)"
            )));
        }
        self.dispatcher
            .follow(&req.node_id, &req.session_id, req.service_ids, req.names)?;
        Ok(Response::new(FollowResponse {}))
    }

    async fn update_task_status(
        &self,
        request: Request<UpdateTaskStatusRequest>,
    ) -> Result<Response<UpdateTaskStatusResponse>, Status> {
        same_node(&request, &request.get_ref().node_id)?;
        let req = request.into_inner();
        self.dispatcher
            .update_task_status(&req.node_id, &req.session_id, req.updates)
            .await?;
        Ok(Response::new(UpdateTaskStatusResponse {}))
    }
}
