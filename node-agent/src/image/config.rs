//! The image config: what whoever builds the runtime bundle needs from an image.
//! Parsed leniently (Docker writes `null` for empty lists), for both the OCI and
//! the Docker config media types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::error::{ImageError, Result};

/// The runtime-relevant part of an image config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub architecture: String,
    pub os: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE` strings, in image order.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// `80/tcp`, `53/udp`, sorted.
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    /// Mount points the image declares (`Volumes`), sorted.
    pub volumes: Vec<String>,
    /// Docker's `Healthcheck`, if the image has one.
    pub healthcheck: Option<Healthcheck>,
    /// DiffIDs of the layers, bottom first.
    pub diff_ids: Vec<Digest>,
}

/// A health check as Docker images carry it (durations in nanoseconds, 0 = default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    #[serde(default)]
    pub test: Vec<String>,
    #[serde(default)]
    pub interval: u64,
    #[serde(default)]
    pub timeout: u64,
    #[serde(default)]
    pub start_period: u64,
    #[serde(default)]
    pub retries: u32,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    config: Option<RawRuntime>,
    rootfs: Option<RawRootfs>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawRuntime {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    labels: Option<BTreeMap<String, String>>,
    stop_signal: Option<String>,
    volumes: Option<BTreeMap<String, serde_json::Value>>,
    healthcheck: Option<Healthcheck>,
}

#[derive(Deserialize)]
struct RawRootfs {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    diff_ids: Vec<String>,
}

impl ImageConfig {
    /// Parses a config blob; `what` names it in errors.
    pub fn parse(data: &[u8], what: &str) -> Result<ImageConfig> {
        let bad = |reason: String| ImageError::BadManifest {
            what: what.to_string(),
            reason,
        };
        let raw: RawConfig =
            serde_json::from_slice(data).map_err(|e| bad(format!("image config: {e}")))?;
        let rootfs = raw
            .rootfs
            .ok_or_else(|| bad("image config has no rootfs".into()))?;
        if rootfs.kind != "layers" {
            return Err(bad(format!(
                "rootfs type {:?}, not \"layers\"",
                rootfs.kind
            )));
        }
        let diff_ids = rootfs
            .diff_ids
            .iter()
            .map(|d| Digest::parse(d))
            .collect::<Result<Vec<_>, _>>()?;
        let rt = raw.config.unwrap_or(RawRuntime {
            entrypoint: None,
            cmd: None,
            env: None,
            working_dir: None,
            user: None,
            exposed_ports: None,
            labels: None,
            stop_signal: None,
            volumes: None,
            healthcheck: None,
        });
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        Ok(ImageConfig {
            architecture: raw.architecture,
            os: raw.os,
            entrypoint: rt.entrypoint.unwrap_or_default(),
            cmd: rt.cmd.unwrap_or_default(),
            env: rt.env.unwrap_or_default(),
            working_dir: non_empty(rt.working_dir),
            user: non_empty(rt.user),
            exposed_ports: rt.exposed_ports.unwrap_or_default().into_keys().collect(),
            labels: rt.labels.unwrap_or_default(),
            stop_signal: non_empty(rt.stop_signal),
            volumes: rt.volumes.unwrap_or_default().into_keys().collect(),
            healthcheck: rt.healthcheck,
            diff_ids,
        })
    }

    /// The process to run: entrypoint followed by cmd.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_and_oci_configs_parse_with_nulls() {
        let d = Digest::of(b"l");
        let json = format!(
            r#"{{"architecture":"amd64","os":"linux",
            "config":{{"Entrypoint":null,"Cmd":["sh"],"Env":["PATH=/bin"],"WorkingDir":"",
                       "User":"1000:1000","ExposedPorts":{{"80/tcp":{{}},"53/udp":{{}}}},
                       "Volumes":{{"/data":{{}}}},
                       "Healthcheck":{{"Test":["CMD-SHELL","true"],"Interval":5000000000,"Retries":3}}}},
            "rootfs":{{"type":"layers","diff_ids":["{d}"]}}}}"#
        );
        let c = ImageConfig::parse(json.as_bytes(), "test").unwrap();
        assert_eq!(c.argv(), vec!["sh"]);
        assert_eq!(c.env, vec!["PATH=/bin"]);
        assert_eq!(c.working_dir, None);
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.exposed_ports, vec!["53/udp", "80/tcp"]);
        assert_eq!(c.diff_ids, vec![d]);
        assert_eq!(c.volumes, vec!["/data"]);
        let hc = c.healthcheck.unwrap();
        assert_eq!(
            (hc.test.len(), hc.interval, hc.retries),
            (2, 5_000_000_000, 3)
        );
        let err = ImageConfig::parse(br#"{"architecture":"amd64"}"#, "cfg of x").unwrap_err();
        assert!(err.to_string().contains("cfg of x"), "{err}");
    }
}
