//! Health checks of running tasks (Docker's HEALTHCHECK, swarm's semantics):
//! the agent probes each running container whose service (or image) has a
//! check, every `interval`, and turns its health from starting to healthy
//! (a probe passed) or unhealthy (`retries` probes failed in a row after the
//! start period). The worker reports each change with the running status and
//! stops an unhealthy task, reported FAILED, for the orchestrator to replace.
//!
//! ```text
//! config.rs   what to check and how often (service spec > image > defaults)
//! machine.rs  the state machine, pure
//! probe.rs    the HealthProbe seam and the real probes (exec, http, tcp)
//! monitor.rs  the loop: wait, probe with a timeout, feed the machine
//! ```

mod config;
mod machine;
mod monitor;
mod probe;

pub use config::{HealthConfig, resolve};
// Named by probes (the fake one of the tests; the real one takes it by path).
#[cfg(test)]
pub use config::Probe;
pub use monitor::{Change, monitor};
pub use probe::{ContainerProbe, HealthProbe, ProbeTarget};
