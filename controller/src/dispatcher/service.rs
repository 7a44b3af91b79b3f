//! The `Dispatcher` gRPC service agents talk to.

use std::pin::Pin;
use std::time::Instant;

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object};
use berth_proto::v1::dispatcher_server::Dispatcher as DispatcherApi;
use berth_proto::v1::{
    HeartbeatRequest, HeartbeatResponse, Node, NodeAvailability, NodeStatus, RegisterRequest,
    RegisterResponse, SessionMessage, SessionRequest, Timestamps, UpdateTaskStatusRequest,
    UpdateTaskStatusResponse,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::info;

use super::{Dispatcher, Session, assignments, status};
use crate::api::common::{commit, new_id, now_ms, put, store_status};
use crate::raft::RaftHandle;

pub struct DispatcherService {
    dispatcher: Dispatcher,
}

impl DispatcherService {
    pub fn new(dispatcher: Dispatcher) -> Self {
        DispatcherService { dispatcher }
    }
}

/// Agents talk to the leader only; a follower tells them where it is.
pub(super) fn require_leader(raft: &RaftHandle) -> Result<(), Status> {
    let status = raft.status().get();
    if status.is_leader() {
        return Ok(());
    }
    let mut answer = Status::unavailable(match status.leader_address() {
        Some(addr) => format!("this controller is not the leader; the leader is at {addr}"),
        None => "no leader right now; retry".to_string(),
    });
    if let Some(addr) = status.leader_address()
        && let Ok(value) = addr.parse()
    {
        answer
            .metadata_mut()
            .insert(berth_proto::LEADER_METADATA, value);
    }
    Err(answer)
}

fn find_node(raft: &RaftHandle, req: &RegisterRequest) -> Result<Option<Node>, Status> {
    let sm = raft.state();
    let by_id = if req.node_id.is_empty() {
        None
    } else {
        sm.get("node", &req.node_id).map_err(store_status)?
    };
    let found = match by_id {
        Some(obj) => Some(obj),
        None => match sm.id_by_name("node", &req.name).map_err(store_status)? {
            Some(id) => sm.get("node", &id).map_err(store_status)?,
            None => None,
        },
    };
    Ok(found.and_then(|o| match o.kind {
        Some(Kind::Node(n)) => Some(n),
        _ => None,
    }))
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<SessionMessage, Status>> + Send>>;

#[tonic::async_trait]
impl DispatcherApi for DispatcherService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let raft = &self.dispatcher.raft;
        require_leader(raft)?;
        let req = request.into_inner();
        if req.name.is_empty() {
            return Err(Status::invalid_argument("a node needs a name"));
        }
        let existing = find_node(raft, &req)?;
        let now = now_ms();
        let (node, expect, version) = match existing {
            Some(mut node) => {
                if !req.node_id.is_empty() && node.id != req.node_id {
                    return Err(Status::already_exists(format!(
                        "node name {} is taken by node {}; give this agent another --name",
                        req.name, node.id
                    )));
                }
                let version = node.version;
                node.address = req.address.clone();
                node.api_address = req.api_address.clone();
                node.labels.extend(req.labels.clone());
                node.resources = req.resources;
                node.status = NodeStatus::Ready as i32;
                node.status_message = String::new();
                if let Some(ts) = node.timestamps.as_mut() {
                    ts.updated_ms = now;
                }
                (node, Expect::Version, version)
            }
            None => (
                Node {
                    id: if req.node_id.is_empty() {
                        new_id()
                    } else {
                        req.node_id.clone()
                    },
                    name: req.name.clone(),
                    address: req.address.clone(),
                    api_address: req.api_address.clone(),
                    labels: req.labels.clone(),
                    resources: req.resources,
                    availability: NodeAvailability::Active as i32,
                    status: NodeStatus::Ready as i32,
                    timestamps: Some(Timestamps {
                        created_ms: now,
                        updated_ms: now,
                    }),
                    ..Default::default()
                },
                Expect::Absent,
                0,
            ),
        };
        let node_id = node.id.clone();
        commit(
            raft,
            vec![put(
                Object {
                    kind: Some(Kind::Node(node)),
                },
                expect,
                version,
            )],
        )
        .await?;
        let session_id = new_id();
        self.dispatcher.sessions().insert(
            node_id.clone(),
            Session {
                id: session_id.clone(),
                last_heartbeat: Instant::now(),
            },
        );
        info!(node = %node_id, name = %req.name, address = %req.address, "agent registered");
        Ok(Response::new(RegisterResponse {
            node_id,
            session_id,
            heartbeat_period_ms: self.dispatcher.settings.heartbeat_period.as_millis() as u64,
        }))
    }

    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<SessionRequest>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        require_leader(&self.dispatcher.raft)?;
        let req = request.into_inner();
        if !self.dispatcher.check_session(&req.node_id, &req.session_id) {
            return Err(Status::not_found(
                "unknown session (the leader changed?); register again",
            ));
        }
        Ok(Response::new(assignments::stream(
            self.dispatcher.clone(),
            req.node_id,
            req.session_id,
        )))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        require_leader(&self.dispatcher.raft)?;
        let req = request.into_inner();
        if !self.dispatcher.touch(&req.node_id, &req.session_id) {
            return Err(Status::not_found(
                "unknown session (the leader changed?); register again",
            ));
        }
        Ok(Response::new(HeartbeatResponse {
            period_ms: self.dispatcher.settings.heartbeat_period.as_millis() as u64,
        }))
    }

    async fn update_task_status(
        &self,
        request: Request<UpdateTaskStatusRequest>,
    ) -> Result<Response<UpdateTaskStatusResponse>, Status> {
        require_leader(&self.dispatcher.raft)?;
        let req = request.into_inner();
        if !self.dispatcher.touch(&req.node_id, &req.session_id) {
            return Err(Status::not_found(
                "unknown session (the leader changed?); register again",
            ));
        }
        status::apply(&self.dispatcher.raft, &req.node_id, req.updates).await?;
        Ok(Response::new(UpdateTaskStatusResponse {}))
    }
}
