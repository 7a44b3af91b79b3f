//! berth-controller: a Raft member that keeps the cluster's desired state and, on
//! the leader, runs the orchestrator, scheduler and dispatcher.

pub mod agents;
pub mod allocator;
pub mod api;
pub mod ca;
pub mod clock;
pub mod cluster_settings;
pub mod datadir;
pub mod digest;
pub mod dispatcher;
pub mod events;
pub mod exec;
pub mod ids;
pub mod keyring;
pub mod metrics;
pub mod naming;
pub mod one_off;
pub mod orchestrator;
pub mod planner;
pub mod raft;
pub mod recovery;
pub mod scheduler;
pub mod server;
pub mod stacks;
pub mod startup;
pub mod store;
pub mod system_info;
pub mod unlock;
pub mod volumes;
