use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot create a key or certificate: {0}")]
    Generate(rcgen::Error),
    #[error("the certificate signing request is invalid: {0}")]
    BadCsr(rcgen::Error),
    #[error("the certificate is malformed: {0}")]
    BadCertificate(String),
    #[error("the private key is malformed: {0}")]
    BadKey(String),
    #[error("the certificate does not name a berth {what}: {detail}")]
    NotBerth { what: &'static str, detail: String },
    #[error("{0}")]
    BadToken(String),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no TLS credentials in {dir} ({missing} is missing): copy a controller's \
         <data-dir>/admin/ there, or point --tls-dir / BERTH_TLS_DIR at it"
    )]
    NoCredentials { dir: PathBuf, missing: &'static str },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS trust roots: {0}")]
    Roots(String),
}
