//! berth's cluster PKI and the mutual TLS every gRPC channel speaks.
//!
//! - [`ca`]: the root certificate authority (ECDSA P-256, rcgen) and the
//!   issuing of node certificates whose identity the CA sets, never the CSR.
//! - [`identity`]: who a certificate names: node id (CN), role (OU), cluster (O).
//! - [`token`]: join tokens `BERTH-1-<CA digest>-<secret>`.
//! - [`bundle`]: `ca.pem`, `cert.pem`, `key.pem` on disk (keys mode 0600).
//! - [`tls`]: reloadable rustls configs (renewal and CA changes without restart),
//!   the TLS listener for tonic and the TLS connector for channels.
//! - [`renewal`]: when a certificate is renewed.
//!
//! One crypto provider for the whole process: ring ([`install_crypto_provider`]).

pub mod authorize;
pub mod bundle;
pub mod ca;
pub mod enroll;
mod error;
pub mod explain;
pub mod identity;
pub mod renewal;
pub mod tls;
pub mod token;

pub use bundle::Bundle;
pub use ca::{Authority, Validity};
pub use error::PkiError;
pub use identity::{CertInfo, Identity, Role};
pub use tls::{Credentials, Security};
pub use token::JoinToken;

/// Makes ring the process's rustls crypto provider. Call once at the start of
/// every binary and test that uses TLS (also through reqwest); later calls do
/// nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
