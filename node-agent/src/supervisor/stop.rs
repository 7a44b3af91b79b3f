//! Stopping a container: SIGTERM (or the image's stop signal), the grace
//! period, SIGKILL.

use std::time::Duration;

use tracing::{info, warn};

use super::runtime::Runtime;
use super::watch::wait_exit;

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
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Stops the container `id` whose init is `pid` (started at `start`) with
/// `signal` (a name such as SIGTERM or SIGQUIT), then SIGKILL after `grace`.
pub async fn stop(
    runtime: &Runtime,
    id: &str,
    pid: i32,
    start: Option<u64>,
    signal: &str,
    grace: Duration,
) -> Stopped {
    if let Err(e) = runtime.kill(id, signal).await {
        warn!(container = id, signal, error = %e, "stop signal failed");
    }
    if tokio::time::timeout(grace, wait_exit(pid, start))
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
    if let Err(e) = runtime.kill(id, "SIGKILL").await {
        warn!(container = id, error = %e, "SIGKILL through the runtime failed");
        // SAFETY: kill with plain integers; the pid is pinned by the start-time check.
        if super::watch::alive(pid, start) {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    if tokio::time::timeout(KILL_WAIT, wait_exit(pid, start))
        .await
        .is_ok()
    {
        Stopped::Killed
    } else {
        Stopped::Stuck
    }
}
