//! The Raft member: storage, the node loop, the peer transport.

pub mod config;
pub mod handle;
pub mod logger;
pub mod mailbox;
pub mod node;
pub mod peer_service;
pub mod status;
pub mod storage;
pub mod transport;

pub use config::RaftSettings;
pub use handle::RaftHandle;
pub use mailbox::{Membership, Msg, ProposeError};
pub use node::{Node, NodeError, Transport};
pub use status::{NodeStatus, Role, SharedStatus};
