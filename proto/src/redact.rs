//! Debug for the messages that carry a secret value or the key that seals
//! secrets (build.rs skips prost's derived Debug for them): every field but
//! the value prints, the value shows as `<redacted>` with its length. A
//! message that holds one of them (an `Assignments` with its secrets) prints
//! through these, so no `{:?}` anywhere logs a secret.

use std::fmt;

use crate::v1::{
    CreateSecretRequest, JoinResponse, PullCredentials, SecretValue, StackSecret,
    UnlockControllerRequest,
};

/// Bytes that must never be printed: Debug and Display show only their length.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redacted(pub Vec<u8>);

impl Redacted {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// How a secret field prints.
struct Hidden(usize);

impl fmt::Debug for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0)
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValue")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("data", &Hidden(self.data.len()))
            .finish()
    }
}

impl fmt::Debug for CreateSecretRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateSecretRequest")
            .field("name", &self.name)
            .field("data", &Hidden(self.data.len()))
            .field("labels", &self.labels)
            .finish()
    }
}

impl fmt::Debug for JoinResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinResponse")
            .field("member_id", &self.member_id)
            .field("cluster_id", &self.cluster_id)
            .field("members", &self.members)
            .field("secrets_key", &Hidden(self.secrets_key.len()))
            .finish()
    }
}

impl fmt::Debug for UnlockControllerRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnlockControllerRequest")
            .field("unlock_key", &Hidden(self.unlock_key.len()))
            .finish()
    }
}

/// `berth pull`'s registry credentials.
impl fmt::Debug for PullCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullCredentials")
            .field("docker_config", &Hidden(self.docker_config.len()))
            .finish()
    }
}

/// A stack file's secret, on its way to the leader.
impl fmt::Debug for StackSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackSecret")
            .field("name", &self.name)
            .field("data", &Hidden(self.data.len()))
            .field("labels", &self.labels)
            .field("external", &self.external)
            .finish()
    }
}

/// The CA record's key and token secrets never reach a log.
impl std::fmt::Debug for crate::store::ClusterPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPki")
            .field("version", &self.version)
            .field("cert_lifetime_ms", &self.cert_lifetime_ms)
            .field("removed", &self.removed)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Assignments, AssignmentsDelta};

    #[test]
    fn no_debug_output_holds_a_secret_value() {
        let value = SecretValue {
            id: "s1".into(),
            name: "db-password".into(),
            data: b"hunter2-very-secret".to_vec(),
        };
        let set = Assignments {
            secrets: vec![value.clone()],
            ..Default::default()
        };
        let delta = AssignmentsDelta {
            secrets: vec![value],
            ..Default::default()
        };
        let create = CreateSecretRequest {
            name: "db-password".into(),
            data: b"hunter2-very-secret".to_vec(),
            ..Default::default()
        };
        let join = JoinResponse {
            secrets_key: b"hunter2-very-secret".to_vec(),
            ..Default::default()
        };
        let printed = [
            format!("{set:?}"),
            format!("{delta:#?}"),
            format!("{create:?}"),
            format!("{join:?}"),
            format!(
                "{:?}",
                UnlockControllerRequest {
                    unlock_key: "hunter2-very-secret".into()
                }
            ),
            format!("{:?}", Redacted(b"hunter2-very-secret".to_vec())),
            format!(
                "{:?}",
                crate::v1::PullImageRequest {
                    pull: Some(crate::v1::AgentPullRequest {
                        image: "web".into(),
                        credentials: Some(PullCredentials {
                            docker_config: b"hunter2-very-secret".to_vec(),
                        }),
                    }),
                    ..Default::default()
                }
            ),
        ];
        for text in printed {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains("104, 117"), "bytes as numbers: {text}");
            assert!(text.contains("<redacted 19 bytes>"), "{text}");
        }
    }
}
