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
    let bundle = renewed(sm, &creds.bundle())?;
    bundle.save(tls_dir)?;
    let info = bundle.info()?;
    creds.replace(bundle)?;
    Ok(info)
}

/// `old`'s identity with a new key, signed by the CA of the local state, and
/// the state's trust bundle.
fn renewed(sm: &StateMachine, old: &Bundle) -> Result<Bundle, RenewError> {
    let record = record::read(sm)?.ok_or(RenewError::NoRecord)?;
    issue_locally(&record, &old.info()?.identity, record::lifetime(&record))
}

/// A new key and certificate for `identity` lasting `lifetime`, signed by
/// `record`'s CA, with its trust bundle (a restored controller's and admin's
/// credentials too).
pub fn issue_locally(
    record: &berth_proto::store::ClusterPki,
    identity: &berth_pki::Identity,
    lifetime: Duration,
) -> Result<Bundle, RenewError> {
    let authority = record::authority(record)?;
    let (key_pem, csr) = new_key_and_csr()?;
    let validity = Validity::starting_at(crate::clock::now_ms(), lifetime);
    let issued = authority.issue(&csr, identity, validity)?;
    Ok(Bundle {
        ca_pem: record.ca_pem.clone(),
        cert_pem: record::with_chain(record, &issued.cert_pem),
        key_pem,
    })
}

/// Whether the state's CA moved on from `bundle`: other trusted roots, or a
/// new root that signs (a rotation began or ended).
fn outdated(sm: &StateMachine, bundle: &Bundle) -> bool {
    let Ok(Some(record)) = record::read(sm) else {
        return false;
    };
    let signer = record::authority(&record).and_then(|a| a.key_id());
    let issuer = bundle.info().map(|i| i.authority_key_id);
    bundle.ca_pem != record.ca_pem
        || matches!((signer, issuer), (Ok(s), Ok(i)) if s != i)
        || bundle.cert_pem.matches("BEGIN CERTIFICATE").count()
            != 1 + usize::from(record::rotating(&record))
}

/// The admin bundle `--init` wrote follows the CA as this member's does: it
/// stays usable across a root rotation.
fn renew_admin_bundle(sm: &StateMachine, dir: &Path) {
    let Ok(bundle) = Bundle::load(dir) else {
        return;
    };
    if !outdated(sm, &bundle) {
        return;
    }
    match renewed(sm, &bundle).and_then(|b| b.save(dir).map_err(RenewError::from)) {
        Ok(()) => info!(dir = %dir.display(), "renewed the admin bundle for the cluster's new CA"),
        Err(err) => warn!(%err, "cannot renew the admin bundle"),
    }
}

/// How often a controller compares its credentials with the state's CA.
const CA_CHECK: Duration = Duration::from_secs(1);

/// Renews whenever the current certificate reaches its renewal point (and at
/// once if it is already past it, e.g. expired while the controller was off),
/// and as soon as the cluster's CA changes (a root rotation).
pub async fn run(sm: StateMachine, creds: Arc<Credentials>, tls_dir: PathBuf, admin_dir: PathBuf) {
    loop {
        let info = creds.info();
        let at = random_renew_at(info.not_before_ms, info.not_after_ms);
        loop {
            let now = crate::clock::now_ms();
            if now >= at || outdated(&sm, &creds.bundle()) {
                break;
            }
            let wait = ((at - now).max(0) as u64).min(CA_CHECK.as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        match renew_locally(&sm, &creds, &tls_dir) {
            Ok(info) => {
                info!(
                    expires = %berth_pki::identity::format_ms(info.not_after_ms),
                    "renewed this controller's certificate"
                );
                renew_admin_bundle(&sm, &admin_dir);
            }
            Err(err) => {
                warn!(%err, "cannot renew this controller's certificate; retrying in 30 s");
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    }
}
