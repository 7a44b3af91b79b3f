//! Polling for a condition with a deadline, the only kind of waiting tests do.

use std::time::{Duration, Instant};

/// Calls `check` every 20 ms until it returns `Some`, or fails after `timeout`
/// with `what` in the message.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
