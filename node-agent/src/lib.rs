//! berth-agent: the per-host daemon. Session with the controllers, task supervisor,
//! images and network.

pub mod image;
pub mod supervisor;
