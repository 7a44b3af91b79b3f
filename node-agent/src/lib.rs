//! berth-agent: the per-host daemon. Session with the controllers, task supervisor,
//! images and network.

pub mod api;
pub mod credentials;
pub mod daemon;
pub mod dataplane;
pub mod host_info;
pub mod image;
pub mod metrics;
pub mod network;
pub mod session;
pub mod supervisor;
pub mod volumes;
