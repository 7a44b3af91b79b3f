//! `berth network ...`: overlay networks.

use anyhow::Result;
use berth_proto::v1::{CreateNetworkRequest, ListNetworksRequest, RemoveNetworkRequest};
use clap::Subcommand;
use serde_json::json;

use crate::client::{Client, explain};
use crate::output::{self, Format};

#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Create a network (its subnet is carved from the cluster CIDR unless given).
    Create {
        name: String,
        /// A.B.C.D/N, /8 to /24; must not overlap another network.
        #[arg(long)]
        subnet: Option<String>,
    },
    /// List networks.
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Remove networks no service uses; each is tried, a failure does not
    /// stop the rest.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub async fn run(client: &mut Client, cmd: NetworkCmd) -> Result<()> {
    match cmd {
        NetworkCmd::Create { name, subnet } => {
            let network = client
                .create_network(CreateNetworkRequest {
                    name,
                    subnet: subnet.unwrap_or_default(),
                    labels: Default::default(),
                })
                .await
                .map_err(explain)?
                .into_inner();
            println!("{} {}", network.id, network.subnet);
        }
        NetworkCmd::Ls { format } => {
            let networks = client
                .list_networks(ListNetworksRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .networks;
            match format {
                Format::Json => output::json(&serde_json::Value::Array(
                    networks
                        .iter()
                        .map(|n| {
                            json!({
                                "id": n.id,
                                "name": n.name,
                                "subnet": n.subnet,
                                "vxlan_id": n.vxlan_id,
                            })
                        })
                        .collect(),
                ))?,
                Format::Table => output::table(
                    &["ID", "NAME", "SUBNET", "VXLAN ID"],
                    &networks
                        .iter()
                        .map(|n| {
                            vec![
                                n.id.clone(),
                                n.name.clone(),
                                n.subnet.clone(),
                                n.vxlan_id.to_string(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        NetworkCmd::Rm { names } => {
            let mut removals = crate::removals::Removals::new("network");
            for name in names {
                let request = RemoveNetworkRequest {
                    network: name.clone(),
                };
                removals.record(name, client.remove_network(request).await);
            }
            removals.finish()?;
        }
    }
    Ok(())
}
