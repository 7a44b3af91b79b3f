//! `berth config ...`: small named blobs of non-secret data.

use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_proto::v1::{
    Config, CreateConfigRequest, GetConfigRequest, ListConfigsRequest, RemoveConfigRequest,
    UpdateConfigRequest,
};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::client::{Client, explain};
use crate::output::{self, Format};

#[derive(Debug, Args)]
pub struct DataSource {
    /// The data itself.
    #[arg(long, conflicts_with = "file")]
    data: Option<String>,
    /// Read the data from a file ("-" for stdin).
    #[arg(long)]
    file: Option<PathBuf>,
}

impl DataSource {
    fn read(&self) -> Result<Vec<u8>> {
        match (&self.data, &self.file) {
            (Some(data), _) => Ok(data.as_bytes().to_vec()),
            (None, Some(path)) if path.as_os_str() == "-" => {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
                Ok(buf)
            }
            (None, Some(path)) => {
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
            }
            (None, None) => anyhow::bail!("give the data with --data or --file"),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Create a config.
    Create {
        name: String,
        #[command(flatten)]
        source: DataSource,
    },
    /// Replace a config's data; with --version only if nobody changed it since.
    Update {
        name: String,
        #[command(flatten)]
        source: DataSource,
        #[arg(long, default_value_t = 0)]
        version: u64,
    },
    /// Print a config's data.
    Get { name: String },
    /// Show a config's metadata.
    Inspect { name: String },
    /// List configs.
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Remove a config.
    Rm { name: String },
}

fn describe(config: &Config) -> serde_json::Value {
    json!({
        "id": config.id,
        "name": config.name,
        "version": config.version,
        "size": config.data.len(),
        "labels": config.labels,
    })
}

pub async fn run(client: &mut Client, cmd: ConfigCmd) -> Result<()> {
    match cmd {
        ConfigCmd::Create { name, source } => {
            let config = client
                .create_config(CreateConfigRequest {
                    name,
                    data: source.read()?,
                    labels: Default::default(),
                })
                .await
                .map_err(explain)?
                .into_inner();
            println!("{}", config.id);
        }
        ConfigCmd::Update {
            name,
            source,
            version,
        } => {
            let config = client
                .update_config(UpdateConfigRequest {
                    config: name,
                    data: source.read()?,
                    version,
                })
                .await
                .map_err(explain)?
                .into_inner();
            println!("{} version {}", config.name, config.version);
        }
        ConfigCmd::Get { name } => {
            let config = client
                .get_config(GetConfigRequest {
                    config: name,
                    stale: false,
                })
                .await
                .map_err(explain)?
                .into_inner();
            std::io::Write::write_all(&mut std::io::stdout(), &config.data)?;
        }
        ConfigCmd::Inspect { name } => {
            let config = client
                .get_config(GetConfigRequest {
                    config: name,
                    stale: false,
                })
                .await
                .map_err(explain)?
                .into_inner();
            output::json(&describe(&config))?;
        }
        ConfigCmd::Ls { format } => {
            let configs = client
                .list_configs(ListConfigsRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .configs;
            match format {
                Format::Json => output::json(&configs.iter().map(describe).collect())?,
                Format::Table => output::table(
                    &["ID", "NAME", "VERSION", "SIZE"],
                    &configs
                        .iter()
                        .map(|c| {
                            vec![
                                c.id.clone(),
                                c.name.clone(),
                                c.version.to_string(),
                                c.data.len().to_string(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        ConfigCmd::Rm { name } => {
            client
                .remove_config(RemoveConfigRequest {
                    config: name.clone(),
                    version: 0,
                })
                .await
                .map_err(explain)?;
            println!("removed config {name}");
        }
    }
    Ok(())
}
