//! bench-scale: 3 real controllers and N simulated agents in this process,
//! which speak the real Dispatcher API but run no containers.

pub mod agent;
pub mod api;
pub mod channels;
pub mod codec;
pub mod fleet;
pub mod run;
pub mod usage;
