//! Stopping a container: SIGTERM (or the image's stop signal), the grace
//! period, SIGKILL.

use std::time::Duration;

use tracing::{info, warn};

use super::container_runtime::{ContainerRuntime, Init};

/// How a stop went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It ended within the grace period after the stop signal.
    OnTerm,
    /// It was SIGKILLed after the grace period.
    Killed,
    /// It still ran after SIGKILL (a D-state process, say); `delete --force` follows.
    Stuck,
}

/// How long a killed container may take to go.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(10);

/// Stops the container `id` whose init is `init` with `signal` (a name such
/// as SIGTERM or SIGQUIT), then SIGKILL after `grace`.
pub async fn stop(
    runtime: &dyn ContainerRuntime,
    id: &str,
    init: Init,
    signal: &str,
    grace: Duration,
) -> Stopped {
    if let Err(e) = runtime.kill(id, init, signal).await {
        warn!(container = id, signal, error = %e, "stop signal failed");
    }
    if tokio::time::timeout(grace, runtime.wait_exit(init))
        .await
        .is_ok()
    {
        info!(container = id, signal, "stopped on its stop signal");
        return Stopped::OnTerm;
    }
    info!(
        container = id,
        ?grace,
        "still running after the grace period: SIGKILL"
    );
    if let Err(e) = runtime.kill(id, init, "SIGKILL").await {
        warn!(container = id, error = %e, "SIGKILL failed");
    }
    if tokio::time::timeout(KILL_WAIT, runtime.wait_exit(init))
        .await
        .is_ok()
    {
        Stopped::Killed
    } else {
        Stopped::Stuck
    }
}
