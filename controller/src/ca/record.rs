//! The CA record (`ClusterPki`, id "pki"): the roots, the signing key, the
//! join secrets, the certificate lifetime and the removed nodes.

use std::time::Duration;

use berth_pki::{Authority, JoinToken, PkiError, Role};
use berth_proto::store::ClusterPki;
use berth_proto::store::Expect;
use berth_proto::store::object::Kind;

use berth_proto::store::Op;

use crate::store::{StateMachine, StoreError, Table, put_kind};

pub const PKI_ID: &str = "pki";

/// The record of a new cluster whose root is `authority`.
pub fn initial(authority: &Authority, cert_lifetime: Duration) -> ClusterPki {
    ClusterPki {
        id: PKI_ID.to_string(),
        version: 0,
        ca_pem: authority.cert_pem().to_string(),
        ca_key_pem: authority.key_pem(),
        agent_token_secret: berth_pki::token::new_secret(),
        controller_token_secret: berth_pki::token::new_secret(),
        cert_lifetime_ms: cert_lifetime.as_millis() as u64,
        removed: Default::default(),
        timestamps: None,
        signer_pem: String::new(),
        chain_pem: String::new(),
    }
}

/// The stored record; `None` before the cluster's first entry is applied.
pub fn read(sm: &StateMachine) -> Result<Option<ClusterPki>, StoreError> {
    Ok(sm.get(Table::Pki, PKI_ID)?.and_then(|o| match o.kind {
        Some(Kind::Pki(p)) => Some(p),
        _ => None,
    }))
}

/// Writes `record` if nobody changed it since it was read.
pub fn put(record: ClusterPki) -> Op {
    let version = record.version;
    put_kind(Kind::Pki(record), Expect::Version, version)
}

/// The CA that signs now: the newest root during and after a rotation.
pub fn authority(record: &ClusterPki) -> Result<Authority, PkiError> {
    Authority::from_pem(signer_pem(record), &record.ca_key_pem)
}

/// The signing root's certificate.
pub fn signer_pem(record: &ClusterPki) -> &str {
    if record.signer_pem.is_empty() {
        &record.ca_pem
    } else {
        &record.signer_pem
    }
}

/// `cert_pem` with what must travel with it: during a rotation the new root
/// cross-signed by the old one, so nodes that trust only the old root accept it.
pub fn with_chain(record: &ClusterPki, cert_pem: &str) -> String {
    if record.chain_pem.is_empty() {
        cert_pem.to_string()
    } else {
        format!("{}\n{}", cert_pem.trim_end(), record.chain_pem)
    }
}

/// Whether a root rotation is under way.
pub fn rotating(record: &ClusterPki) -> bool {
    !record.chain_pem.is_empty()
}

/// The record with a new root that signs from now on; both roots are trusted
/// until every node has a certificate of the new one.
pub fn begin_rotation(
    record: &ClusterPki,
    cluster_id: &str,
    now_ms: i64,
) -> Result<ClusterPki, PkiError> {
    let old = authority(record)?;
    let (new, cross) = old.successor(cluster_id, now_ms)?;
    let mut next = record.clone();
    next.ca_pem = format!("{}\n{}", signer_pem(record).trim_end(), new.cert_pem());
    next.signer_pem = new.cert_pem().to_string();
    next.ca_key_pem = new.key_pem();
    next.chain_pem = cross;
    Ok(next)
}

/// The record once every node is on the new root: only it is trusted.
pub fn finish_rotation(record: &ClusterPki) -> ClusterPki {
    let mut next = record.clone();
    next.ca_pem = signer_pem(record).to_string();
    next.signer_pem = String::new();
    next.chain_pem = String::new();
    next
}

pub fn lifetime(record: &ClusterPki) -> Duration {
    match record.cert_lifetime_ms {
        0 => berth_pki::ca::DEFAULT_LIFETIME,
        ms => Duration::from_millis(ms),
    }
}

/// The current join token of `role` (agents and controllers have tokens).
pub fn token(record: &ClusterPki, role: Role) -> Option<JoinToken> {
    let secret = match role {
        Role::Agent => &record.agent_token_secret,
        Role::Controller => &record.controller_token_secret,
        Role::Admin => return None,
    };
    Some(JoinToken {
        ca_digest: berth_pki::bundle::ca_digest(&record.ca_pem),
        secret: secret.clone(),
    })
}

/// Whether `node_id`'s certificates are refused at `now_ms`.
pub fn is_removed(
    removed: &std::collections::BTreeMap<String, i64>,
    node_id: &str,
    now_ms: i64,
) -> bool {
    removed.get(node_id).is_some_and(|until| *until > now_ms)
}

/// The trust bundle's digest as of a store revision: asked on every agent
/// heartbeat, recomputed only when the store changed.
#[derive(Clone, Default)]
pub struct DigestCache {
    cached: std::sync::Arc<std::sync::Mutex<Option<(u64, String)>>>,
}

impl DigestCache {
    /// SHA-256 of `sm`'s trust bundle ("" before the CA record exists).
    pub fn digest(&self, sm: &StateMachine) -> String {
        let Ok(revision) = sm.revision() else {
            return String::new();
        };
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, digest)) = cached.as_ref()
            && *at == revision
        {
            return digest.clone();
        }
        let digest = read(sm)
            .ok()
            .flatten()
            .map(|record| berth_pki::bundle::ca_digest(&record.ca_pem))
            .unwrap_or_default();
        *cached = Some((revision, digest.clone()));
        digest
    }
}
