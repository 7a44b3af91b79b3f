//! `service create --with-registry-auth`: the CLI's own credentials for the
//! image's registry, where `docker login` keeps them (`config.json` in
//! `$DOCKER_CONFIG`, else in `~/.docker`, or the credential helper it names),
//! made into a secret that the service pulls its image with. The controller
//! sends that secret only to the nodes that run the service's tasks.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use berth_agent::image::{BasicCredentials, Digest, DockerConfig, registry_of};
use berth_proto::REGISTRY_AUTH_LABEL;
use berth_proto::v1::{CreateSecretRequest, RemoveSecretRequest, SecretReference};
use serde::Deserialize;

use crate::client::{Client, explain};

/// Docker's key for Docker Hub in configs and credential helpers.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";
/// Longest object name the controller takes.
const MAX_NAME: usize = 63;

/// The directory of Docker's client config: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn docker_config_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".docker")
}

/// The credentials `docker pull IMAGE` would use, from `config_dir`.
pub fn credentials_for(image: &str, config_dir: &Path) -> Result<BasicCredentials> {
    credentials_with(image, config_dir, None)
}

/// `credentials_for`, credential helpers looked up in `helper_path` (a
/// `PATH`) if given.
fn credentials_with(
    image: &str,
    config_dir: &Path,
    helper_path: Option<&OsStr>,
) -> Result<BasicCredentials> {
    let registry = registry_of(image).with_context(|| format!("image {image:?}"))?;
    let file = config_dir.join("config.json");
    let login = if registry == "docker.io" {
        "docker login".to_string()
    } else {
        format!("docker login {registry}")
    };
    if !file.exists() {
        bail!(
            "--with-registry-auth: no credentials for registry {registry}: {} does not exist \
             (log in with `{login}`, or set DOCKER_CONFIG)",
            file.display()
        );
    }
    let found = stored(&file, &registry, helper_path)?;
    found.with_context(|| {
        format!(
            "--with-registry-auth: no credentials for registry {registry} in {} \
             (log in with `{login}`)",
            file.display()
        )
    })
}

/// The credentials for `registry` that `config.json` (`file`) holds or names
/// a helper for, if any.
fn stored(
    file: &Path,
    registry: &str,
    helper_path: Option<&OsStr>,
) -> Result<Option<BasicCredentials>> {
    let config = DockerConfig::read(file)?;
    match config.helper_for(registry) {
        Some(helper) => from_helper(helper, registry, helper_path),
        None => Ok(config.basic_for(registry)?),
    }
}

/// The credentials `docker pull IMAGE` would use, if the user has any for
/// its registry (`berth pull`: none means anonymous, as for Docker).
pub fn credentials_if_any(image: &str, config_dir: &Path) -> Result<Option<BasicCredentials>> {
    let registry = registry_of(image).with_context(|| format!("image {image:?}"))?;
    let file = config_dir.join("config.json");
    if !file.exists() {
        return Ok(None);
    }
    stored(&file, &registry, None)
}

/// What `docker-credential-<helper> get` prints.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Asks Docker's credential helper `docker-credential-<helper>` for
/// `registry`'s credentials, as Docker does (`get`, the server on stdin).
fn from_helper(
    helper: &str,
    registry: &str,
    helper_path: Option<&OsStr>,
) -> Result<Option<BasicCredentials>> {
    let program = format!("docker-credential-{helper}");
    let server = if registry == "docker.io" {
        DOCKER_HUB_SERVER
    } else {
        registry
    };
    let mut command = Command::new(&program);
    if let Some(path) = helper_path {
        command.env("PATH", path);
    }
    let mut child = command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!("the docker config names the credential helper {helper}: cannot run {program}")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .with_context(|| format!("writing to {program}"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for {program}"))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout);
        if said.contains("credentials not found") {
            return Ok(None);
        }
        bail!(
            "{program} get {server} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // The answer holds the password: never quoted in an error.
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow::anyhow!("{program} get {server}: its answer is not JSON: {e}"))?;
    if answer.username == "<token>" {
        bail!(
            "{program} holds an identity token (OAuth) for {registry}, which berth cannot use: \
             log in with a password or an access token"
        );
    }
    Ok(Some(BasicCredentials {
        registry: registry.to_string(),
        username: answer.username,
        password: answer.secret,
    }))
}

/// A fresh name for the registry-auth secret of `service`:
/// `registry-auth-<service>-<8 hex>`, at most 63 characters.
fn secret_name(service: &str) -> String {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let digest = Digest::of(format!("{service} {nonce} {}", std::process::id()).as_bytes());
    let suffix = &digest.hex()[..8];
    let room = MAX_NAME - "registry-auth-".len() - 1 - suffix.len();
    let service: String = service.chars().take(room).collect();
    format!("registry-auth-{service}-{suffix}")
}

/// Stores `credentials` as the registry-auth secret of `service`; returns
/// the reference for its spec.
pub async fn create_secret(
    client: &mut Client,
    service: &str,
    credentials: &BasicCredentials,
) -> Result<SecretReference> {
    let name = secret_name(service);
    client
        .create_secret(CreateSecretRequest {
            name: name.clone(),
            data: credentials.to_config_json(),
            labels: [(REGISTRY_AUTH_LABEL.to_string(), service.to_string())].into(),
        })
        .await
        .map_err(explain)
        .with_context(|| format!("storing the registry credentials of service {service}"))?;
    Ok(SecretReference {
        secret_name: name,
        ..SecretReference::default()
    })
}

/// Removes the secret `create_secret` made when the service could not be
/// created; a failure is only reported (the service's error matters more).
pub async fn remove_secret(client: &mut Client, reference: &SecretReference) {
    let removed = client
        .remove_secret(RemoveSecretRequest {
            secret: reference.secret_name.clone(),
        })
        .await;
    if let Err(status) = removed {
        eprintln!(
            "berth: the registry credentials secret {} is left over ({}): remove it with `berth secret rm`",
            reference.secret_name,
            status.message()
        );
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn credentials_come_from_the_config_for_the_images_registry_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = credentials_for("10.1.2.3:5000/app:1", dir.path())
            .expect_err("no file")
            .to_string();
        assert!(err.contains("registry 10.1.2.3:5000"), "{err}");
        assert!(err.contains("config.json does not exist"), "{err}");

        // alice:s3cret, as `docker login` writes it.
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"10.1.2.3:5000":{"auth":"YWxpY2U6czNjcmV0"},
               "https://index.docker.io/v1/":{"username":"bob","password":"pw"}}}"#,
        )
        .expect("write");
        let found = credentials_for("10.1.2.3:5000/team/app:1", dir.path()).expect("found");
        assert_eq!(
            (
                found.registry.as_str(),
                found.username.as_str(),
                found.password.as_str()
            ),
            ("10.1.2.3:5000", "alice", "s3cret")
        );
        let hub = credentials_for("busybox", dir.path()).expect("docker hub");
        assert_eq!(
            (hub.registry.as_str(), hub.username.as_str()),
            ("docker.io", "bob")
        );
        let err = credentials_for("10.1.2.3:5001/app:1", dir.path())
            .expect_err("another registry")
            .to_string();
        assert!(
            err.contains("no credentials for registry 10.1.2.3:5001 in")
                && err.contains("docker login 10.1.2.3:5001"),
            "{err}"
        );
    }

    #[test]
    fn a_credential_helper_is_asked_as_docker_asks_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin");
        // Answers for 10.1.2.3:5000 only, like a real helper.
        let helper = bin.join("docker-credential-berthtest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\n[ \"$1\" = get ] || exit 2\n\
             if [ \"$server\" = 10.1.2.3:5000 ]; then\n\
             echo '{\"ServerURL\":\"10.1.2.3:5000\",\"Username\":\"carol\",\"Secret\":\"pw2\"}'\n\
             else echo 'credentials not found in native keychain'; exit 1; fi\n",
        )
        .expect("helper");
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"10.1.2.3:5000":{}},"credHelpers":{"10.1.2.3:5000":"berthtest","10.1.2.3:5001":"berthtest"},
               "credsStore":"absent-helper"}"#,
        )
        .expect("write");
        // Helpers are found on PATH, as Docker finds them.
        let path = format!("{}:/usr/bin:/bin", bin.display());
        let path = Some(OsStr::new(&path));
        let found = credentials_with("10.1.2.3:5000/app:1", dir.path(), path).expect("from helper");
        assert_eq!(
            (found.username.as_str(), found.password.as_str()),
            ("carol", "pw2")
        );
        let err = credentials_with("10.1.2.3:5001/app:1", dir.path(), path)
            .expect_err("the helper has none")
            .to_string();
        assert!(
            err.contains("no credentials for registry 10.1.2.3:5001"),
            "{err}"
        );
        let err = credentials_with("10.9.9.9:5000/app:1", dir.path(), path)
            .expect_err("credsStore's helper is missing")
            .to_string();
        assert!(
            err.contains("cannot run docker-credential-absent-helper"),
            "{err}"
        );
    }

    #[test]
    fn secret_names_are_valid_and_fresh() {
        let long = "s".repeat(63);
        for service in ["web", long.as_str()] {
            let a = secret_name(service);
            assert!(a.len() <= MAX_NAME, "{a}");
            assert!(a.starts_with("registry-auth-s") || a.starts_with("registry-auth-web-"));
            std::thread::sleep(std::time::Duration::from_millis(1));
            assert_ne!(a, secret_name(service));
        }
    }
}
