//! Who a certificate names. The CA writes the identity into the subject:
//! CN = node id, OU = role, O = cluster id (as Swarm does), and the role's
//! server name as the only DNS name, which clients check instead of addresses.

use std::fmt;

use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use crate::PkiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A controller: Raft member, API server, CA.
    Controller,
    /// A node agent.
    Agent,
    /// A CLI user.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Controller, Role::Agent, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Controller => "controller",
            Role::Agent => "agent",
            Role::Admin => "admin",
        }
    }

    /// The DNS name in this role's certificates; clients verify a server by it.
    pub fn server_name(self) -> &'static str {
        match self {
            Role::Controller => "berth-controller",
            Role::Agent => "berth-agent",
            Role::Admin => "berth-admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub node_id: String,
    pub role: Role,
    pub cluster_id: String,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role, self.node_id)
    }
}

/// What a certificate says, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub identity: Identity,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
    /// Lower-case hex.
    pub serial: String,
    /// SHA-256 of the subject public key info: binds a node to its key.
    pub public_key_sha256: Vec<u8>,
    /// The key id of the CA that signed it (its authority key identifier):
    /// which root a node's certificate comes from during a CA rotation.
    pub authority_key_id: Vec<u8>,
    /// This certificate's own key id (a CA's, for comparing with the above).
    pub subject_key_id: Vec<u8>,
}

impl CertInfo {
    /// Parses a DER certificate issued by a berth CA.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, PkiError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
        let subject = cert.subject();
        let first = |values: Vec<Option<&str>>, what: &'static str| {
            values
                .into_iter()
                .next()
                .flatten()
                .map(str::to_string)
                .ok_or(PkiError::NotBerth {
                    what,
                    detail: format!("subject {subject} has no {what}"),
                })
        };
        let node_id = first(
            subject
                .iter_common_name()
                .map(|a| a.as_str().ok())
                .collect(),
            "node id (CN)",
        )?;
        let role_text = first(
            subject
                .iter_organizational_unit()
                .map(|a| a.as_str().ok())
                .collect(),
            "role (OU)",
        )?;
        let cluster_id = first(
            subject
                .iter_organization()
                .map(|a| a.as_str().ok())
                .collect(),
            "cluster (O)",
        )?;
        let role = Role::parse(&role_text).ok_or_else(|| PkiError::NotBerth {
            what: "role",
            detail: format!("unknown role {role_text:?}"),
        })?;
        let validity = cert.validity();
        let digest = {
            use sha2::Digest;
            sha2::Sha256::digest(cert.public_key().raw).to_vec()
        };
        let mut authority_key_id = Vec::new();
        let mut subject_key_id = Vec::new();
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    if let Some(id) = &aki.key_identifier {
                        authority_key_id = id.0.to_vec();
                    }
                }
                ParsedExtension::SubjectKeyIdentifier(id) => subject_key_id = id.0.to_vec(),
                _ => {}
            }
        }
        Ok(CertInfo {
            authority_key_id,
            subject_key_id,
            identity: Identity {
                node_id,
                role,
                cluster_id,
            },
            not_before_ms: validity.not_before.timestamp() * 1000,
            not_after_ms: validity.not_after.timestamp() * 1000,
            serial: hex::encode(cert.raw_serial()),
            public_key_sha256: digest,
        })
    }

    /// "expired", "not yet valid" or `None` when valid at `now_ms`. X.509
    /// times are whole seconds and notAfter is inclusive: valid through it.
    pub fn invalid_at(&self, now_ms: i64) -> Option<String> {
        if now_ms >= self.not_after_ms + 1000 {
            Some(format!("expired at {}", format_ms(self.not_after_ms)))
        } else if now_ms < self.not_before_ms {
            Some(format!(
                "not valid before {} (is this machine's clock right?)",
                format_ms(self.not_before_ms)
            ))
        } else {
            None
        }
    }
}

/// A UTC time as `2026-12-03 12:54:12 UTC`.
pub fn format_ms(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{ms} ms after the epoch"),
    }
}
