//! A process's current TLS identity and trust roots, replaceable at run time.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;

use super::provider;
use crate::bundle::certificates;
use crate::{Bundle, CertInfo, PkiError};

/// Everything derived from one bundle, built once when it is loaded.
pub(super) struct Loaded {
    pub bundle: Bundle,
    pub info: CertInfo,
    pub certified: Arc<CertifiedKey>,
    pub client_verifier: Arc<dyn ClientCertVerifier>,
    pub optional_client_verifier: Arc<dyn ClientCertVerifier>,
    pub server_verifier: Arc<dyn ServerCertVerifier>,
}

pub struct Credentials {
    current: ArcSwap<Loaded>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("identity", &self.current.load().info.identity)
            .finish_non_exhaustive()
    }
}

/// The trust roots of a PEM bundle.
pub(crate) fn root_store(ca_pem: &str) -> Result<Arc<RootCertStore>, PkiError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_pem)? {
        roots
            .add(cert)
            .map_err(|e| PkiError::Roots(format!("CA certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

fn load(bundle: Bundle) -> Result<Loaded, PkiError> {
    let chain = certificates(&bundle.cert_pem)?;
    let info = CertInfo::from_der(&chain[0])?;
    let key = PrivateKeyDer::from_pem_slice(bundle.key_pem.as_bytes())
        .map_err(|e| PkiError::BadKey(e.to_string()))?;
    let signer = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| PkiError::BadKey(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|e| PkiError::BadKey(format!("it does not belong to the certificate: {e}")))?;
    let roots = root_store(&bundle.ca_pem)?;
    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| PkiError::Roots(e.to_string()))?;
    let optional_client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| PkiError::Roots(e.to_string()))?;
    let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| PkiError::Roots(e.to_string()))?;
    Ok(Loaded {
        bundle,
        info,
        certified: Arc::new(certified),
        client_verifier,
        optional_client_verifier,
        server_verifier,
    })
}

impl Credentials {
    pub fn new(bundle: Bundle) -> Result<Arc<Credentials>, PkiError> {
        Ok(Arc::new(Credentials {
            current: ArcSwap::from_pointee(load(bundle)?),
        }))
    }

    /// Switches to `bundle` for every handshake from now on.
    pub fn replace(&self, bundle: Bundle) -> Result<(), PkiError> {
        self.current.store(Arc::new(load(bundle)?));
        Ok(())
    }

    pub(super) fn loaded(&self) -> arc_swap::Guard<Arc<Loaded>> {
        self.current.load()
    }

    /// What the current certificate says.
    pub fn info(&self) -> CertInfo {
        self.current.load().info.clone()
    }

    pub fn bundle(&self) -> Bundle {
        self.current.load().bundle.clone()
    }
}
