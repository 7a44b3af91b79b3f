//! The reconcile loop: on every change of the plan and every period.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tracing::warn;

use super::Overlay;
use super::netlink::Netlink;
use super::plan::LocalPlan;

impl<N: Netlink> Overlay<N> {
    /// Reconciles the plan in `plan` at once, on every change and every
    /// `period` (repairing what someone else changed); a failed pass is logged
    /// and retried at the next. Returns when the sender is dropped.
    pub async fn run(&self, mut plan: watch::Receiver<LocalPlan>, period: Duration) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let current = plan.borrow_and_update().clone();
            if let Err(error) = self.reconcile(&current).await {
                warn!(%error, networks = current.networks.len(), "overlay reconcile failed");
            }
            tokio::select! {
                changed = plan.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tick.tick() => {}
            }
        }
    }
}
