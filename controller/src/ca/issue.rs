//! Who gets which certificate: plain decisions over the CA record and the
//! node table. A join token decides the role; the controller decides the id.

use berth_pki::ca::{Issued, Validity, csr_public_key_sha256};
use berth_pki::enroll::token_role;
use berth_pki::{Identity, JoinToken, PkiError, Role};
use berth_proto::store::ClusterPki;
use berth_proto::v1::Node;

use super::record;

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("{0}")]
    BadToken(String),
    #[error(
        "the join token was made for another CA (this cluster's CA has digest {current}); \
         get a current one with `berth cluster join-token`"
    )]
    OtherCa { current: String },
    #[error("the join token is not valid (rotated, or of another cluster)")]
    WrongToken,
    #[error("{0}")]
    BadRequest(PkiError),
    #[error(
        "node {0} was removed from the cluster: it cannot rejoin under its old id \
         (wipe the agent's data dir to join as a new node)"
    )]
    Removed(String),
    #[error(
        "node {0} exists and this request is not signed by its key: a node keeps its id \
         only with its own key (wipe the agent's data dir to join as a new node)"
    )]
    NotTheNode(String),
    #[error("the cluster's CA is unusable: {0}")]
    Ca(PkiError),
    #[error("the cluster has no CA yet (is it initialized?)")]
    NoCa,
}

/// Who asks to join.
pub struct Applicant<'a> {
    /// The whole join token.
    pub token: &'a str,
    /// The id an agent asks to keep ("" for a new node).
    pub node_id: &'a str,
    /// The stored node of that id.
    pub node: Option<&'a Node>,
    /// SHA-256 of the request's key.
    pub key_sha256: &'a [u8],
}

/// The identity `applicant` gets; `new_id` makes a fresh id for a role.
pub fn join_identity(
    record: &ClusterPki,
    cluster_id: &str,
    applicant: &Applicant<'_>,
    now_ms: i64,
    new_id: &mut dyn FnMut(Role) -> String,
) -> Result<Identity, IssueError> {
    let Applicant {
        token,
        node_id,
        node,
        key_sha256,
    } = *applicant;
    let token = JoinToken::parse(token).map_err(|e| IssueError::BadToken(e.to_string()))?;
    let current = berth_pki::bundle::ca_digest(&record.ca_pem);
    if token.ca_digest != current {
        return Err(IssueError::OtherCa { current });
    }
    let role = token_role(
        &token,
        &record.agent_token_secret,
        &record.controller_token_secret,
    )
    .ok_or(IssueError::WrongToken)?;
    let node_id = match role {
        Role::Controller => new_id(Role::Controller),
        _ if node_id.is_empty() => new_id(role),
        _ if record::is_removed(&record.removed, node_id, now_ms) => {
            return Err(IssueError::Removed(node_id.to_string()));
        }
        _ => match node {
            Some(node) if node.cert_key_sha256.as_slice() != key_sha256 => {
                return Err(IssueError::NotTheNode(node_id.to_string()));
            }
            // The node's own key, or an id no node holds: keep it.
            _ => node_id.to_string(),
        },
    };
    Ok(Identity {
        node_id,
        role,
        cluster_id: cluster_id.to_string(),
    })
}

/// The SHA-256 of the key of a DER request, after checking its signature.
pub fn request_key(csr: &[u8]) -> Result<Vec<u8>, IssueError> {
    csr_public_key_sha256(csr).map_err(IssueError::BadRequest)
}

/// Signs `csr` for `identity` with the record's CA and lifetime.
pub fn sign(
    record: &ClusterPki,
    csr: &[u8],
    identity: &Identity,
    now_ms: i64,
) -> Result<Issued, IssueError> {
    let authority = record::authority(record).map_err(IssueError::Ca)?;
    let mut issued = authority
        .issue(
            csr,
            identity,
            Validity::starting_at(now_ms, record::lifetime(record)),
        )
        .map_err(|e| match e {
            PkiError::BadCsr(_) => IssueError::BadRequest(e),
            other => IssueError::Ca(other),
        })?;
    issued.cert_pem = record::with_chain(record, &issued.cert_pem);
    Ok(issued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn setup() -> ClusterPki {
        let ca = berth_pki::Authority::create("c1", 0).unwrap();
        record::initial(&ca, Duration::from_secs(3600))
    }

    fn join(
        record: &ClusterPki,
        token: &str,
        node_id: &str,
        node: Option<&Node>,
        key: &[u8],
    ) -> Result<Identity, IssueError> {
        let applicant = Applicant {
            token,
            node_id,
            node,
            key_sha256: key,
        };
        join_identity(record, "c1", &applicant, 1_000, &mut |role| match role {
            Role::Controller => "42".to_string(),
            _ => "new-agent".to_string(),
        })
    }

    #[test]
    fn the_token_decides_the_role_and_the_controller_the_id() {
        let record = setup();
        let agent = record::token(&record, Role::Agent).unwrap().to_string();
        let controller = record::token(&record, Role::Controller)
            .unwrap()
            .to_string();
        let id = join(&record, &agent, "", None, b"k").unwrap();
        assert_eq!((id.role, id.node_id.as_str()), (Role::Agent, "new-agent"));
        let id = join(&record, &controller, "ignored", None, b"k").unwrap();
        assert_eq!((id.role, id.node_id.as_str()), (Role::Controller, "42"));
    }

    #[test]
    fn a_rotated_or_foreign_token_is_refused() {
        let mut record = setup();
        let old = record::token(&record, Role::Agent).unwrap().to_string();
        record.agent_token_secret = berth_pki::token::new_secret();
        assert!(matches!(
            join(&record, &old, "", None, b"k"),
            Err(IssueError::WrongToken)
        ));
        let other = setup();
        let foreign = record::token(&other, Role::Agent).unwrap().to_string();
        assert!(matches!(
            join(&record, &foreign, "", None, b"k"),
            Err(IssueError::OtherCa { .. })
        ));
        assert!(matches!(
            join(&record, "BERTH-1-x", "", None, b"k"),
            Err(IssueError::BadToken(_))
        ));
    }

    #[test]
    fn a_node_keeps_its_id_only_with_its_key_and_never_after_removal() {
        let mut record = setup();
        let token = record::token(&record, Role::Agent).unwrap().to_string();
        let node = Node {
            id: "n1".into(),
            cert_key_sha256: b"mine".to_vec(),
            ..Default::default()
        };
        assert_eq!(
            join(&record, &token, "n1", Some(&node), b"mine")
                .unwrap()
                .node_id,
            "n1"
        );
        assert!(matches!(
            join(&record, &token, "n1", Some(&node), b"theirs"),
            Err(IssueError::NotTheNode(_))
        ));
        record.removed.insert("n1".into(), 5_000);
        assert!(matches!(
            join(&record, &token, "n1", None, b"mine"),
            Err(IssueError::Removed(_))
        ));
    }
}
