//! Registry credentials in the Docker `config.json` format:
//! `{"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}` (or `username`
//! and `password` fields). Bearer tokens are then obtained by oci-client.
//!
//! They come from a file (`berth-agent image pull --registry-auth`), or from
//! memory: the secret a service's `--with-registry-auth` made, delivered with
//! its tasks and never written to the agent's disk. The CLI reads its own
//! docker config with the same parser to make that secret.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("failed to read the registry credentials file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `what` names where the credentials came from (a file, a secret).
    #[error("{what}: {reason}")]
    Parse { what: String, reason: String },
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// A parsed Docker `config.json`.
pub struct DockerConfig {
    what: String,
    raw: RawConfig,
}

/// A user and password for one registry. Its `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    /// The registry as the credentials name it (`127.0.0.1:5000`, `docker.io`).
    pub registry: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl BasicCredentials {
    /// A `config.json` holding only these credentials: the form a service's
    /// registry-auth secret takes.
    pub fn to_config_json(&self) -> Vec<u8> {
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.username, self.password));
        serde_json::json!({ "auths": { &self.registry: { "auth": auth } } })
            .to_string()
            .into_bytes()
    }
}

impl DockerConfig {
    /// Parses `data`; `what` names its source in errors ("registry
    /// credentials file /root/.docker/config.json").
    pub fn parse(data: &[u8], what: impl Into<String>) -> Result<DockerConfig, AuthError> {
        let what = what.into();
        let raw = serde_json::from_slice(data).map_err(|e| AuthError::Parse {
            what: what.clone(),
            reason: e.to_string(),
        })?;
        Ok(DockerConfig { what, raw })
    }

    /// Reads and parses the file `path`.
    pub fn read(path: &Path) -> Result<DockerConfig, AuthError> {
        let data = std::fs::read(path).map_err(|source| AuthError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        DockerConfig::parse(
            &data,
            format!("registry credentials file {}", path.display()),
        )
    }

    fn parse_err(&self, reason: String) -> AuthError {
        AuthError::Parse {
            what: self.what.clone(),
            reason,
        }
    }

    /// The credential helper (`docker-credential-<name>`) Docker would ask for
    /// `registry`: its `credHelpers` entry, else the `credsStore`.
    pub fn helper_for(&self, registry: &str) -> Option<&str> {
        let wanted = registry_keys(registry);
        self.raw
            .cred_helpers
            .iter()
            .find(|(key, _)| wanted.iter().any(|w| w == host_of(key)))
            .map(|(_, helper)| helper.as_str())
            .or(self.raw.creds_store.as_deref())
            .filter(|helper| !helper.is_empty())
    }

    /// The `auths` entry for `registry` (as written in the reference, e.g.
    /// `127.0.0.1:5000` or `docker.io`), if there is one.
    pub fn basic_for(&self, registry: &str) -> Result<Option<BasicCredentials>, AuthError> {
        let wanted = registry_keys(registry);
        let Some((key, entry)) = self
            .raw
            .auths
            .iter()
            .find(|(key, _)| wanted.iter().any(|w| w == host_of(key)))
        else {
            return Ok(None);
        };
        let found = |username: &str, password: &str| {
            Ok(Some(BasicCredentials {
                registry: registry.to_string(),
                username: username.to_string(),
                password: password.to_string(),
            }))
        };
        if entry
            .identitytoken
            .as_deref()
            .is_some_and(|t| !t.is_empty())
        {
            return Err(self.parse_err(format!(
                "entry {key} holds an identity token (OAuth), which berth cannot use: \
                 log in with a password or an access token"
            )));
        }
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.trim().is_empty()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| self.parse_err(format!("entry {key}: auth is not base64: {e}")))?;
            let text = String::from_utf8(raw)
                .map_err(|_| self.parse_err(format!("entry {key}: auth is not UTF-8")))?;
            let (user, pass) = text
                .split_once(':')
                .ok_or_else(|| self.parse_err(format!("entry {key}: auth is not user:password")))?;
            return found(user, pass);
        }
        match (&entry.username, &entry.password) {
            (Some(u), Some(p)) => found(u, p),
            _ => Err(self.parse_err(format!(
                "entry {key} has neither auth nor username and password"
            ))),
        }
    }
}

/// A Docker `config.json` held in memory (a service's registry-auth secret
/// as delivered to this node). Cheap to clone; its `Debug` shows only where
/// it came from.
#[derive(Clone)]
pub struct RegistryCredentials {
    what: String,
    data: Arc<Vec<u8>>,
}

impl RegistryCredentials {
    /// `data` is the config; `what` names it in errors ("registry
    /// credentials secret registry-auth-web-1f2e").
    pub fn new(what: impl Into<String>, data: Vec<u8>) -> RegistryCredentials {
        RegistryCredentials {
            what: what.into(),
            data: Arc::new(data),
        }
    }

    /// Where they came from ("registry credentials secret registry-auth-web-1f2e").
    pub fn what(&self) -> &str {
        &self.what
    }

    /// The user and password it holds for `registry`, if any.
    pub fn basic_for(&self, registry: &str) -> Result<Option<BasicCredentials>, AuthError> {
        DockerConfig::parse(&self.data, self.what.clone())?.basic_for(registry)
    }
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RegistryCredentials")
            .field(&self.what)
            .finish()
    }
}

/// Credentials for `registry`: those in `memory` if given, else those in
/// `file`, else anonymous access.
pub fn credentials(
    memory: Option<&RegistryCredentials>,
    file: Option<&Path>,
    registry: &str,
) -> Result<RegistryAuth, AuthError> {
    match (memory, file) {
        (Some(creds), _) => Ok(basic_or_anonymous(creds.basic_for(registry)?)),
        (None, Some(path)) => Ok(basic_or_anonymous(
            DockerConfig::read(path)?.basic_for(registry)?,
        )),
        (None, None) => Ok(RegistryAuth::Anonymous),
    }
}

fn basic_or_anonymous(found: Option<BasicCredentials>) -> RegistryAuth {
    match found {
        Some(c) => RegistryAuth::Basic(c.username, c.password),
        None => RegistryAuth::Anonymous,
    }
}

/// The host part of an `auths` key (`https://index.docker.io/v1/` →
/// `index.docker.io`).
fn host_of(key: &str) -> &str {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    key.split('/').next().unwrap_or(key)
}

fn registry_keys(registry: &str) -> Vec<String> {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => vec![
            "docker.io".into(),
            "index.docker.io".into(),
            "registry-1.docker.io".into(),
        ],
        other => vec![other.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> RegistryAuth {
        RegistryAuth::Basic(user.into(), pass.into())
    }

    #[test]
    fn finds_basic_credentials_by_host() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{auth}"}},
                "https://index.docker.io/v1/":{{"username":"bob","password":"pw"}}}}}}"#
            ),
        )
        .unwrap();
        assert_eq!(
            credentials(None, Some(&path), "127.0.0.1:5000").unwrap(),
            basic("alice", "s3cret")
        );
        assert_eq!(
            credentials(None, Some(&path), "docker.io").unwrap(),
            basic("bob", "pw")
        );
        assert_eq!(
            credentials(None, Some(&path), "other:1").unwrap(),
            RegistryAuth::Anonymous
        );
        assert_eq!(
            credentials(None, None, "x").unwrap(),
            RegistryAuth::Anonymous
        );
        std::fs::write(&path, "{").unwrap();
        assert!(
            credentials(None, Some(&path), "x")
                .unwrap_err()
                .to_string()
                .contains("config.json")
        );
    }

    #[test]
    fn credentials_in_memory_come_first_and_round_trip_as_a_config() {
        let made = BasicCredentials {
            registry: "10.0.0.5:5000".into(),
            username: "alice".into(),
            password: "p:w".into(),
        };
        let memory =
            RegistryCredentials::new("registry credentials secret s1", made.to_config_json());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(
            &file,
            r#"{"auths":{"10.0.0.5:5000":{"username":"bob","password":"x"}}}"#,
        )
        .unwrap();
        assert_eq!(
            credentials(Some(&memory), Some(&file), "10.0.0.5:5000").unwrap(),
            basic("alice", "p:w")
        );
        assert_eq!(
            credentials(Some(&memory), None, "elsewhere:5000").unwrap(),
            RegistryAuth::Anonymous
        );
        // Neither Debug form shows the password.
        assert!(!format!("{made:?} {memory:?}").contains("p:w"));
        let bad = RegistryCredentials::new("registry credentials secret s2", b"nope".to_vec());
        let err = credentials(Some(&bad), None, "x").unwrap_err().to_string();
        assert!(err.starts_with("registry credentials secret s2: "), "{err}");
    }

    #[test]
    fn helpers_and_identity_tokens_are_recognised() {
        let config = DockerConfig::parse(
            br#"{"auths":{"ghcr.io":{"identitytoken":"tok"},"q.io":{}},
                "credsStore":"desktop","credHelpers":{"https://gcr.io":"gcloud"}}"#,
            "test config",
        )
        .unwrap();
        assert_eq!(config.helper_for("gcr.io"), Some("gcloud"));
        assert_eq!(config.helper_for("127.0.0.1:5000"), Some("desktop"));
        let err = config.basic_for("ghcr.io").unwrap_err().to_string();
        assert!(err.contains("identity token"), "{err}");
        let err = config.basic_for("q.io").unwrap_err().to_string();
        assert!(err.contains("neither auth nor username"), "{err}");
        assert_eq!(config.basic_for("none.io").unwrap(), None);
        let plain = DockerConfig::parse(br#"{"auths":{}}"#, "t").unwrap();
        assert_eq!(plain.helper_for("gcr.io"), None);
    }
}
