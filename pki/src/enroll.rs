//! Getting a certificate: the first time with a join token, later by renewing
//! with the current one.

use berth_proto::v1::certificates_client::CertificatesClient;
use berth_proto::v1::{IssueCertificateRequest, IssueCertificateResponse, RenewCertificateRequest};
use tonic::transport::Channel;

use crate::tls::{BootstrapError, fetch_root_ca, pinned_channel};
use crate::{Bundle, JoinToken, PkiError, Role, ca};

/// What a join gave: credentials and who the cluster says we are.
#[derive(Debug)]
pub struct Enrolled {
    pub bundle: Bundle,
    pub node_id: String,
    pub role: Role,
    pub cluster_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error("{address} refused the join: {message}")]
    Refused { address: String, message: String },
    #[error("the certificate {address} issued is unusable: {source}")]
    BadAnswer { address: String, source: PkiError },
    #[error(transparent)]
    Pki(#[from] PkiError),
}

fn refused(address: &str) -> impl Fn(tonic::Status) -> EnrollError + '_ {
    move |status| EnrollError::Refused {
        address: address.to_string(),
        message: status.message().to_string(),
    }
}

fn enrolled(
    address: &str,
    key_pem: String,
    answer: IssueCertificateResponse,
) -> Result<Enrolled, EnrollError> {
    let bundle = Bundle {
        ca_pem: answer.ca_pem,
        cert_pem: answer.cert_pem,
        key_pem,
    };
    let bad = |source| EnrollError::BadAnswer {
        address: address.to_string(),
        source,
    };
    let info = bundle.info().map_err(bad)?;
    // Loading checks that the key matches and the roots parse.
    crate::Credentials::new(bundle.clone()).map_err(bad)?;
    Ok(Enrolled {
        bundle,
        node_id: info.identity.node_id,
        role: info.identity.role,
        cluster_id: info.identity.cluster_id,
    })
}

/// Joins through the controller at `address` with `token`: pins the CA by the
/// token's digest, then sends a CSR for `key_pem` (a new key when `None`).
/// `node_id` asks to keep an earlier identity (granted only for its key).
pub async fn join(
    address: &str,
    token: &JoinToken,
    key_pem: Option<String>,
    node_id: &str,
) -> Result<Enrolled, EnrollError> {
    let ca_pem = fetch_root_ca(address, &token.ca_digest).await?;
    let (key_pem, csr) = match key_pem {
        Some(key) => {
            let csr = ca::csr_for_key_pem(&key)?;
            (key, csr)
        }
        None => ca::new_key_and_csr()?,
    };
    let channel = pinned_channel(address, &ca_pem).await?;
    let answer = CertificatesClient::new(channel)
        .issue_certificate(IssueCertificateRequest {
            token: token.to_string(),
            csr,
            node_id: node_id.to_string(),
        })
        .await
        .map_err(refused(address))?
        .into_inner();
    enrolled(address, key_pem, answer)
}

/// A fresh certificate (and key) for the identity of the credentials the
/// `channel` authenticates with.
pub async fn renew(channel: Channel, address: &str) -> Result<Enrolled, EnrollError> {
    let (key_pem, csr) = ca::new_key_and_csr()?;
    let answer = CertificatesClient::new(channel)
        .renew_certificate(RenewCertificateRequest { csr })
        .await
        .map_err(refused(address))?
        .into_inner();
    enrolled(address, key_pem, answer)
}

/// The role a token's secret joins as, given the cluster's secrets.
pub fn token_role(token: &JoinToken, agent_secret: &str, controller_secret: &str) -> Option<Role> {
    if token.secret_matches(agent_secret) {
        Some(Role::Agent)
    } else if token.secret_matches(controller_secret) {
        Some(Role::Controller)
    } else {
        None
    }
}
