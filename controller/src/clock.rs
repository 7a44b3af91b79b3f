//! Time, as the controller's leader loops see it: one seam, so the dispatcher's
//! liveness and the orchestrator's delays are testable without waiting.
//!
//! Two readings: wall-clock milliseconds (stored in objects: timestamps, restart
//! and update delays measured across leaders) and a monotonic instant (heartbeat
//! ages, which must not jump with the wall clock).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// A monotonic instant.
    fn instant(&self) -> Instant;
}

/// The machine's clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// Milliseconds since the Unix epoch by the machine's clock (0 before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A clock that moves only when a test says so.
#[derive(Clone, Debug)]
pub struct ManualClock {
    inner: Arc<Mutex<(i64, Instant)>>,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        ManualClock {
            inner: Arc::new(Mutex::new((now_ms, Instant::now()))),
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0 += by.as_millis() as i64;
        inner.1 += by;
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    fn instant(&self) -> Instant {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

/// The clock shared by a controller's loops.
pub type SharedClock = Arc<dyn Clock>;

pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}
