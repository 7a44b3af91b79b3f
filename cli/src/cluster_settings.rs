//! `berth cluster update` and `berth cluster settings`: the cluster-wide
//! settings (Swarm's `docker swarm update`), today the task history limit.

use anyhow::Result;
use berth_proto::v1::cluster_settings_service_client::ClusterSettingsServiceClient;
use berth_proto::v1::{ClusterSettings, GetClusterSettingsRequest, UpdateClusterSettingsRequest};

use crate::client::{Access, explain};
use crate::output::Format;

/// Unset in the record: the controller's default.
const DEFAULT_TASK_HISTORY_LIMIT: u32 = 5;

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// Ended tasks kept per slot (per node for global services); older ones
    /// are removed with their logs. One-offs (`berth run`) are not counted.
    #[arg(long, value_name = "N")]
    task_history_limit: Option<u32>,
}

/// `cluster update`.
pub async fn update(access: &Access, args: &UpdateArgs) -> Result<()> {
    if args.task_history_limit.is_none() {
        anyhow::bail!("nothing to update: give --task-history-limit N");
    }
    let mut client = ClusterSettingsServiceClient::new(crate::client::channel(access).await?);
    let settings = client
        .update_cluster_settings(UpdateClusterSettingsRequest {
            task_history_limit: args.task_history_limit,
        })
        .await
        .map_err(explain)?
        .into_inner();
    print(&settings, Format::Table)
}

/// `cluster settings`.
pub async fn show(access: &Access, format: Format) -> Result<()> {
    let mut client = ClusterSettingsServiceClient::new(crate::client::channel(access).await?);
    let settings = client
        .get_cluster_settings(GetClusterSettingsRequest {})
        .await
        .map_err(explain)?
        .into_inner();
    print(&settings, format)
}

fn print(settings: &ClusterSettings, format: Format) -> Result<()> {
    let limit = settings
        .task_history_limit
        .unwrap_or(DEFAULT_TASK_HISTORY_LIMIT);
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "task_history_limit": limit }))?
        ),
        Format::Table => println!("task history limit: {limit}"),
    }
    Ok(())
}
