//! The per-host overlay data plane, flannel-style L3 over VXLAN.
//!
//! Per network (VNI) this host has a bridge `bb-<vni>` carrying the gateway
//! address of each local block, a veth per container into the container's network
//! namespace, and a VXLAN device `bv-<vni>` (UDP 4789, learning off, unicast only,
//! MTU = underlay MTU − 50) with, per remote node: one route per remote block
//! (`<block> via <block gateway> dev bv-<vni> onlink proto 213`), one permanent
//! neighbour entry per remote gateway (`gateway → VTEP MAC`) and one permanent FDB
//! entry (`VTEP MAC → remote underlay IP`). VTEP MACs are derived from (underlay
//! IP, VNI) (see [`mac`]), so nodes exchange nothing but the controller's lists.
//!
//! [`Overlay::reconcile`] computes all of that from a [`LocalPlan`], diffs it
//! against a kernel dump and applies the difference with replace semantics,
//! touching only what berth owns (see [`names`]). The agent's network service
//! (`crate::network`, its one resync loop) runs it on every change of the plan
//! and periodically; a restarted agent's first reconcile re-creates what is
//! missing and removes what is stale.

mod attach;
pub mod dns;
mod error;
#[cfg(test)]
mod fake;
pub mod forward;
pub mod lb;
pub mod mac;
pub mod names;
pub mod netlink;
pub mod plan;
mod reconcile;

pub use attach::{AttachRequest, create_netns, remove_netns};
pub use error::NetworkError;
pub use netlink::{Netlink, RtNetlink};
pub use plan::{LocalPlan, NetworkPlan, RemoteNode};

/// What one reconcile changed, one line per kernel write (empty: all in place).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub changes: Vec<String>,
}

impl ReconcileReport {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The overlay of this host, programmed through `N` (the real [`RtNetlink`] in
/// the agent). Holds no state of its own: everything is read back from the
/// kernel, so dropping it and making a new one (an agent restart) loses nothing.
pub struct Overlay<N: Netlink> {
    nl: N,
}

impl<N: Netlink> Overlay<N> {
    pub fn new(nl: N) -> Overlay<N> {
        Overlay { nl }
    }

    pub fn netlink(&self) -> &N {
        &self.nl
    }

    /// Makes the kernel match `plan` (see the module docs).
    pub async fn reconcile(&self, plan: &LocalPlan) -> Result<ReconcileReport, NetworkError> {
        let changes = reconcile::reconcile(&self.nl, plan).await?;
        Ok(ReconcileReport { changes })
    }
}
