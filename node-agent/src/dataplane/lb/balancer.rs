//! The load balancer of this host: renders an [`LbPlan`] into the `ip berth`
//! table and applies it through a [`Firewall`], remembering the plan applied
//! last so that an unchanged plan costs nothing and backends that leave it have
//! their UDP flows forgotten (see [`flows`](super::flows)).

use std::net::Ipv4Addr;
use std::sync::Arc;

use tokio::sync::Mutex;
use tracing::info;

use super::firewall::{Firewall, SystemFirewall};
use super::{LbPlan, gateways, removed_backends, ruleset};
use crate::dataplane::error::NetworkError;
use crate::dataplane::netlink::{Netlink, RtNetlink};

/// `F` makes the nft and conntrack changes, `N` tells this host's gateway
/// address in each network (published ports SNAT to it).
pub struct LoadBalancer<F: Firewall, N: Netlink> {
    firewall: Arc<F>,
    netlink: N,
    /// The plan last balanced (`None`: not yet this run).
    balanced: Mutex<Option<LbPlan>>,
}

impl LoadBalancer<SystemFirewall, RtNetlink> {
    /// The host's: `nft` and `conntrack`, netlink in the calling thread's
    /// network namespace (call inside a tokio runtime).
    pub fn system() -> Result<Self, NetworkError> {
        Ok(LoadBalancer::new(SystemFirewall, RtNetlink::new()?))
    }
}

impl<F: Firewall, N: Netlink> LoadBalancer<F, N> {
    pub fn new(firewall: F, netlink: N) -> Self {
        LoadBalancer {
            firewall: Arc::new(firewall),
            netlink,
            balanced: Mutex::new(None),
        }
    }

    pub fn firewall(&self) -> &F {
        &self.firewall
    }

    /// Brings the kernel in line with `plan` (no table at all when it has
    /// nothing) and forgets the UDP flows of backends that left the plan since
    /// the last call. Skipped when `plan` is the one balanced last, unless
    /// `force` (then the kernel is read back and repaired): checking the kernel
    /// runs `nft`. Returns whether the table was written.
    pub async fn balance(&self, plan: &LbPlan, force: bool) -> Result<bool, NetworkError> {
        self.balance_with(plan, force, || {}).await
    }

    /// `balance`, calling `in_place` as soon as the table holds `plan`: new
    /// connections follow it from then on, while forgetting the departed
    /// backends' UDP flows (a `conntrack` run that dumps the whole table, slow
    /// on a busy host) is still to come.
    pub async fn balance_with(
        &self,
        plan: &LbPlan,
        force: bool,
        in_place: impl FnOnce(),
    ) -> Result<bool, NetworkError> {
        let mut balanced = self.balanced.lock().await;
        if !force && balanced.as_ref() == Some(plan) {
            in_place();
            return Ok(false);
        }
        let written = if *plan == LbPlan::default() {
            self.remove().await?;
            false
        } else {
            self.apply(plan).await?
        };
        in_place();
        if written {
            info!(
                vips = plan.vips.len(),
                published = plan.published.len(),
                "load balancer updated"
            );
        }
        // Remembered only once the flows are gone: a failure is retried with
        // the same departed backends at the next call.
        let gone = removed_backends(balanced.as_ref().unwrap_or(&LbPlan::default()), plan);
        self.forget_udp_flows(gone).await?;
        *balanced = Some(plan.clone());
        Ok(written)
    }

    /// Makes the `ip berth` table (berth owns exactly this table, nothing
    /// else) match `plan` in ONE transaction; returns false without writing
    /// when the kernel already has exactly it (compared against a read-back).
    pub async fn apply(&self, plan: &LbPlan) -> Result<bool, NetworkError> {
        self.replace_unless_in_place(plan)
            .await
            .map_err(NetworkError::load_balancer(format!(
                "applying {} VIPs and {} published ports in {} networks",
                plan.vips.len(),
                plan.published.len(),
                plan.networks.len()
            )))
    }

    async fn replace_unless_in_place(&self, plan: &LbPlan) -> Result<bool, NetworkError> {
        let gateways = gateways::local_gateways(&self.netlink, &plan.networks).await?;
        let wanted = ruleset::render(plan, &gateways)?;
        self.blocking(move |firewall| {
            if firewall.read_table()? == Some(ruleset::comparable(&wanted)?) {
                return Ok(false);
            }
            firewall.replace_table(&wanted)?;
            Ok(true)
        })
        .await
    }

    /// Deletes the `ip berth` table if present (nothing of ours left).
    pub async fn remove(&self) -> Result<(), NetworkError> {
        self.blocking(|firewall| firewall.delete_table())
            .await
            .map_err(NetworkError::load_balancer("removing the table"))
    }

    /// Deletes the UDP flows conntrack still steers to `backends` (ones that
    /// left the plan), so their clients are balanced afresh.
    pub async fn forget_udp_flows(&self, backends: Vec<Ipv4Addr>) -> Result<(), NetworkError> {
        for backend in backends {
            self.blocking(move |firewall| firewall.forget_udp_flows(backend))
                .await
                .map_err(NetworkError::load_balancer(format!(
                    "forgetting the UDP flows of backend {backend}"
                )))?;
        }
        Ok(())
    }

    /// Runs firewall work on a blocking thread: the real one spawns and waits
    /// for a process. The thread is one of the runtime's, so it is in the same
    /// network namespace as the caller's runtime (tests rely on this).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&F) -> Result<T, NetworkError> + Send + 'static,
    ) -> Result<T, NetworkError> {
        let firewall = self.firewall.clone();
        tokio::task::spawn_blocking(move || f(&firewall))
            .await
            .map_err(|e| NetworkError::Kernel(format!("firewall worker thread failed: {e}")))?
    }
}
