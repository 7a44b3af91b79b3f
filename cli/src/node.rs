//! `berth node ...`: the hosts of the cluster.

use anyhow::{Result, bail};
use berth_proto::v1::{
    GetNodeRequest, ListNodesRequest, Node, NodeAvailability, NodeStatus, RemoveNodeRequest,
    UpdateNodeRequest,
};
use clap::Subcommand;
use serde_json::json;

use crate::client::{Client, explain};
use crate::output::{self, Format};
use crate::units::human_size;

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// List nodes.
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// One node as JSON.
    Inspect { node: String },
    /// Remove a node: its certificate is refused from then on and its tasks
    /// are replaced elsewhere. A node that is up needs --force.
    Rm {
        node: String,
        #[arg(long)]
        force: bool,
    },
    /// Change a node's availability or labels.
    Update {
        node: String,
        /// active, pause (no new tasks) or drain (move tasks away).
        #[arg(long)]
        availability: Option<String>,
        /// KEY=VALUE, repeatable.
        #[arg(long)]
        label_add: Vec<String>,
        /// KEY, repeatable.
        #[arg(long)]
        label_rm: Vec<String>,
    },
}

fn status_name(n: &Node) -> &'static str {
    NodeStatus::try_from(n.status)
        .map(|s| s.short_name())
        .unwrap_or("unknown")
}

fn availability_name(n: &Node) -> &'static str {
    NodeAvailability::try_from(n.availability)
        .map(|a| a.short_name())
        .unwrap_or("unknown")
}

fn node_json(n: &Node) -> serde_json::Value {
    let res = n.resources.unwrap_or_default();
    json!({
        "id": n.id,
        "name": n.name,
        "address": n.address,
        "status": status_name(n),
        "status_message": n.status_message,
        "dataplane_conflict": n.dataplane_conflict,
        "availability": availability_name(n),
        "labels": n.labels,
        "cpus": res.milli_cpus as f64 / 1000.0,
        "memory_bytes": res.memory_bytes,
        "certificate_expires": cert_expiry(n),
    })
}

/// What keeps the node from taking tasks besides its status ("" when nothing).
fn condition(n: &Node) -> String {
    if n.dataplane_conflict.is_empty() {
        String::new()
    } else {
        format!("data plane: {}", n.dataplane_conflict)
    }
}

/// When the node's certificate expires ("" before it registered with one).
fn cert_expiry(n: &Node) -> String {
    match n.cert_not_after_ms {
        0 => String::new(),
        ms => berth_pki::identity::format_ms(ms),
    }
}

pub async fn run(client: &mut Client, cmd: NodeCmd) -> Result<()> {
    match cmd {
        NodeCmd::Ls { format } => {
            let nodes = client
                .list_nodes(ListNodesRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .nodes;
            match format {
                Format::Json => output::json(&serde_json::Value::Array(
                    nodes.iter().map(node_json).collect(),
                ))?,
                Format::Table => output::table(
                    &[
                        "ID",
                        "NAME",
                        "ADDRESS",
                        "STATUS",
                        "AVAILABILITY",
                        "CPUS",
                        "MEMORY",
                        "CERT EXPIRES",
                        "CONDITION",
                    ],
                    &nodes
                        .iter()
                        .map(|n| {
                            let res = n.resources.unwrap_or_default();
                            vec![
                                n.id.clone(),
                                n.name.clone(),
                                n.address.clone(),
                                status_name(n).into(),
                                availability_name(n).into(),
                                format!("{}", res.milli_cpus as f64 / 1000.0),
                                human_size(res.memory_bytes),
                                cert_expiry(n),
                                condition(n),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        NodeCmd::Inspect { node } => {
            let node = client
                .get_node(GetNodeRequest { node })
                .await
                .map_err(explain)?
                .into_inner();
            output::json(&node_json(&node))?;
        }
        NodeCmd::Update {
            node,
            availability,
            label_add,
            label_rm,
        } => {
            let availability = match availability {
                Some(a) => match NodeAvailability::parse(&a) {
                    Some(v) => Some(v as i32),
                    None => bail!("availability {a:?} is not active, pause or drain"),
                },
                None => None,
            };
            let mut add = std::collections::BTreeMap::new();
            for item in label_add {
                let Some((k, v)) = item.split_once('=') else {
                    bail!("label {item:?} is not KEY=VALUE");
                };
                add.insert(k.to_string(), v.to_string());
            }
            let updated = client
                .update_node(UpdateNodeRequest {
                    node,
                    availability,
                    label_add: add,
                    label_rm,
                    version: 0,
                })
                .await
                .map_err(explain)?
                .into_inner();
            println!("{} {}", updated.name, availability_name(&updated));
        }
        NodeCmd::Rm { node, force } => {
            client
                .remove_node(RemoveNodeRequest {
                    node: node.clone(),
                    force,
                })
                .await
                .map_err(explain)?;
            println!("removed node {node}");
        }
    }
    Ok(())
}
