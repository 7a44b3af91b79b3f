//! The Raft member: storage, the node loop, the peer transport.

pub mod config;
pub mod logger;
pub mod mailbox;
pub mod node;
pub mod status;
pub mod storage;

pub use config::RaftSettings;
pub use mailbox::{Membership, Msg, ProposeError};
pub use node::{Node, NodeError, Transport};
pub use status::{NodeStatus, Role, SharedStatus};
