//! berth-runtime, the library: an OCI runtime (namespaces, cgroups v1 and v2,
//! rootfs, capabilities, seccomp) driven by typed calls, as youki's
//! libcontainer is. The `berth-runtime` binary puts runc's command line on top
//! of [`commands`] and [`container::create`].
//!
//! Creating, exec'ing and running containers forks: those calls belong in a
//! single-threaded process (the binary). The small helpers a supervisor needs
//! to watch containers from a multi-threaded process are safe anywhere:
//! [`proc`] (pid start times, liveness, pidfds), [`signal`] (signal names),
//! [`id`] (container ids), [`cgroups::oom_kills_at`] and
//! [`cgroups::prepare_parent`], [`state::Exit`] (how init ended, as
//! `state` reports it), [`seccomp::compile`] (a profile to BPF, for
//! checking one before a container is made), and [`console::recv_master`] and
//! [`console::resize`] (a terminal's master from a console socket, as
//! berth-runtime and runc send it).

mod caps;
pub mod cgroups;
pub mod commands;
pub mod console;
pub mod container;
mod hooks;
pub mod id;
mod init;
mod init_image;
mod namespaces;
pub mod proc;
mod process;
mod rootfs;
pub mod seccomp;
pub mod signal;
mod spec;
pub mod state;
mod sync;
mod userns;
