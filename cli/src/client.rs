//! Connecting to a controller's API: mutual TLS with the user's bundle
//! (`--tls-dir`, else BERTH_TLS_DIR, else ~/.config/berth/tls), or plain text
//! when the cluster was started with --insecure-plaintext.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_pki::{Bundle, Credentials, Role, Security};
use berth_proto::v1::cluster_client::ClusterClient;
use tonic::transport::{Channel, Endpoint};

pub type Client = ClusterClient<Channel>;

/// How the CLI finds its credentials.
#[derive(Clone, Debug)]
pub struct Access {
    pub address: String,
    pub tls_dir: Option<PathBuf>,
    pub insecure_plaintext: bool,
}

/// `~/.config/berth/tls`, where `berth dev` puts its cluster's admin bundle.
pub fn default_tls_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".config/berth/tls")
}

/// The user's credentials, checked before any connection is made.
fn load_credentials(dir: &Path) -> Result<Security> {
    let bundle = Bundle::load(dir)?;
    let info = bundle
        .info()
        .with_context(|| format!("{}/cert.pem", dir.display()))?;
    if let Some(why) = info.invalid_at(berth_pki::now_ms()) {
        bail!(
            "the certificate in {} {why}: get a new admin bundle from a controller \
             (<data-dir>/admin/)",
            dir.display()
        );
    }
    let creds =
        Credentials::new(bundle).with_context(|| format!("the bundle in {}", dir.display()))?;
    Ok(Security::Tls(creds))
}

pub async fn connect(access: &Access) -> Result<Client> {
    let channel = channel(access).await?;
    Ok(ClusterClient::new(channel).max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES))
}

/// A connection to the controller, for any of its services.
pub async fn channel(access: &Access) -> Result<Channel> {
    let address = &access.address;
    let security = if access.insecure_plaintext {
        Security::Plaintext
    } else {
        let dir = access.tls_dir.clone().unwrap_or_else(default_tls_dir);
        load_credentials(&dir)?
    };
    let url = format!(
        "http://{}",
        address
            .trim_start_matches("http://")
            .trim_start_matches("https://")
    );
    let endpoint = Endpoint::from_shared(url)
        .with_context(|| format!("invalid controller address {address:?}"))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true);
    berth_pki::tls::connect(endpoint, &security, Role::Controller)
        .await
        .map_err(|err| {
            let why = berth_pki::explain::tls_failure(&err, "the controller")
                .unwrap_or_else(|| berth_pki::explain::error_chain(&err));
            anyhow::anyhow!(
                "cannot reach the controller at {address} (is it running? set --controller or \
                 BERTH_CONTROLLER): {why}"
            )
        })
}

/// Turns a gRPC error into the controller's message, which names what was
/// wrong; a refused TLS handshake (it surfaces at the first call) is explained.
pub fn explain(status: tonic::Status) -> anyhow::Error {
    match berth_pki::explain::tls_failure(&status, "the controller") {
        Some(why) => anyhow::anyhow!("{why}"),
        // An empty message (a stream reset, a connection that ended) still
        // names its code: an error with no words helps nobody.
        None if status.message().is_empty() => {
            anyhow::anyhow!("the call ended with {:?} and no message", status.code())
        }
        None => anyhow::anyhow!("{}", status.message()),
    }
}
