//! One way to make an oci-client for berth: ring as the TLS provider (the
//! workspace's one crypto provider), HTTPS except for the registries named
//! insecure, and timeouts chosen by the caller (an agent's pull waits longer
//! than a controller's lookup).

use std::time::Duration;

use oci_client::Client;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;

/// How to reach registries.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// Registries (`HOST[:PORT]`, as written in references) reached over
    /// plain HTTP; all others over HTTPS.
    pub insecure_registries: Vec<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Blobs fetched at once.
    pub max_concurrent_download: usize,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            insecure_registries: Vec::new(),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(120),
            max_concurrent_download: 3,
        }
    }
}

/// A registry client with `settings`.
pub fn client(settings: &ClientSettings) -> Result<Client, OciDistributionError> {
    // reqwest is built without a crypto provider of its own: ring, the one
    // the whole workspace uses.
    berth_pki::install_crypto_provider();
    let config = ClientConfig {
        protocol: if settings.insecure_registries.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(settings.insecure_registries.clone())
        },
        max_concurrent_download: settings.max_concurrent_download.max(1),
        connect_timeout: Some(settings.connect_timeout),
        read_timeout: Some(settings.read_timeout),
        ..Default::default()
    };
    Client::try_from(config)
}

/// The chain of an error and its causes on one line.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_are_joined_once() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(describe(&e), "outer: inner");
        assert!(client(&ClientSettings::default()).is_ok());
    }
}
