//! Benchmarks that measure berth against a peer in the same run and print
//! ratios. Not part of CI: run them by hand (see each binary's --help).

pub mod controller;
pub mod metrics_cost;
pub mod overlay;
pub mod procs;
pub mod scale;
pub mod stats;
pub mod steps;
