//! Connecting to a controller's API.

use std::time::Duration;

use anyhow::{Context, Result};
use berth_proto::v1::cluster_client::ClusterClient;
use tonic::transport::{Channel, Endpoint};

pub type Client = ClusterClient<Channel>;

pub async fn connect(address: &str) -> Result<Client> {
    let channel = channel(address).await?;
    Ok(ClusterClient::new(channel).max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES))
}

/// A connection to the controller at `address`, for any of its services.
pub async fn channel(address: &str) -> Result<Channel> {
    let url = if address.starts_with("http://") || address.starts_with("https://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    let channel = Endpoint::from_shared(url.clone())
        .with_context(|| format!("invalid controller address {address:?}"))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot reach the controller at {address} (is it running? set --controller or BERTH_CONTROLLER)"))?;
    Ok(channel)
}

/// Turns a gRPC error into the controller's message, which names what was wrong.
pub fn explain(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", status.message())
}
