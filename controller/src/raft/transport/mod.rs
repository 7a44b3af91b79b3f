//! The peer transport: the seam between a member loop and the network. The
//! loop hands it raft messages; the receiving side puts them in the peer's
//! mailbox (`RaftHandle::deliver`). Two implementations: gRPC streams between
//! controller processes (`grpc`) and, for tests, channels between members of a
//! cluster in one process (`memory`).

use std::collections::BTreeMap;

use raft::eraftpb::Message;

pub mod grpc;
#[cfg(test)]
pub mod memory;

pub use grpc::{GrpcTransport, peer_channel, peer_client};

/// Where a member loop sends its raft messages. Delivery is best effort and
/// never blocks the loop: what cannot be delivered is dropped and its peer
/// reported unreachable (`Msg::Unreachable`), every snapshot's outcome is
/// reported (`Msg::Snapshot`) and a leader's word that this member was removed
/// is passed on (`Msg::Removed`), all through the member's own mailbox; raft
/// retransmits the rest.
pub trait Transport: Send + 'static {
    fn send(&self, messages: Vec<Message>);
    /// The address book (member id -> address, this member included) after a
    /// membership change or a snapshot: messages go to these peers only.
    fn set_peers(&self, peers: &BTreeMap<u64, String>);
}
