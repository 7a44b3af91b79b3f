//! The typed model of the merged, interpolated files: what berth honours,
//! with paths made absolute. `stack config` prints it (serde, sorted maps),
//! `to_stack_spec` converts it. Positions are kept where a later step can
//! still fail (files read at conversion).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::diag::Pos;
use crate::values::format_duration;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Model {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, Service>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, Network>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Volume>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, FileObject>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, FileObject>,
}

/// A duration, printed as Go prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl Dur {
    pub fn ms(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

/// A path that is read when the spec is made, and where it was written.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct FilePath {
    pub path: PathBuf,
    /// An env_file with `required: false` may be missing.
    #[serde(skip)]
    pub required: bool,
    #[serde(skip)]
    pub at: Pos,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Service {
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// A bare `KEY` took its value from the environment (or was left out).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_file: Vec<FilePath>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Keys of top-level networks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<ServiceVolume>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileReference>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<Dur>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    #[serde(skip_serializing_if = "is_false")]
    pub init: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub tty: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub stdin_open: bool,
    pub deploy: Deploy,
}

/// A file mode as Compose writes it, in octal (`"0440"`).
fn octal<S: Serializer>(mode: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match mode {
        Some(m) => s.serialize_str(&format!("0{m:o}")),
        None => s.serialize_none(),
    }
}

/// Milli-CPUs as Compose writes CPUs (`"0.5"`).
fn cpus<S: Serializer>(milli: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match milli {
        Some(m) => s.serialize_str(&(*m as f64 / 1000.0).to_string()),
        None => s.serialize_none(),
    }
}

/// Spread preferences as Compose writes them (`- spread: node.labels.zone`).
fn spreads<S: Serializer>(labels: &[String], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(labels.len()))?;
    for label in labels {
        seq.serialize_element(&BTreeMap::from([("spread", label)]))?;
    }
    seq.end()
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port {
    pub target: u32,
    pub published: u32,
    pub protocol: String,
    pub mode: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServiceVolume {
    /// `source` is the key of a top-level volume.
    Volume {
        source: String,
        target: String,
        read_only: bool,
    },
    /// `source` is an absolute path on the node.
    Bind {
        source: String,
        target: String,
        read_only: bool,
    },
    Tmpfs {
        target: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        #[serde(serialize_with = "octal", skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Healthcheck {
    /// The command to run (CMD-SHELL already as /bin/sh -c); empty with
    /// `disable`, or to keep the image's command with new timings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Dur>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<Dur>,
    #[serde(skip_serializing_if = "is_false")]
    pub disable: bool,
}

/// A service's use of a config or secret; `source` is the top-level key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReference {
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(serialize_with = "octal", skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Deploy {
    pub mode: String,
    pub replicas: u64,
    #[serde(skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    #[serde(skip_serializing_if = "Placement::is_empty")]
    pub placement: Placement,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfig>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub endpoint_mode: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Amounts {
    /// Milli-CPUs.
    #[serde(
        rename = "cpus",
        serialize_with = "cpus",
        skip_serializing_if = "Option::is_none"
    )]
    pub milli_cpus: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Resources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Amounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservations: Option<Amounts>,
}

impl Resources {
    fn is_empty(&self) -> bool {
        self.limits.is_none() && self.reservations.is_none()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Placement {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// `node.labels.x` of each `spread` preference.
    #[serde(serialize_with = "spreads", skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_replicas_per_node: Option<u64>,
}

impl Placement {
    fn is_empty(&self) -> bool {
        self.constraints.is_empty()
            && self.preferences.is_empty()
            && self.max_replicas_per_node.is_none()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestartPolicy {
    /// none, on-failure or any.
    pub condition: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<Dur>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<Dur>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UpdateConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<Dur>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<Dur>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_failure_ratio: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Network {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub external: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Volume {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub external: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A top-level config or secret: exactly one of `file`, `content` (configs
/// only), `environment` or `external` says where its data comes from.
#[derive(Debug, Clone, Serialize)]
pub struct FileObject {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Read when the spec is made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FilePath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The value of this variable in the environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Not the stack's: it must exist.
    #[serde(skip_serializing_if = "is_false")]
    pub external: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Where the object was declared (errors name it).
    #[serde(skip)]
    pub at: Pos,
}
