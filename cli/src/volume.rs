//! `berth volume ...`: named local volumes (the controllers' `Volumes`
//! service). A volume's data lives on one node; tasks that mount it run there.

use anyhow::{Result, bail};
use berth_proto::v1::volumes_client::VolumesClient;
use berth_proto::v1::{
    CreateVolumeRequest, GetVolumeRequest, ListVolumesRequest, RemoveVolumeRequest, VolumeInfo,
};
use clap::Subcommand;
use serde_json::json;

use crate::client::{Access, channel, explain};
use crate::output::{self, Format};

#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// Create a volume: on --node at once, or on the node of the first task
    /// that mounts it. Creating one that exists gives the existing one.
    Create {
        name: String,
        /// The node (name or id) that holds the data.
        #[arg(long)]
        node: Option<String>,
        /// KEY=VALUE label; repeatable.
        #[arg(long)]
        label: Vec<String>,
        /// Only "local".
        #[arg(long, short = 'd', default_value = "local")]
        driver: String,
    },
    /// List volumes with their node and the services and tasks that use them.
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Names only.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Show volumes as JSON, with their mountpoint on their node.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes and delete their data on their node (refused while a
    /// service or a task uses one). --force, as Docker's: a volume that does
    /// not exist is no error, and the volume is removed even when its node
    /// cannot delete the data (which then stays there); a volume in use is
    /// refused all the same.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
        #[arg(long, short = 'f')]
        force: bool,
    },
}

fn describe(info: &VolumeInfo) -> serde_json::Value {
    let volume = info.volume.clone().unwrap_or_default();
    json!({
        "id": volume.id,
        "name": volume.name,
        "driver": volume.driver,
        "scope": "local",
        "node": info.node_name,
        "node_id": volume.node_id,
        "mountpoint": info.mountpoint,
        "status": info.status,
        "labels": volume.labels,
        "created_ms": volume.timestamps.as_ref().map(|t| t.created_ms),
        "created_at_first_use": volume.created_at_first_use,
        "services": info.services,
        "tasks": info.tasks.iter().map(|t| json!({
            "id": t.task_id,
            "name": t.task_name,
            "node": t.node_name,
            "state": t.state,
        })).collect::<Vec<_>>(),
    })
}

fn or_dash(text: String) -> String {
    if text.is_empty() { "-".into() } else { text }
}

pub async fn run(access: &Access, cmd: VolumeCmd) -> Result<()> {
    let mut client = VolumesClient::new(channel(access).await?);
    match cmd {
        VolumeCmd::Create {
            name,
            node,
            label,
            driver,
        } => {
            let info = client
                .create(CreateVolumeRequest {
                    name,
                    node: node.unwrap_or_default(),
                    labels: crate::service::key_values(&label, "--label")?,
                    driver,
                })
                .await
                .map_err(explain)?
                .into_inner();
            println!("{}", info.volume.map(|v| v.name).unwrap_or_default());
        }
        VolumeCmd::Ls { format, quiet } => {
            let volumes = client
                .list(ListVolumesRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .volumes;
            if quiet {
                for info in &volumes {
                    println!("{}", info.volume.as_ref().map_or("", |v| v.name.as_str()));
                }
                return Ok(());
            }
            match format {
                Format::Json => output::json(&serde_json::Value::Array(
                    volumes.iter().map(describe).collect(),
                ))?,
                Format::Table => output::table(
                    &["DRIVER", "VOLUME NAME", "NODE", "SERVICES", "TASKS"],
                    &volumes
                        .iter()
                        .map(|info| {
                            let volume = info.volume.clone().unwrap_or_default();
                            let tasks: Vec<String> = info
                                .tasks
                                .iter()
                                .map(|t| format!("{} ({})", t.task_name, t.state))
                                .collect();
                            vec![
                                volume.driver,
                                volume.name,
                                or_dash(info.node_name.clone()),
                                or_dash(info.services.join(",")),
                                or_dash(tasks.join(",")),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        VolumeCmd::Inspect { names } => {
            let mut out = Vec::new();
            for name in names {
                let info = client
                    .get(GetVolumeRequest { name })
                    .await
                    .map_err(explain)?
                    .into_inner();
                out.push(describe(&info));
            }
            output::json(&serde_json::Value::Array(out))?;
        }
        VolumeCmd::Rm { names, force } => {
            let mut failed = Vec::new();
            for name in names {
                match client
                    .remove(RemoveVolumeRequest {
                        name: name.clone(),
                        force,
                    })
                    .await
                {
                    Ok(reply) => {
                        for warning in reply.into_inner().warnings {
                            eprintln!("warning: volume {name}: {warning}");
                        }
                        println!("{name}");
                    }
                    Err(status) => {
                        eprintln!("berth: {:#}", explain(status));
                        failed.push(name);
                    }
                }
            }
            if !failed.is_empty() {
                bail!("not removed: {}", failed.join(", "));
            }
        }
    }
    Ok(())
}
