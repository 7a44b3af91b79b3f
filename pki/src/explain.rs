//! What a failed TLS connection means, in words a user can act on. In TLS 1.3
//! a client learns that the server refused its certificate only from an alert
//! on its first read, deep inside tonic's error chain: find it there.

use std::error::Error as StdError;

use rustls::{AlertDescription, CertificateError};

/// Every message of an error and its sources, joined by ": ".
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(next) = source {
        let text = next.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = next.source();
    }
    parts.join(": ")
}

/// The rustls error somewhere in the chain of `err`, if any.
fn find_rustls(err: &(dyn StdError + 'static)) -> Option<rustls::Error> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.clone());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(tls.clone());
        }
        current = e.source();
    }
    None
}

/// A sentence saying why a TLS connection failed, when the chain of `err`
/// holds a TLS failure; `server` says who was called ("the controller").
pub fn tls_failure(err: &(dyn StdError + 'static), server: &str) -> Option<String> {
    let text = match find_rustls(err)? {
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateExpired => {
                format!("{server} refused our certificate: it has expired")
            }
            AlertDescription::UnknownCA => format!(
                "{server} refused our certificate: it is not signed by the cluster's CA \
                 (credentials of another cluster?)"
            ),
            AlertDescription::CertificateRequired => {
                format!("{server} requires a client certificate and we sent none")
            }
            AlertDescription::BadCertificate | AlertDescription::DecryptError => {
                format!(
                    "{server} refused our certificate: it is not signed by the cluster's CA \
                     (credentials of another cluster?) or it was damaged; {server}'s log says which"
                )
            }
            AlertDescription::CertificateRevoked => {
                format!("{server} refused our certificate: this node was removed")
            }
            other => format!("{server} ended the TLS handshake: {other:?}"),
        },
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "{server}'s certificate is not signed by the CA we trust (ca.pem): \
             credentials of another cluster?"
        ),
        rustls::Error::InvalidCertificate(CertificateError::Expired) => {
            format!("{server}'s certificate has expired")
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidYet) => format!(
            "{server}'s certificate is not valid yet: are the clocks of both machines right?"
        ),
        rustls::Error::InvalidCertificate(other) => {
            format!("{server}'s certificate is invalid: {other:?}")
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            format!("{server} does not speak TLS (a plain-text server, or not a berth endpoint?)")
        }
        other => format!("TLS with {server} failed: {other}"),
    };
    Some(text)
}
