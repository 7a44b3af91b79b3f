//! The gRPC edge: the `Cluster` service the CLI talks to (each handler lives in
//! the module of the objects it serves; this file only routes) and the
//! `Dispatcher` service agents talk to. Handlers map requests to the domain
//! (store, dispatcher) and domain errors to statuses (`status.rs`); nothing
//! below this layer knows gRPC.

mod agent_link;
mod certificates;
mod cluster_settings;
mod configs;
pub mod dispatcher;
mod events;
mod exec;
mod files;
mod health_check;
mod image_pin;
mod images;
mod logs;
mod members;
mod networks;
mod nodes;
mod recovery;
#[cfg(test)]
mod registry_auth_tests;
mod secrets;
mod services;
mod stacks;
pub mod status;
mod system;
mod task_output;
mod tasks;
mod volumes;
mod watch;

use berth_proto::v1::cluster_server::Cluster;
use berth_proto::v1::*;
use tonic::{Request, Response, Status};

use berth_pki::Security;

use crate::keyring::Keyring;
use crate::raft::RaftHandle;

pub use crate::store::commit::MAX_TXN_BYTES;
pub use certificates::{CertificatesApi, record_node_certificate};
pub use cluster_settings::ClusterSettingsApi;
pub use dispatcher::DispatcherService;
pub use events::EventsApi;
pub use exec::ExecApi;
pub use image_pin::PinSettings;
pub use images::ImagesApi;
pub use recovery::RecoveryApi;
pub use services::validate_spec;
pub use stacks::StacksApi;
pub use system::SystemApi;
pub use tasks::TasksApi;
pub use volumes::VolumesApi;

pub struct ClusterApi {
    raft: RaftHandle,
    /// How this controller calls agents (task logs) and other controllers.
    security: Security,
    /// Seals secret values before they are proposed.
    keys: Keyring,
    /// Pins services' images to digests when specs are written.
    pinner: image_pin::Pinner,
}

impl ClusterApi {
    pub fn new(raft: RaftHandle, security: Security, keys: Keyring, pins: PinSettings) -> Self {
        ClusterApi {
            raft,
            security,
            pinner: image_pin::Pinner::new(pins, keys.clone()),
            keys,
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn ok<T>(value: T) -> Reply<T> {
    Ok(Response::new(value))
}

#[tonic::async_trait]
impl Cluster for ClusterApi {
    async fn create_service(
        &self,
        r: Request<CreateServiceRequest>,
    ) -> Reply<CreateServiceResponse> {
        ok(services::create(&self.raft, &self.pinner, r.into_inner()).await?)
    }

    async fn update_service(
        &self,
        r: Request<UpdateServiceRequest>,
    ) -> Reply<UpdateServiceResponse> {
        ok(services::update(&self.raft, &self.pinner, r.into_inner()).await?)
    }

    async fn promote_service(&self, r: Request<PromoteServiceRequest>) -> Reply<Service> {
        ok(services::promote(&self.raft, &r.into_inner().service).await?)
    }

    async fn get_service(&self, r: Request<GetServiceRequest>) -> Reply<Service> {
        ok(services::get(&self.raft, &r.into_inner().service).await?)
    }

    async fn list_services(&self, _: Request<ListServicesRequest>) -> Reply<ListServicesResponse> {
        ok(services::list(&self.raft).await?)
    }

    async fn remove_service(
        &self,
        r: Request<RemoveServiceRequest>,
    ) -> Reply<RemoveServiceResponse> {
        services::remove(&self.raft, &r.into_inner().service).await?;
        ok(RemoveServiceResponse {})
    }

    async fn scale_service(&self, r: Request<ScaleServiceRequest>) -> Reply<Service> {
        ok(services::scale(&self.raft, r.into_inner()).await?)
    }

    async fn list_tasks(&self, r: Request<ListTasksRequest>) -> Reply<ListTasksResponse> {
        ok(services::list_tasks(&self.raft, r.into_inner()).await?)
    }

    type ServiceLogsStream = logs::LogStreamOut;

    async fn service_logs(&self, r: Request<ServiceLogsRequest>) -> Reply<Self::ServiceLogsStream> {
        ok(logs::service_logs(&self.raft, &self.security, r.into_inner()).await?)
    }

    async fn list_nodes(&self, _: Request<ListNodesRequest>) -> Reply<ListNodesResponse> {
        ok(nodes::list(&self.raft).await?)
    }

    async fn get_node(&self, r: Request<GetNodeRequest>) -> Reply<Node> {
        ok(nodes::get(&self.raft, &r.into_inner().node).await?)
    }

    async fn update_node(&self, r: Request<UpdateNodeRequest>) -> Reply<Node> {
        ok(nodes::update(&self.raft, r.into_inner()).await?)
    }

    async fn remove_node(&self, r: Request<RemoveNodeRequest>) -> Reply<RemoveNodeResponse> {
        nodes::remove(&self.raft, r.into_inner()).await?;
        ok(RemoveNodeResponse {})
    }

    async fn create_network(&self, r: Request<CreateNetworkRequest>) -> Reply<Network> {
        ok(networks::create(&self.raft, r.into_inner()).await?)
    }

    async fn list_networks(&self, _: Request<ListNetworksRequest>) -> Reply<ListNetworksResponse> {
        ok(networks::list(&self.raft).await?)
    }

    async fn remove_network(
        &self,
        r: Request<RemoveNetworkRequest>,
    ) -> Reply<RemoveNetworkResponse> {
        networks::remove(&self.raft, &r.into_inner().network).await?;
        ok(RemoveNetworkResponse {})
    }

    async fn create_config(&self, r: Request<CreateConfigRequest>) -> Reply<Config> {
        ok(configs::create(&self.raft, r.into_inner()).await?)
    }

    async fn update_config(&self, r: Request<UpdateConfigRequest>) -> Reply<Config> {
        ok(configs::update(&self.raft, r.into_inner()).await?)
    }

    async fn get_config(&self, r: Request<GetConfigRequest>) -> Reply<Config> {
        ok(configs::get(&self.raft, r.into_inner()).await?)
    }

    async fn list_configs(&self, _: Request<ListConfigsRequest>) -> Reply<ListConfigsResponse> {
        ok(configs::list(&self.raft).await?)
    }

    async fn remove_config(&self, r: Request<RemoveConfigRequest>) -> Reply<RemoveConfigResponse> {
        configs::remove(&self.raft, r.into_inner()).await?;
        ok(RemoveConfigResponse {})
    }

    async fn create_secret(&self, r: Request<CreateSecretRequest>) -> Reply<Secret> {
        ok(secrets::create(&self.raft, &self.keys, r.into_inner()).await?)
    }

    async fn get_secret(&self, r: Request<GetSecretRequest>) -> Reply<Secret> {
        ok(secrets::get(&self.raft, r.into_inner()).await?)
    }

    async fn list_secrets(&self, _: Request<ListSecretsRequest>) -> Reply<ListSecretsResponse> {
        ok(secrets::list(&self.raft).await?)
    }

    async fn remove_secret(&self, r: Request<RemoveSecretRequest>) -> Reply<RemoveSecretResponse> {
        secrets::remove(&self.raft, r.into_inner()).await?;
        ok(RemoveSecretResponse {})
    }

    async fn cluster_status(
        &self,
        _: Request<ClusterStatusRequest>,
    ) -> Reply<ClusterStatusResponse> {
        ok(members::status(&self.raft, &self.security))
    }

    async fn remove_member(&self, r: Request<RemoveMemberRequest>) -> Reply<RemoveMemberResponse> {
        members::remove(&self.raft, &self.security, r.into_inner()).await?;
        ok(RemoveMemberResponse {})
    }

    async fn join_token(&self, r: Request<JoinTokenRequest>) -> Reply<JoinTokenResponse> {
        ok(certificates::join_token(&self.raft, r.into_inner()).await?)
    }

    async fn rotate_ca(&self, _: Request<RotateCaRequest>) -> Reply<RotateCaResponse> {
        ok(certificates::rotate_ca(&self.raft).await?)
    }

    type WatchStream = watch::WatchStream;

    async fn watch(&self, r: Request<WatchRequest>) -> Reply<Self::WatchStream> {
        ok(watch::watch(&self.raft, r.into_inner())?)
    }
}
