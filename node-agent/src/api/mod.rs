//! The agent's own gRPC API, served on `--api-listen` to this cluster's
//! controllers only (mutual TLS, then a controller certificate of the agent's
//! cluster). One file per service; `serve` puts them on one server.

mod exec;
mod images;
mod logs;
mod system;
mod tasks;
mod volumes;

use std::sync::Arc;

use berth_pki::tls::ServerStream;
use berth_pki::{Role, Security};
use berth_proto::v1::agent_exec_server::AgentExecServer;
use berth_proto::v1::agent_images_server::AgentImagesServer;
use berth_proto::v1::agent_server::AgentServer;
use berth_proto::v1::agent_system_server::AgentSystemServer;
use berth_proto::v1::agent_volumes_server::AgentVolumesServer;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Status};

use crate::image::{ImageStore, PullOptions};
use crate::supervisor::Supervisor;

/// What the API's services act on.
#[derive(Clone)]
pub struct AgentParts {
    pub supervisor: Arc<Supervisor>,
    /// The running agent's image store (the one its tasks use).
    pub images: ImageStore,
    /// How the agent pulls (insecure registries): `berth pull` pulls alike.
    pub pull: PullOptions,
    /// The OCI runtime and the data dir, for `berth info`.
    pub runtime: std::path::PathBuf,
    pub data_dir: std::path::PathBuf,
    /// Pulls through the API count with the tasks' pulls.
    pub metrics: crate::metrics::AgentMetrics,
}

/// Serves the agent API on `incoming` until the server fails (logged).
pub async fn serve(
    incoming: ReceiverStream<std::io::Result<ServerStream>>,
    security: Security,
    parts: AgentParts,
) {
    let only = controllers_only(&security);
    let logs = InterceptedService::new(
        AgentServer::new(logs::AgentApi {
            supervisor: parts.supervisor.clone(),
        }),
        only.clone(),
    );
    let volumes = InterceptedService::new(
        AgentVolumesServer::new(volumes::VolumesApi {
            supervisor: parts.supervisor.clone(),
        }),
        only.clone(),
    );
    let exec = InterceptedService::new(
        AgentExecServer::new(exec::ExecApi {
            supervisor: parts.supervisor.clone(),
        }),
        only.clone(),
    );
    let tasks = InterceptedService::new(
        berth_proto::v1::agent_tasks_server::AgentTasksServer::new(tasks::AgentTasksApi {
            supervisor: parts.supervisor.clone(),
        }),
        only.clone(),
    );
    let images = InterceptedService::new(
        AgentImagesServer::new(images::ImagesApi {
            store: parts.images.clone(),
            pull: parts.pull.clone(),
            metrics: parts.metrics.clone(),
        }),
        only.clone(),
    );
    let system = InterceptedService::new(
        AgentSystemServer::new(system::SystemApi {
            supervisor: parts.supervisor.clone(),
            images: parts.images.clone(),
            runtime: parts.runtime.clone(),
            data_dir: parts.data_dir.clone(),
        }),
        only.clone(),
    );
    if let Err(err) = tonic::transport::Server::builder()
        .add_service(logs)
        .add_service(volumes)
        .add_service(images)
        .add_service(system)
        .add_service(tasks)
        .add_service(exec)
        .serve_with_incoming(incoming)
        .await
    {
        tracing::error!(%err, "agent API stopped");
    }
}

/// Admits callers with a controller certificate of this agent's cluster
/// (the TLS handshake already checked it is signed by the cluster's CA).
fn controllers_only(
    security: &Security,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static {
    let cluster = security
        .credentials()
        .map(|creds| creds.info().identity.cluster_id);
    move |request: Request<()>| {
        let Some(cluster) = &cluster else {
            return Ok(request);
        };
        match berth_pki::authorize::peer_certificate(&request) {
            Some(cert)
                if cert.identity.role == Role::Controller
                    && &cert.identity.cluster_id == cluster =>
            {
                Ok(request)
            }
            Some(cert) => Err(Status::permission_denied(format!(
                "a certificate of role {} cannot call a node agent (only controllers can)",
                cert.identity.role
            ))),
            None => Err(Status::unauthenticated(
                "a node agent answers only its cluster's controllers",
            )),
        }
    }
}
