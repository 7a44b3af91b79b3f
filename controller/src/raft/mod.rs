//! The Raft member: storage, the member loop, the peer transport.

pub mod config;
pub mod handle;
pub mod logger;
pub mod mailbox;
pub mod member;
pub mod peer_service;
pub mod spawn;
pub mod status;
pub mod storage;
pub mod transport;

#[cfg(test)]
mod tests;

pub use config::RaftSettings;
pub use handle::RaftHandle;
pub use mailbox::{Membership, Msg, ProposeError};
pub use member::{MemberError, RaftMember};
pub use spawn::{Stopped, spawn_member};
pub use status::{RaftStatus, Role, SharedStatus};
pub use transport::Transport;
