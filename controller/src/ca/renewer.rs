//! A controller renews its own certificate. It holds the CA (in its copy of
//! the Raft state), so it signs locally: a controller that was off past its
//! certificate's expiry renews at start, without anyone's help.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_pki::ca::{Validity, new_key_and_csr};
use berth_pki::renewal::random_renew_at;
use berth_pki::{Bundle, CertInfo, Credentials, PkiError};
use tracing::{info, warn};

use super::record;
use crate::store::{StateMachine, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("cannot read the CA record: {0}")]
    Store(#[from] StoreError),
    #[error("the state holds no CA record yet")]
    NoRecord,
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// A new key and certificate for the identity of `creds`, signed with the CA
/// of the local state, saved to `tls_dir` and in use from now on.
pub fn renew_locally(
    sm: &StateMachine,
    creds: &Credentials,
    tls_dir: &Path,
) -> Result<CertInfo, RenewError> {
    let record = record::read(sm)?.ok_or(RenewError::NoRecord)?;
    let authority = record::authority(&record)?;
    let identity = creds.info().identity;
    let (key_pem, csr) = new_key_and_csr()?;
    let validity = Validity::starting_at(crate::clock::now_ms(), record::lifetime(&record));
    let issued = authority.issue(&csr, &identity, validity)?;
    let bundle = Bundle {
        ca_pem: record.ca_pem.clone(),
        cert_pem: issued.cert_pem,
        key_pem,
    };
    bundle.save(tls_dir)?;
    creds.replace(bundle)?;
    Ok(issued.info)
}

/// Renews whenever the current certificate reaches its renewal point (and at
/// once if it is already past it, e.g. expired while the controller was off).
pub async fn run(sm: StateMachine, creds: Arc<Credentials>, tls_dir: PathBuf) {
    loop {
        let info = creds.info();
        let at = random_renew_at(info.not_before_ms, info.not_after_ms);
        let wait = (at - crate::clock::now_ms()).max(0) as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        match renew_locally(&sm, &creds, &tls_dir) {
            Ok(info) => info!(
                expires = %berth_pki::identity::format_ms(info.not_after_ms),
                "renewed this controller's certificate"
            ),
            Err(err) => {
                warn!(%err, "cannot renew this controller's certificate; retrying in 30 s");
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    }
}
