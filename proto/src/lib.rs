//! The berth v1 API, generated from `proto/berth/v1/*.proto`.
//!
//! The generated types are the single model of berth: the controller stores them,
//! agents receive them, the CLI prints them.

pub mod v1 {
    tonic::include_proto!("berth.v1");
}

/// The controller's replicated state machine encoding (internal to controllers).
pub mod store {
    tonic::include_proto!("berth.store");
}

pub mod assignments;
pub mod capabilities;
mod display;
pub mod mounts;
pub mod net;
mod redact;
mod redact_backup;
pub mod service_history;
pub mod signals;
pub mod stacks;
mod task;
pub mod ulimits;
pub mod units;
pub use redact::Redacted;

/// Version and commit of the build, for every binary's `--version`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BERTH_GIT_COMMIT"),
    ")"
);

/// The version and the git commit apart (`berth version`, `berth info`).
pub const PACKAGE_VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_COMMIT: &str = env!("BERTH_GIT_COMMIT");

/// gRPC metadata a controller that does not lead sets on its answers to agents:
/// the leader's address, which the agent follows.
pub const LEADER_METADATA: &str = "berth-leader";

/// The label `berth service create --with-registry-auth` puts on the secret it
/// makes of the CLI's registry credentials; its value is the service's name.
/// The controller removes such a secret with its service (and when an update
/// leaves it unused by the spec and the previous spec).
pub const REGISTRY_AUTH_LABEL: &str = "berth.registry-auth.service";

/// Largest gRPC message any berth endpoint accepts or sends (16 MiB): larger than
/// tonic's 4 MiB default so big listings and snapshot chunks fit, still bounded.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
