//! `berth info` and `berth version`: the cluster and every part of it, in
//! `docker info` / `docker version`'s shapes (the client first).

use std::collections::BTreeMap;

use anyhow::Result;
use berth_proto::v1::system_client::SystemClient;
use berth_proto::v1::{AgentInfo, ComponentVersion, InfoRequest, InfoResponse, VersionRequest};
use clap::Subcommand;

use crate::client::{Access, explain};
use crate::output::{self, Format};
use crate::units::human_size;

#[derive(Debug, Subcommand)]
pub enum SystemVerbs {
    /// The cluster: controllers, nodes, services, tasks, and each node's host.
    Info(FormatArg),
    /// Versions of this client, every controller and every agent.
    Version(FormatArg),
}

#[derive(Debug, clap::Args)]
pub struct FormatArg {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

async fn connect(access: &Access) -> Result<SystemClient<tonic::transport::Channel>> {
    Ok(SystemClient::new(crate::client::channel(access).await?)
        .max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES))
}

pub async fn run(access: &Access, verb: &SystemVerbs) -> Result<()> {
    match verb {
        SystemVerbs::Info(args) => info(access, args.format).await,
        SystemVerbs::Version(args) => version(access, args.format).await,
    }
}

async fn info(access: &Access, format: Format) -> Result<()> {
    let answer = connect(access)
        .await?
        .info(InfoRequest {})
        .await
        .map_err(explain)?
        .into_inner();
    match format {
        Format::Json => output::json(&serde_json::to_value(&answer)?),
        Format::Table => {
            print!("{}", info_text(&answer));
            Ok(())
        }
    }
}

/// "3 (running: 2, failed: 1)"
fn counted(counts: &BTreeMap<String, u64>) -> String {
    let total: u64 = counts.values().sum();
    if counts.is_empty() {
        return "0".to_string();
    }
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{total} ({})", parts.join(", "))
}

/// The text `berth info` prints.
fn info_text(i: &InfoResponse) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line("Cluster:".into());
    line(format!(" ID: {}", i.cluster_id));
    line(format!(
        " Controllers: {} (Raft term {}; this is member {})",
        i.controllers.len(),
        i.term,
        i.member_id
    ));
    for c in &i.controllers {
        line(format!("  {} {} {}", c.id, c.address, c.role));
    }
    if i.leader_id == 0 {
        line(" Leader: none right now".into());
    }
    line(format!(
        " Nodes: {}; {}",
        counted(&i.nodes_by_status),
        counted(&i.nodes_by_availability)
    ));
    line(format!(" Services: {}", i.services));
    line(format!(" Tasks: {}", counted(&i.tasks_by_state)));
    line("Nodes:".into());
    for n in &i.nodes {
        let name = n.node.as_ref().map_or("?", |r| r.node_name.as_str());
        line(format!(" {name} ({}, {})", n.status, n.availability));
        match &n.agent {
            Some(a) => agent_lines(a).into_iter().for_each(&mut line),
            None => line(format!("  Error: {}", n.error)),
        }
    }
    out
}

fn agent_lines(a: &AgentInfo) -> Vec<String> {
    vec![
        format!("  Agent Version: {} (commit {})", a.version, a.commit),
        format!("  Runtime: {} ({})", a.runtime_path, a.runtime_version),
        format!("  Kernel Version: {}", a.kernel),
        format!("  Operating System: {}", a.operating_system),
        format!("  Architecture: {}", a.architecture),
        format!("  Cgroup Version: {}", a.cgroup_version),
        format!("  Storage Driver: {}", a.storage),
        format!("  Data Dir: {}", a.data_dir),
        format!("  Images: {} ({})", a.images, human_size(a.images_bytes)),
        format!("  Containers: {}", counted(&a.containers)),
        format!("  CPUs: {}", a.cpus),
        format!("  Total Memory: {}", human_size(a.memory_bytes)),
        format!("  Hostname: {}", a.hostname),
    ]
}

/// This binary, as `berth version` shows it first.
fn client_version() -> ComponentVersion {
    ComponentVersion {
        kind: "client".into(),
        version: berth_proto::PACKAGE_VERSION.into(),
        commit: berth_proto::GIT_COMMIT.into(),
        os: std::env::consts::OS.into(),
        architecture: std::env::consts::ARCH.into(),
        ..Default::default()
    }
}

fn version_block(title: &str, v: &ComponentVersion) -> String {
    if !v.error.is_empty() {
        return format!("{title}:\n Error: {}\n", v.error);
    }
    format!(
        "{title}:\n Version: {}\n Git commit: {}\n OS/Arch: {}/{}\n",
        v.version, v.commit, v.os, v.architecture
    )
}

async fn version(access: &Access, format: Format) -> Result<()> {
    let client = client_version();
    // The client's part comes first and stands even when no controller answers.
    if let Format::Table = format {
        print!("{}", version_block("Client", &client));
    }
    let answer = async {
        connect(access)
            .await?
            .version(VersionRequest::default())
            .await
            .map_err(explain)
            .map(tonic::Response::into_inner)
    }
    .await;
    match format {
        Format::Json => {
            let server = match &answer {
                Ok(a) => serde_json::to_value(a)?,
                Err(e) => serde_json::json!({ "error": format!("{e:#}") }),
            };
            output::json(&serde_json::json!({ "client": client, "server": server }))?;
        }
        Format::Table => {
            if let Ok(a) = &answer {
                if let Some(s) = &a.serving {
                    let title = format!(
                        "\nController {} (member {}, serving this call)",
                        s.name, s.id
                    );
                    print!("{}", version_block(&title, s));
                }
                for c in &a.controllers {
                    print!(
                        "{}",
                        version_block(&format!("\nController {} (member {})", c.name, c.id), c)
                    );
                }
                for agent in &a.agents {
                    print!(
                        "{}",
                        version_block(&format!("\nAgent {}", agent.name), agent)
                    );
                }
            }
        }
    }
    answer.map(drop)
}

#[cfg(test)]
mod tests {
    use berth_proto::v1::{ControllerInfo, NodeInfo, NodeRef};

    use super::*;

    #[test]
    fn info_shows_the_cluster_then_each_node() {
        let info = InfoResponse {
            cluster_id: "c1".into(),
            controllers: vec![ControllerInfo {
                id: 1,
                address: "10.0.0.1:7400".into(),
                role: "leader".into(),
            }],
            leader_id: 1,
            term: 3,
            member_id: 1,
            nodes_by_status: [("ready".to_string(), 2)].into(),
            nodes_by_availability: [("active".to_string(), 2)].into(),
            services: 1,
            tasks_by_state: [("running".to_string(), 2), ("failed".to_string(), 1)].into(),
            nodes: vec![
                NodeInfo {
                    node: Some(NodeRef {
                        node_id: "a".into(),
                        node_name: "n1".into(),
                    }),
                    status: "ready".into(),
                    availability: "active".into(),
                    agent: Some(AgentInfo {
                        cgroup_version: "v2".into(),
                        storage: "overlayfs".into(),
                        images: 2,
                        images_bytes: 2048,
                        containers: [("running".to_string(), 2)].into(),
                        ..Default::default()
                    }),
                    error: String::new(),
                },
                NodeInfo {
                    node: Some(NodeRef {
                        node_id: "b".into(),
                        node_name: "n2".into(),
                    }),
                    status: "ready".into(),
                    availability: "active".into(),
                    agent: None,
                    error: "the agent of node n2 does not answer".into(),
                },
            ],
        };
        let text = info_text(&info);
        for want in [
            " Controllers: 1 (Raft term 3; this is member 1)",
            "  1 10.0.0.1:7400 leader",
            " Nodes: 2 (ready: 2); 2 (active: 2)",
            " Tasks: 3 (failed: 1, running: 2)",
            " n1 (ready, active)",
            "  Cgroup Version: v2",
            "  Storage Driver: overlayfs",
            "  Images: 2 (2 KiB)",
            "  Containers: 2 (running: 2)",
            "  Error: the agent of node n2 does not answer",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
    }

    #[test]
    fn a_part_that_did_not_answer_shows_why() {
        let block = version_block(
            "Agent n3",
            &ComponentVersion {
                error: "node n3 is down".into(),
                ..Default::default()
            },
        );
        assert_eq!(block, "Agent n3:\n Error: node n3 is down\n");
        let client = version_block("Client", &client_version());
        assert!(client.contains(" Git commit: "), "{client}");
    }
}
