//! `AgentVolumes`: a named volume's data on this node, made by `volume create
//! --node`, shown by `volume inspect` and deleted by `volume rm` (the
//! controller checked the cluster's users; this node checks its own tasks
//! once more before it deletes anything).

use std::sync::Arc;

use berth_proto::v1::agent_volumes_server::AgentVolumes;
use berth_proto::v1::{AgentVolumeReply, AgentVolumeRequest};
use tonic::{Request, Response, Status};

use crate::supervisor::Supervisor;
use crate::volumes::VolumeError;

pub(super) struct VolumesApi {
    pub(super) supervisor: Arc<Supervisor>,
}

fn status(e: VolumeError) -> Status {
    match e {
        VolumeError::Name { .. } => Status::invalid_argument(e.to_string()),
        VolumeError::Io { .. } => Status::internal(e.to_string()),
    }
}

impl VolumesApi {
    fn reply(&self, name: &str) -> Result<AgentVolumeReply, Status> {
        let volumes = self.supervisor.volumes();
        Ok(AgentVolumeReply {
            mountpoint: volumes
                .mountpoint(name)
                .map_err(status)?
                .display()
                .to_string(),
            exists: volumes.exists(name).map_err(status)?,
        })
    }
}

#[tonic::async_trait]
impl AgentVolumes for VolumesApi {
    async fn create(
        &self,
        request: Request<AgentVolumeRequest>,
    ) -> Result<Response<AgentVolumeReply>, Status> {
        let name = request.into_inner().name;
        self.supervisor.volumes().ensure(&name).map_err(status)?;
        tracing::info!(volume = %name, "volume created");
        Ok(Response::new(self.reply(&name)?))
    }

    async fn inspect(
        &self,
        request: Request<AgentVolumeRequest>,
    ) -> Result<Response<AgentVolumeReply>, Status> {
        Ok(Response::new(self.reply(&request.into_inner().name)?))
    }

    async fn remove(
        &self,
        request: Request<AgentVolumeRequest>,
    ) -> Result<Response<AgentVolumeReply>, Status> {
        let name = request.into_inner().name;
        let users = self.supervisor.volume_users(&name);
        if !users.is_empty() {
            return Err(Status::failed_precondition(format!(
                "volume {name} is in use on this node by task {}",
                users.join(", ")
            )));
        }
        let reply = self.reply(&name)?;
        self.supervisor.volumes().remove(&name).map_err(status)?;
        tracing::info!(volume = %name, "volume removed");
        Ok(Response::new(AgentVolumeReply {
            exists: false,
            ..reply
        }))
    }
}
