//! Mutual TLS for tonic, on rustls with ring, TLS 1.3 only.
//!
//! The configs resolve the certificate, key and trust roots at every handshake
//! from [`Credentials`], so a renewal or a CA change takes effect for the next
//! connection without a restart. Open connections keep the session they have.

mod client;
mod credentials;
mod server;
#[cfg(test)]
mod tests;
mod verify;

use std::sync::Arc;

pub use client::{BootstrapError, connect, connect_lazy, fetch_root_ca, pinned_channel};
pub use credentials::Credentials;
pub use server::{
    PeerInfo, ServerStream, SharedIncoming, incoming, incoming_shared, split_by_role,
};

/// How a process talks: mutual TLS with its credentials, or — only when an
/// operator asked for it, for benchmarks — plain text.
#[derive(Clone, Debug)]
pub enum Security {
    Tls(Arc<Credentials>),
    Plaintext,
}

impl Security {
    pub fn credentials(&self) -> Option<&Arc<Credentials>> {
        match self {
            Security::Tls(creds) => Some(creds),
            Security::Plaintext => None,
        }
    }
}

/// The trust roots of a PEM bundle (tests of other modules).
#[cfg(test)]
pub(crate) fn root_store_for_tests(ca_pem: &str) -> Arc<rustls::RootCertStore> {
    credentials::root_store(ca_pem).expect("roots")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// HTTP/2 is the only protocol spoken (gRPC).
fn alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec()]
}
