//! The load balancer's effects on the kernel behind one trait, as [`Netlink`]
//! is for the overlay: the one nft table berth owns, and the conntrack flows it
//! forgets. [`SystemFirewall`] is the real thing (the host's `nft` and
//! `conntrack` binaries); the balancing logic is unit-tested against a fake.
//!
//! [`Netlink`]: crate::dataplane::Netlink

use std::net::Ipv4Addr;

use nftables::schema::NfListObject;
use serde_json::Value;

use super::{flows, nft};
use crate::dataplane::error::NetworkError;

/// nft and conntrack as the load balancer uses them. Calls block (the real one
/// runs a process each); the load balancer makes them on a blocking thread.
pub trait Firewall: Send + Sync + 'static {
    /// The `ip berth` table as `nft -j list` prints it (each object without its
    /// handle, no metainfo), or `None` when there is no such table.
    fn read_table(&self) -> Result<Option<Vec<Value>>, NetworkError>;
    /// Replaces the table with `objects` (the table, its chains and rules) in
    /// one transaction: packets see either the old rules or the new ones.
    fn replace_table(&self, objects: &[NfListObject<'static>]) -> Result<(), NetworkError>;
    /// Deletes the table if it is there.
    fn delete_table(&self) -> Result<(), NetworkError>;
    /// Deletes the UDP conntrack entries whose replies come from `backend`.
    fn forget_udp_flows(&self, backend: Ipv4Addr) -> Result<(), NetworkError>;
}

/// The host's `nft` (JSON in and out) and `conntrack` binaries, in the network
/// namespace of the calling thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemFirewall;

impl Firewall for SystemFirewall {
    fn read_table(&self) -> Result<Option<Vec<Value>>, NetworkError> {
        nft::read_table()
    }

    fn replace_table(&self, objects: &[NfListObject<'static>]) -> Result<(), NetworkError> {
        nft::replace_table(objects)
    }

    fn delete_table(&self) -> Result<(), NetworkError> {
        nft::delete_table()
    }

    fn forget_udp_flows(&self, backend: Ipv4Addr) -> Result<(), NetworkError> {
        flows::delete_udp_flows(backend)
    }
}
