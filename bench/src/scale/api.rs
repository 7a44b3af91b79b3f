//! What the benchmark asks the cluster through its public API: the network
//! and services to create, and the figures to confirm (tasks running, nodes
//! down).

use std::collections::{HashMap, HashSet};

use berth_proto::v1::cluster_client::ClusterClient;
use berth_proto::v1::{
    CreateNetworkRequest, CreateServiceRequest, ListNodesRequest, ListTasksRequest, Node,
    NodeStatus, ReplicatedMode, ServiceSpec, TaskState, service_spec,
};
use tokio::task::JoinSet;
use tonic::transport::Channel;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("connecting to controller {address}: {why}")]
    Connect { address: String, why: String },
    #[error("{what}: {status}")]
    Call { what: String, status: tonic::Status },
    #[error("a create call did not finish: {0}")]
    Join(String),
}

fn joined(done: Result<Result<(), ApiError>, tokio::task::JoinError>) -> Result<(), ApiError> {
    done.map_err(|e| ApiError::Join(e.to_string()))?
}

fn call(what: impl Into<String>) -> impl FnOnce(tonic::Status) -> ApiError {
    move |status| ApiError::Call {
        what: what.into(),
        status,
    }
}

#[derive(Clone)]
pub struct Api {
    client: ClusterClient<Channel>,
}

/// Running tasks as the API reports them.
#[derive(Clone, Debug, Default)]
pub struct TaskCount {
    /// Desired and observed RUNNING.
    pub running: usize,
    /// Desired RUNNING, whatever their observed state.
    pub desired: usize,
    /// Desired RUNNING by node id.
    pub per_node: HashMap<String, usize>,
}

impl TaskCount {
    /// (fewest, most) tasks desired running on one of `nodes` node ids.
    pub fn spread<'a>(&self, nodes: impl IntoIterator<Item = &'a str>) -> (usize, usize) {
        nodes
            .into_iter()
            .map(|id| self.per_node.get(id).copied().unwrap_or(0))
            .fold(None, |acc: Option<(usize, usize)>, n| match acc {
                None => Some((n, n)),
                Some((lo, hi)) => Some((lo.min(n), hi.max(n))),
            })
            .unwrap_or((0, 0))
    }
}

impl Api {
    pub async fn connect(address: &str, security: &berth_pki::Security) -> Result<Api, ApiError> {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .map(|e| e.tcp_nodelay(true))
            .map_err(|e| ApiError::Connect {
                address: address.to_string(),
                why: e.to_string(),
            })?;
        let channel = berth_pki::tls::connect(endpoint, security, berth_pki::Role::Controller)
            .await
            .map_err(|e| ApiError::Connect {
                address: address.to_string(),
                why: e.to_string(),
            })?;
        Ok(Api {
            client: ClusterClient::new(channel)
                .max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES),
        })
    }

    /// A network with room for a /26 block per node on `subnet`.
    pub async fn create_network(&self, name: &str, subnet: &str) -> Result<(), ApiError> {
        self.client
            .clone()
            .create_network(CreateNetworkRequest {
                name: name.to_string(),
                subnet: subnet.to_string(),
                labels: Default::default(),
            })
            .await
            .map_err(call(format!("creating network {name} ({subnet})")))?;
        Ok(())
    }

    /// Creates `count` services of `replicas` each (as `berth service create
    /// NAME --image IMG --replicas R [--network NET]` would), `parallel` at a
    /// time.
    pub async fn create_services(
        &self,
        count: usize,
        replicas: u64,
        network: Option<&str>,
        parallel: usize,
    ) -> Result<(), ApiError> {
        let mut running = JoinSet::new();
        for i in 0..count {
            if running.len() >= parallel.max(1)
                && let Some(done) = running.join_next().await
            {
                joined(done)?;
            }
            let spec = ServiceSpec {
                name: format!("scale-{i:04}"),
                // Never pulled: the simulated agents run nothing.
                image: "scale:1".into(),
                mode: Some(service_spec::Mode::Replicated(ReplicatedMode { replicas })),
                networks: network.map(|n| vec![n.to_string()]).unwrap_or_default(),
                ..Default::default()
            };
            running.spawn(create_service(self.client.clone(), spec));
        }
        while let Some(done) = running.join_next().await {
            joined(done)?;
        }
        Ok(())
    }

    /// Tasks desired running (and how many of them run), leaving out those on
    /// `excluded` nodes.
    pub async fn tasks(&self, excluded: &HashSet<String>) -> Result<TaskCount, ApiError> {
        let tasks = self
            .client
            .clone()
            .list_tasks(ListTasksRequest::default())
            .await
            .map_err(call("listing tasks"))?
            .into_inner()
            .tasks;
        let mut count = TaskCount::default();
        for t in tasks {
            if t.desired_state != TaskState::Running as i32 || excluded.contains(&t.node_id) {
                continue;
            }
            count.desired += 1;
            *count.per_node.entry(t.node_id.clone()).or_default() += 1;
            if t.status.as_ref().map(|s| s.state) == Some(TaskState::Running as i32) {
                count.running += 1;
            }
        }
        Ok(count)
    }

    pub async fn nodes(&self) -> Result<Vec<Node>, ApiError> {
        Ok(self
            .client
            .clone()
            .list_nodes(ListNodesRequest {})
            .await
            .map_err(call("listing nodes"))?
            .into_inner()
            .nodes)
    }
}

/// Creates one service as an operator would under a busy control plane:
/// retried while the cluster has no leader or lost track of the outcome (a
/// create that did land answers "already exists" the next time).
async fn create_service(
    mut client: ClusterClient<Channel>,
    spec: ServiceSpec,
) -> Result<(), ApiError> {
    let name = spec.name.clone();
    let mut attempts = 0;
    loop {
        let request = CreateServiceRequest {
            spec: Some(spec.clone()),
            // The simulated agents never pull: no registry to ask.
            no_resolve_image: true,
        };
        let status = match client.create_service(request).await {
            Ok(_) => return Ok(()),
            Err(status) if attempts > 0 && status.code() == tonic::Code::AlreadyExists => {
                return Ok(());
            }
            Err(status) => status,
        };
        let retry = matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::DeadlineExceeded
        );
        attempts += 1;
        if !retry || attempts >= 60 {
            return Err(call(format!(
                "creating service {name} (attempt {attempts})"
            ))(status));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

pub fn is_down(node: &Node) -> bool {
    node.status == NodeStatus::Down as i32
}

pub fn is_ready(node: &Node) -> bool {
    node.status == NodeStatus::Ready as i32
}
