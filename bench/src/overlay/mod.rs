//! The overlay benchmark (`bench-overlay`): TCP throughput and 1-byte round
//! trips between two containers on different test hosts over berth's VXLAN
//! overlay, against the same between the two hosts themselves.

pub mod routed;
pub mod setup;
pub mod traffic;

use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

extern "C" fn on_signal(_: libc::c_int) {
    traffic::STOP.store(true, Ordering::Relaxed);
}

/// SIGINT and SIGTERM make the running measurement stop and the benchmark
/// return an error, so everything it made is dropped on the normal path.
pub fn install_stop_handler() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(signal, &action) }
            .with_context(|| format!("failed to handle {signal}"))?;
    }
    Ok(())
}
