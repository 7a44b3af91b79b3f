//! `berth secret ...`: named secret values. The value goes from a file or
//! stdin to the controller, which seals it; nothing ever prints it again.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_proto::v1::{
    CreateSecretRequest, GetSecretRequest, ListSecretsRequest, RemoveSecretRequest, Secret,
};
use clap::Subcommand;
use serde_json::json;

use crate::client::{Client, explain};
use crate::output::{self, Format};

#[derive(Debug, Subcommand)]
pub enum SecretCmd {
    /// Create a secret from a file, or from stdin ("-", the default). Secrets
    /// cannot be changed: create one under a new name and point the service
    /// at it.
    Create {
        name: String,
        /// File holding the value, or "-" for stdin (at most 500 KiB).
        #[arg(default_value = "-")]
        file: PathBuf,
    },
    /// Show a secret's metadata (never its value).
    Inspect { name: String },
    /// List secrets.
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Remove a secret (refused while a service uses it).
    Rm { name: String },
}

fn read_value(file: &PathBuf) -> Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read the secret from stdin")?;
        Ok(buf)
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
    }
}

fn describe(secret: &Secret) -> serde_json::Value {
    json!({
        "id": secret.id,
        "name": secret.name,
        "version": secret.version,
        "labels": secret.labels,
        "created_ms": secret.timestamps.as_ref().map(|t| t.created_ms),
    })
}

pub async fn run(client: &mut Client, cmd: SecretCmd) -> Result<()> {
    match cmd {
        SecretCmd::Create { name, file } => {
            let secret = client
                .create_secret(CreateSecretRequest {
                    name,
                    data: read_value(&file)?,
                    labels: Default::default(),
                })
                .await
                .map_err(explain)?
                .into_inner();
            println!("{}", secret.id);
        }
        SecretCmd::Inspect { name } => {
            let secret = client
                .get_secret(GetSecretRequest { secret: name })
                .await
                .map_err(explain)?
                .into_inner();
            output::json(&describe(&secret))?;
        }
        SecretCmd::Ls { format } => {
            let secrets = client
                .list_secrets(ListSecretsRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .secrets;
            match format {
                Format::Json => output::json(&secrets.iter().map(describe).collect())?,
                Format::Table => output::table(
                    &["ID", "NAME"],
                    &secrets
                        .iter()
                        .map(|s| vec![s.id.clone(), s.name.clone()])
                        .collect::<Vec<_>>(),
                ),
            }
        }
        SecretCmd::Rm { name } => {
            client
                .remove_secret(RemoveSecretRequest {
                    secret: name.clone(),
                })
                .await
                .map_err(explain)?;
            println!("removed secret {name}");
        }
    }
    Ok(())
}
