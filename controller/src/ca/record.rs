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

pub fn authority(record: &ClusterPki) -> Result<Authority, PkiError> {
    Authority::from_pem(&record.ca_pem, &record.ca_key_pem)
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
pub fn is_removed(record: &ClusterPki, node_id: &str, now_ms: i64) -> bool {
    record
        .removed
        .get(node_id)
        .is_some_and(|until| *until > now_ms)
}
