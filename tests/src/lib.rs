//! The test-host harness: a cluster of test hosts on one Linux machine, each a
//! network + mount namespace on a shared fabric, running real berth processes.
//!
//! ```no_run
//! use berth_testhost::{Cut, TestNet};
//! let mut net = TestNet::new("example", 3)?;
//! let addr = net.host(1).address();
//! net.host_mut(0).spawn("server", "/bin/sleep", &["60"])?;
//! net.host(2).cut(Cut::Both)?;
//! net.host(2).heal()?;
//! # let _ = addr;
//! # anyhow::Ok(())
//! ```
//!
//! Requires root. Every test cleans up what it made, also when it panics, and
//! removes the leftovers of crashed earlier runs by their prefix.

pub mod binaries;
pub mod cgroups;
pub mod cluster;
pub mod command;
pub mod controllers;
pub mod forked;
pub mod http;
pub mod images;
pub mod leaks;
pub mod linearizability;
pub mod netprobe;
pub mod netruntime;
pub mod ns;
pub mod private_registry;
pub mod process;
pub mod testnet;
pub mod traffic;
pub mod wait;

pub use binaries::bin_path;
pub use process::{Proc, ProcSpec};
pub use testnet::{Cut, Host, TestNet};
pub use wait::wait_until;
