//! Registry credentials from a file in the Docker `config.json` format:
//! `{"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}` (or `username`
//! and `password` fields). Bearer tokens are then obtained by oci-client.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
    #[error("registry credentials file {}: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// Credentials for `registry` (as written in the reference, e.g. `127.0.0.1:5000`
/// or `docker.io`) from `file`, or anonymous access.
pub fn credentials(file: Option<&Path>, registry: &str) -> Result<RegistryAuth, AuthError> {
    let Some(path) = file else {
        return Ok(RegistryAuth::Anonymous);
    };
    let data = std::fs::read(path).map_err(|source| AuthError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parse = |reason: String| AuthError::Parse {
        path: path.to_path_buf(),
        reason,
    };
    let config: DockerConfig = serde_json::from_slice(&data).map_err(|e| parse(e.to_string()))?;
    let wanted = registry_keys(registry);
    let entry = config.auths.iter().find(|(key, _)| {
        let key = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let host = key.split('/').next().unwrap_or(key);
        wanted.iter().any(|w| w == host)
    });
    let Some((key, entry)) = entry else {
        return Ok(RegistryAuth::Anonymous);
    };
    if let Some(auth) = &entry.auth {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| parse(format!("entry {key}: auth is not base64: {e}")))?;
        let text =
            String::from_utf8(raw).map_err(|_| parse(format!("entry {key}: auth is not UTF-8")))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| parse(format!("entry {key}: auth is not user:password")))?;
        return Ok(RegistryAuth::Basic(user.to_string(), pass.to_string()));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(RegistryAuth::Basic(u.clone(), p.clone())),
        _ => Err(parse(format!(
            "entry {key} has neither auth nor username and password"
        ))),
    }
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
            credentials(Some(&path), "127.0.0.1:5000").unwrap(),
            RegistryAuth::Basic("alice".into(), "s3cret".into())
        );
        assert_eq!(
            credentials(Some(&path), "docker.io").unwrap(),
            RegistryAuth::Basic("bob".into(), "pw".into())
        );
        assert_eq!(
            credentials(Some(&path), "other:1").unwrap(),
            RegistryAuth::Anonymous
        );
        assert_eq!(credentials(None, "x").unwrap(), RegistryAuth::Anonymous);
        std::fs::write(&path, "{").unwrap();
        assert!(
            credentials(Some(&path), "x")
                .unwrap_err()
                .to_string()
                .contains("config.json")
        );
    }
}
