//! The `System` service: `berth info` (the cluster as this controller's
//! store has it, and each ready node's own answer) and `berth version` (this
//! controller, each fellow member asked with `System.Version` for itself
//! only, and each node's agent).

use std::collections::BTreeMap;
use std::time::Duration;

use berth_pki::Security;
use berth_proto::store::object::Kind;
use berth_proto::v1::agent_system_client::AgentSystemClient;
use berth_proto::v1::system_client::SystemClient;
use berth_proto::v1::system_server::System;
use berth_proto::v1::{
    AgentInfo, AgentInfoRequest, ComponentVersion, ControllerInfo, InfoRequest, InfoResponse, Node,
    NodeAvailability, NodeInfo, NodeStatus, VersionRequest, VersionResponse,
};
use tonic::{Request, Response, Status};

use crate::agents::{self, ByDefault};
use crate::raft::transport::peer_channel;
use crate::raft::{RaftHandle, Role};
use crate::store::Table;
use crate::system_info::Counts;

/// How long a node or a fellow member may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SystemApi {
    raft: RaftHandle,
    security: Security,
}

impl SystemApi {
    pub fn new(raft: RaftHandle, security: Security) -> SystemApi {
        SystemApi { raft, security }
    }

    /// Every node's `AgentSystem.Info`, or why there is none, by node id.
    async fn agent_infos(&self, nodes: &[Node]) -> BTreeMap<String, Result<AgentInfo, String>> {
        let selected =
            agents::choose(nodes.to_vec(), false, true, ByDefault::AllNodes).unwrap_or_default();
        let answers = agents::each(&self.security, &selected.targets, |channel| async move {
            let mut request = Request::new(AgentInfoRequest {});
            request.set_timeout(ASK_TIMEOUT);
            AgentSystemClient::new(channel)
                .info(request)
                .await
                .map(Response::into_inner)
        })
        .await;
        let mut out: BTreeMap<String, Result<AgentInfo, String>> = answers
            .into_iter()
            .map(|(node, answer)| (node.node_id, answer))
            .collect();
        for (node, why) in selected.skipped {
            out.insert(node.node_id, Err(why));
        }
        out
    }

    /// What this controller is.
    fn this_member(&self) -> ComponentVersion {
        let status = self.raft.status().get();
        ComponentVersion {
            kind: "controller".into(),
            id: status.id.to_string(),
            name: status
                .addresses
                .get(&status.id)
                .cloned()
                .unwrap_or_default(),
            version: berth_proto::PACKAGE_VERSION.into(),
            commit: berth_proto::GIT_COMMIT.into(),
            os: std::env::consts::OS.into(),
            architecture: std::env::consts::ARCH.into(),
            error: String::new(),
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::Learner => "learner",
    }
}

#[tonic::async_trait]
impl System for SystemApi {
    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let status = self.raft.status().get();
        let sm = self.raft.state();
        let nodes =
            crate::store::view::read_nodes(sm).map_err(|e| Status::internal(e.to_string()))?;
        let services = sm
            .list(Table::Service)
            .map_err(|e| Status::internal(e.to_string()))?
            .len() as u64;
        let tasks: Vec<_> = sm
            .list(Table::Task)
            .map_err(|e| Status::internal(e.to_string()))?
            .into_iter()
            .filter_map(|o| match o.kind {
                Some(Kind::Task(t)) => Some(*t),
                _ => None,
            })
            .collect();
        let counts = Counts::of(&nodes, &tasks);
        let mut infos = self.agent_infos(&nodes).await;
        let mut node_infos: Vec<NodeInfo> = nodes
            .iter()
            .map(|node| {
                let (agent, error) = match infos.remove(&node.id) {
                    Some(Ok(info)) => (Some(info), String::new()),
                    Some(Err(why)) => (None, why),
                    None => (None, "not asked".to_string()),
                };
                NodeInfo {
                    node: Some(agents::node_ref(node)),
                    status: NodeStatus::try_from(node.status)
                        .unwrap_or(NodeStatus::Unknown)
                        .short_name()
                        .into(),
                    availability: NodeAvailability::try_from(node.availability)
                        .unwrap_or(NodeAvailability::Active)
                        .short_name()
                        .into(),
                    agent,
                    error,
                }
            })
            .collect();
        node_infos.sort_by(|a, b| {
            let name = |n: &NodeInfo| n.node.as_ref().map(|r| r.node_name.clone());
            name(a).cmp(&name(b))
        });
        Ok(Response::new(InfoResponse {
            cluster_id: status.cluster_id.clone(),
            controllers: status
                .members
                .iter()
                .map(|m| ControllerInfo {
                    id: m.id,
                    address: m.address.clone(),
                    role: role_name(m.role).into(),
                })
                .collect(),
            leader_id: status.leader_id,
            term: status.term,
            member_id: status.id,
            nodes_by_status: counts.nodes_by_status,
            nodes_by_availability: counts.nodes_by_availability,
            services,
            tasks_by_state: counts.tasks_by_state,
            nodes: node_infos,
        }))
    }

    async fn version(
        &self,
        request: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        let serving = self.this_member();
        if request.into_inner().this_member_only {
            return Ok(Response::new(VersionResponse {
                serving: Some(serving),
                ..Default::default()
            }));
        }
        let status = self.raft.status().get();
        let others = status
            .members
            .iter()
            .filter(|m| m.id != status.id)
            .map(|m| {
                let security = self.security.clone();
                async move {
                    let failed = |error: String| ComponentVersion {
                        kind: "controller".into(),
                        id: m.id.to_string(),
                        name: m.address.clone(),
                        error,
                        ..Default::default()
                    };
                    let channel = match peer_channel(&m.address, &security) {
                        Ok(c) => c,
                        Err(e) => return failed(format!("bad address {}: {e}", m.address)),
                    };
                    let mut request = Request::new(VersionRequest {
                        this_member_only: true,
                    });
                    request.set_timeout(ASK_TIMEOUT);
                    match SystemClient::new(channel).version(request).await {
                        Ok(answer) => answer
                            .into_inner()
                            .serving
                            .unwrap_or_else(|| failed("it did not say".into())),
                        Err(s) => failed(format!("it does not answer: {}", s.message())),
                    }
                }
            });
        let controllers = futures_util::future::join_all(others).await;
        let nodes = crate::store::view::read_nodes(self.raft.state())
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut infos = self.agent_infos(&nodes).await;
        let mut agents: Vec<ComponentVersion> = nodes
            .iter()
            .map(|node| {
                let base = ComponentVersion {
                    kind: "agent".into(),
                    id: node.id.clone(),
                    name: node.name.clone(),
                    ..Default::default()
                };
                match infos.remove(&node.id) {
                    Some(Ok(info)) => ComponentVersion {
                        version: info.version,
                        commit: info.commit,
                        os: "linux".into(),
                        architecture: info.architecture,
                        ..base
                    },
                    Some(Err(error)) => ComponentVersion { error, ..base },
                    None => ComponentVersion {
                        error: "not asked".into(),
                        ..base
                    },
                }
            })
            .collect();
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(VersionResponse {
            serving: Some(serving),
            controllers,
            agents,
        }))
    }
}
