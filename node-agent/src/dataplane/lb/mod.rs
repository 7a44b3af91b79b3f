//! The service load balancer: one nftables table, `ip berth`, owned by berth and
//! nothing else (this kernel has no IPVS).
//!
//! - **VIPs**: a connection from a container of network `vni` (arriving on its
//!   bridge `bb-<vni>`, the containers' default gateway) to a service VIP, any
//!   port, is DNATed in the host's nat prerouting to one of the service's tasks,
//!   chosen by `numgen random`; conntrack keeps it there. Backends on other hosts
//!   are reached over the VXLAN, and their replies come back through the overlay
//!   route to the client's host, where conntrack undoes the DNAT. A VIP without
//!   backends is rejected (TCP reset, ICMP port unreachable) in the forward hook.
//! - **Hairpin**: when the chosen backend sits on the client's own bridge, the
//!   reply would go straight back over L2 and bypass conntrack, so that case
//!   (from a container, DNATed, out through a bridge) is masqueraded to the
//!   gateway. With br_netfilter on (this kernel's default), a container reaching
//!   itself through its VIP also needs hairpin mode on its bridge port: the
//!   bridge then sends the DNATed frame back out of the port it came in on.
//! - **Published ports**: a connection to any local address of the host on a
//!   published port (prerouting for clients elsewhere, output for the host
//!   itself) is DNATed to a backend's target port and marked in conntrack; when it
//!   leaves through a VXLAN device it is SNATed to this host's gateway address in
//!   that network (see [`gateways`]), so that the backend's host replies over the
//!   overlay to this host, which undoes both NATs. Local backends see the
//!   client's address. Ingress (routing mesh) versus host mode is only which backends the
//!   caller lists.
//! - **Isolation**: packets forwarded from one network's devices (`bb-A`/`bv-A`)
//!   to another's are dropped, and so are new connections routed into a network
//!   from outside berth's devices unless they were DNATed by a published port.
//!   Traffic that enters and leaves outside berth's devices is never looked at.
//!
//! [`apply`] renders the plan (see [`ruleset`]), reads the table back and, when
//! it differs, replaces the whole table in one nft transaction (delete and
//! re-add: the kernel commits it atomically, so there is no moment without
//! rules). Existing connections keep their NAT bindings (they live in conntrack,
//! not in the rules).

mod builder;
mod expr;
mod flows;
mod gateways;
mod nft;
mod normalise;
pub mod ruleset;

pub use flows::removed_backends;

use std::net::Ipv4Addr;

use super::error::NetworkError;

/// Everything the load balancer of this host should do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LbPlan {
    /// VNIs of the overlay networks on this host (devices bb-<vni>, bv-<vni>, see
    /// network::names). Must list every overlay network of the host: isolation
    /// is built per listed network.
    pub networks: Vec<u32>,
    /// One per (service, network): the VIP and the running tasks' addresses in
    /// that network.
    pub vips: Vec<VipRule>,
    pub published: Vec<PublishedRule>,
}

/// A service's virtual IP in one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipRule {
    /// Service name (errors and logs only).
    pub service: String,
    pub vni: u32,
    pub vip: Ipv4Addr,
    /// The running tasks' addresses in network `vni`; empty: connections are
    /// refused at once.
    pub backends: Vec<Ipv4Addr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The name nft uses for the protocol's header.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A published port of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedRule {
    /// Service name (errors and logs only).
    pub service: String,
    pub protocol: Protocol,
    pub published_port: u16,
    pub target_port: u16,
    /// Ingress (routing mesh): every running task of the service; host mode: only
    /// this host's tasks (the caller decides; a host-mode rule is only present on
    /// hosts that run a task).
    pub backends: Vec<Ipv4Addr>,
}

/// Makes the kernel's `ip berth` table (berth owns exactly this table, nothing
/// else) match `plan` in ONE nft transaction (table flushed and refilled
/// atomically: no moment without rules); returns false without writing when the
/// kernel already has exactly it (compared against a read-back).
pub async fn apply(plan: &LbPlan) -> Result<bool, NetworkError> {
    let gateways = gateways::local_gateways(&plan.networks).await?;
    let wanted = ruleset::render(plan, &gateways)?;
    blocking(move || {
        if nft::read_table()? == Some(ruleset::comparable(&wanted)?) {
            return Ok(false);
        }
        nft::replace_table(&wanted)?;
        Ok(true)
    })
    .await
}

/// Deletes the UDP flows conntrack still steers to `backends` (ones that left
/// the plan), so their clients are balanced afresh.
pub async fn forget_udp_flows(backends: Vec<Ipv4Addr>) -> Result<(), NetworkError> {
    blocking(move || backends.into_iter().try_for_each(flows::forget_udp_flows)).await
}

/// Deletes the `ip berth` table if present (nothing of ours left).
pub async fn remove() -> Result<(), NetworkError> {
    blocking(nft::delete_table).await
}

/// Runs `nft` work on a blocking thread: it spawns and waits for a process. The
/// thread is one of the runtime's, so it is in the same network namespace as
/// the caller's runtime (tests rely on this).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NetworkError> + Send + 'static,
) -> Result<T, NetworkError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NetworkError::Kernel(format!("nft worker thread failed: {e}")))?
}
