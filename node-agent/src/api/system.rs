//! `AgentSystem.Info`: what `berth info` shows of this node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use berth_proto::v1::agent_system_server::AgentSystem;
use berth_proto::v1::{AgentInfo, AgentInfoRequest, TaskState};
use tonic::{Request, Response, Status};

use crate::host_info::{HostFacts, runtime_version};
use crate::image::ImageStore;
use crate::supervisor::Supervisor;

/// How root filesystems are made (`image/rootfs.rs`: an overlay mount of the
/// image's layer snapshots, with the container's own upper dir).
const STORAGE: &str = "overlayfs";

pub(super) struct SystemApi {
    pub(super) supervisor: Arc<Supervisor>,
    pub(super) images: ImageStore,
    pub(super) runtime: PathBuf,
    pub(super) data_dir: PathBuf,
}

#[tonic::async_trait]
impl AgentSystem for SystemApi {
    async fn info(
        &self,
        _request: Request<AgentInfoRequest>,
    ) -> Result<Response<AgentInfo>, Status> {
        let host = tokio::task::spawn_blocking(HostFacts::read)
            .await
            .map_err(|e| Status::internal(format!("reading the host's facts: {e}")))?;
        let images = self
            .images
            .list()
            .map_err(|e| Status::internal(e.to_string()))?;
        let store = self.images.clone();
        let images_bytes = tokio::task::spawn_blocking(move || store.content_bytes())
            .await
            .map_err(|e| Status::internal(format!("measuring the image store: {e}")))?
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut containers = BTreeMap::new();
        for status in self.supervisor.statuses() {
            let state = status
                .status
                .and_then(|s| TaskState::try_from(s.state).ok())
                .map_or("unknown", TaskState::short_name);
            *containers.entry(state.to_string()).or_default() += 1;
        }
        let resources = crate::session::identity::detect_resources();
        Ok(Response::new(AgentInfo {
            version: berth_proto::PACKAGE_VERSION.to_string(),
            commit: berth_proto::GIT_COMMIT.to_string(),
            runtime_version: runtime_version(&self.runtime).await,
            runtime_path: self.runtime.display().to_string(),
            kernel: host.kernel,
            architecture: host.architecture,
            operating_system: host.operating_system,
            cgroup_version: host.cgroup_version,
            storage: STORAGE.to_string(),
            data_dir: self.data_dir.display().to_string(),
            images: images.len() as u64,
            images_bytes,
            containers,
            cpus: resources.milli_cpus / 1000,
            memory_bytes: resources.memory_bytes,
            hostname: host.hostname,
        }))
    }
}
