//! The `Volumes` service (`berth volume create/ls/inspect/rm`): volume records
//! in the store, and the volume's data on its node through that node's agent
//! (`AgentVolumes`, dialled as `logs.rs` dials `Agent`).

use std::time::Duration;

use berth_pki::{Role, Security};
use berth_proto::store::Expect;
use berth_proto::store::object::Kind;
use berth_proto::v1::agent_volumes_client::AgentVolumesClient;
use berth_proto::v1::volumes_server::Volumes;
use berth_proto::v1::{
    AgentVolumeReply, AgentVolumeRequest, CreateVolumeRequest, GetVolumeRequest,
    ListVolumesRequest, ListVolumesResponse, Node, NodeStatus, RemoveVolumeRequest,
    RemoveVolumeResponse, Timestamps, Volume, VolumeInfo,
};
use tonic::{Request, Response, Status};

use crate::clock::now_ms;
use crate::ids::new_id;
use crate::raft::RaftHandle;
use crate::scheduler::volumes::{LOCAL_DRIVER, node_name};
use crate::store::commit::commit_one;
use crate::store::view::{LookupError, read_node, resolve};
use crate::store::{CommitError, Refusal, Table, commit, delete, put_kind, read_view};
use crate::volumes::{in_use, info};

pub struct VolumesApi {
    raft: RaftHandle,
    /// How this controller calls agents.
    security: Security,
}

impl VolumesApi {
    pub fn new(raft: RaftHandle, security: Security) -> VolumesApi {
        VolumesApi { raft, security }
    }

    fn volume(&self, key: &str) -> Result<Volume, Status> {
        match resolve(self.raft.state(), Table::Volume, key)?.kind {
            Some(Kind::Volume(v)) => Ok(v),
            _ => Err(Status::internal("the store returned a non-volume object")),
        }
    }

    /// The volume of exactly this name.
    fn by_name(&self, name: &str) -> Result<Option<Volume>, Status> {
        let sm = self.raft.state();
        let Some(id) = sm.id_by_name(Table::Volume, name)? else {
            return Ok(None);
        };
        Ok(sm.get(Table::Volume, &id)?.and_then(|o| match o.kind {
            Some(Kind::Volume(v)) => Some(v),
            _ => None,
        }))
    }

    /// Calls the agent of `node` about volume `name`.
    async fn agent(
        &self,
        node: &Node,
        name: &str,
        call: AgentCall,
    ) -> Result<AgentVolumeReply, String> {
        let who = node_name(node);
        if node.status != NodeStatus::Ready as i32 {
            return Err(format!("node {who} is not ready"));
        }
        if node.api_address.is_empty() {
            return Err(format!("node {who} has no agent API address"));
        }
        let endpoint =
            tonic::transport::Endpoint::from_shared(format!("http://{}", node.api_address))
                .map_err(|e| format!("node {who}: bad agent address {}: {e}", node.api_address))?
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(30));
        let channel = berth_pki::tls::connect(endpoint, &self.security, Role::Agent)
            .await
            .map_err(|e| format!("node {who} ({}) does not answer: {e}", node.api_address))?;
        let mut client = AgentVolumesClient::new(channel);
        let request = AgentVolumeRequest {
            name: name.to_string(),
        };
        let reply = match call {
            AgentCall::Create => client.create(request).await,
            AgentCall::Inspect => client.inspect(request).await,
            AgentCall::Remove => client.remove(request).await,
        };
        reply
            .map(Response::into_inner)
            .map_err(|s| format!("node {who}: {}", s.message()))
    }
}

#[derive(Clone, Copy)]
enum AgentCall {
    Create,
    Inspect,
    Remove,
}

fn unavailable(what: String) -> Status {
    Status::unavailable(what)
}

#[tonic::async_trait]
impl Volumes for VolumesApi {
    async fn create(
        &self,
        r: Request<CreateVolumeRequest>,
    ) -> Result<Response<VolumeInfo>, Status> {
        let req = r.into_inner();
        berth_proto::mounts::check_volume_name(&req.name).map_err(Status::invalid_argument)?;
        if !req.driver.is_empty() && req.driver != LOCAL_DRIVER {
            return Err(Status::invalid_argument(format!(
                "volume {}: driver {:?} is unknown (berth has the local driver only)",
                req.name, req.driver
            )));
        }
        self.raft.read_barrier().await?;
        let node = if req.node.is_empty() {
            None
        } else {
            match resolve(self.raft.state(), Table::Node, &req.node)?.kind {
                Some(Kind::Node(n)) => Some(n),
                _ => return Err(Status::internal("the store returned a non-node object")),
            }
        };
        // As Docker: creating a volume that exists gives the existing one,
        // unless it is asked for on another node.
        let existing = self.by_name(&req.name)?;
        if let Some(existing) = &existing {
            let same = match &node {
                None => true,
                Some(n) if existing.node_id == n.id => true,
                Some(_) if existing.node_id.is_empty() => false,
                Some(_) => {
                    let view = read_view(self.raft.state())?;
                    return Err(Status::already_exists(format!(
                        "volume {} already exists on node {}",
                        req.name,
                        info(&view, existing.clone()).node_name
                    )));
                }
            };
            if same {
                let view = read_view(self.raft.state())?;
                return Ok(Response::new(info(&view, existing.clone())));
            }
        }
        let mut mountpoint = String::new();
        if let Some(node) = &node {
            // The data first: a volume on a node that cannot make it is not made.
            let reply = self
                .agent(node, &req.name, AgentCall::Create)
                .await
                .map_err(|e| {
                    unavailable(format!("volume {}: {e}; nothing was created", req.name))
                })?;
            mountpoint = reply.mountpoint;
        }
        let now = now_ms();
        let (volume, expect, version) = match existing {
            // Made without a node earlier: it is put on the node asked for.
            Some(v) => {
                let version = v.version;
                let volume = Volume {
                    node_id: node.as_ref().map(|n| n.id.clone()).unwrap_or_default(),
                    ..v
                };
                (volume, Expect::Version, version)
            }
            None => (
                Volume {
                    id: new_id(),
                    name: req.name.clone(),
                    driver: LOCAL_DRIVER.to_string(),
                    node_id: node.as_ref().map(|n| n.id.clone()).unwrap_or_default(),
                    labels: req.labels,
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
        let written =
            commit_one(&self.raft, put_kind(Kind::Volume(volume), expect, version)).await?;
        let Some(Kind::Volume(volume)) = written.kind else {
            return Err(Status::internal("the store returned a non-volume object"));
        };
        let mut shown = info(&read_view(self.raft.state())?, volume);
        shown.mountpoint = mountpoint;
        Ok(Response::new(shown))
    }

    async fn list(
        &self,
        _r: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        self.raft.read_barrier().await?;
        let view = read_view(self.raft.state())?;
        let mut volumes: Vec<VolumeInfo> = view
            .volumes
            .iter()
            .map(|v| info(&view, v.clone()))
            .collect();
        volumes.sort_by(|a, b| {
            let name = |i: &VolumeInfo| i.volume.as_ref().map(|v| v.name.clone());
            name(a).cmp(&name(b))
        });
        Ok(Response::new(ListVolumesResponse { volumes }))
    }

    async fn get(&self, r: Request<GetVolumeRequest>) -> Result<Response<VolumeInfo>, Status> {
        let key = r.into_inner().name;
        self.raft.read_barrier().await?;
        let volume = self.volume(&key)?;
        let node = read_node(self.raft.state(), &volume.node_id)?;
        let name = volume.name.clone();
        let mut shown = info(&read_view(self.raft.state())?, volume);
        match node {
            None if shown.node_name.is_empty() => {
                shown.status =
                    "on no node yet: it is made on the node of the first task that mounts it"
                        .into();
            }
            None => shown.status = format!("node {} is no longer in the cluster", shown.node_name),
            Some(node) => match self.agent(&node, &name, AgentCall::Inspect).await {
                Ok(reply) => {
                    shown.mountpoint = reply.mountpoint;
                    if !reply.exists {
                        shown.status = "no data yet: the directory is made at first use".into();
                    }
                }
                Err(why) => shown.status = why,
            },
        }
        Ok(Response::new(shown))
    }

    async fn remove(
        &self,
        r: Request<RemoveVolumeRequest>,
    ) -> Result<Response<RemoveVolumeResponse>, Status> {
        let req = r.into_inner();
        self.raft.read_barrier().await?;
        let volume = match resolve(self.raft.state(), Table::Volume, &req.name) {
            Ok(object) => match object.kind {
                Some(Kind::Volume(v)) => v,
                _ => return Err(Status::internal("the store returned a non-volume object")),
            },
            // As Docker's --force: a volume that does not exist is no error.
            Err(LookupError::NotFound { .. }) if req.force => {
                return Ok(Response::new(RemoveVolumeResponse::default()));
            }
            Err(e) => return Err(e.into()),
        };
        let shown = info(&read_view(self.raft.state())?, volume.clone());
        if let Some(why) = in_use(&shown) {
            return Err(Status::failed_precondition(why));
        }
        let node = read_node(self.raft.state(), &volume.node_id)?;
        let mut warnings = Vec::new();
        if let Some(node) = &node
            && node.status != NodeStatus::Ready as i32
        {
            let why = format!("node {} is not ready", node_name(node));
            if !req.force {
                return Err(Status::unavailable(format!(
                    "volume {}: {why}, so its data cannot be deleted now; nothing was removed \
                     (`volume rm --force` removes the volume and leaves its data on the node)",
                    volume.name
                )));
            }
            warnings.push(format!("{why}: the volume's data stays on it"));
        }
        // The record goes first, at the version checked for users: a task
        // placed with the volume meanwhile makes this refused.
        let op = delete(Table::Volume, &volume.id, Expect::Version, volume.version);
        match commit(&self.raft, vec![op]).await {
            Ok(_) => {}
            Err(CommitError::Refused {
                refusal: Refusal::Conflict,
                ..
            }) => {
                return Err(Status::aborted(format!(
                    "volume {} changed while it was being removed (a task was placed with \
                     it?): nothing was removed; try again",
                    volume.name
                )));
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(node) = node.filter(|n| n.status == NodeStatus::Ready as i32)
            && let Err(why) = self.agent(&node, &volume.name, AgentCall::Remove).await
        {
            if !req.force {
                return Err(Status::internal(format!(
                    "volume {} was removed, but its data could not be deleted: {why}",
                    volume.name
                )));
            }
            warnings.push(format!("{why}: the volume's data stays on it"));
        }
        Ok(Response::new(RemoveVolumeResponse { warnings }))
    }
}
