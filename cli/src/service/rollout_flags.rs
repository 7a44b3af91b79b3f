//! `--update-*` and `--rollback-*`: how a rollout proceeds, on `service create`
//! and `service update`. A flag given changes that one setting; the others keep
//! what the service has (or the defaults, on create).

use berth_proto::v1::{UpdateConfig, UpdateFailureAction, UpdateOrder};
use clap::{Args, ValueEnum};

use crate::units::parse_duration_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailureActionArg {
    Pause,
    Continue,
    Rollback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OrderArg {
    StopFirst,
    StartFirst,
}

/// `--update-*`.
#[derive(Debug, Default, Args)]
pub struct UpdateFlags {
    /// Tasks replaced at once (0 = all at once; default 1).
    #[arg(long, value_name = "N")]
    pub update_parallelism: Option<u64>,
    /// Wait between batches (500ms, 10s, 1m30s; a bare number is seconds).
    #[arg(long, value_parser = parse_duration_ms, value_name = "DURATION")]
    pub update_delay: Option<u64>,
    /// How long a new task is watched: one that fails or turns unhealthy in
    /// this window counts as a failure (default 5s).
    #[arg(long, value_parser = parse_duration_ms, value_name = "DURATION")]
    pub update_monitor: Option<u64>,
    /// What to do when too many new tasks fail (default pause).
    #[arg(long, value_enum)]
    pub update_failure_action: Option<FailureActionArg>,
    /// Fraction of new tasks that may fail before the failure action (0 to 1; default 0).
    #[arg(long, value_parser = parse_ratio, value_name = "RATIO")]
    pub update_max_failure_ratio: Option<f32>,
    /// stop-first (default: the old task stops, then the new one starts) or
    /// start-first (the old task stops once its replacement is healthy).
    #[arg(long, value_enum)]
    pub update_order: Option<OrderArg>,
    /// Start N new tasks beside the old ones, then pause until `berth service promote`.
    #[arg(long, value_name = "N")]
    pub update_canary: Option<u64>,
    /// Promote the canaries by themselves once all are healthy for --update-min-healthy.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub update_auto_promote: Option<bool>,
    /// How long every canary must be healthy before auto-promotion (default 0s).
    #[arg(long, value_parser = parse_duration_ms, value_name = "DURATION")]
    pub update_min_healthy: Option<u64>,
    /// A rollout without progress for this long fails (default 10m).
    #[arg(long, value_parser = parse_duration_ms, value_name = "DURATION")]
    pub update_progress_deadline: Option<u64>,
}

/// `--rollback-*`: the same settings for rollbacks (default: as the update's).
#[derive(Debug, Default, Args)]
pub struct RollbackFlags {
    /// Tasks rolled back at once (0 = all at once).
    #[arg(long, value_name = "N")]
    pub rollback_parallelism: Option<u64>,
    /// Wait between rollback batches.
    #[arg(long, value_parser = parse_duration_ms, value_name = "DURATION")]
    pub rollback_delay: Option<u64>,
    /// How long a task started by a rollback is watched for failure.
    #[arg(long, value_parser = parse_duration_ms, value_name = "DURATION")]
    pub rollback_monitor: Option<u64>,
    /// What to do when a rollback's tasks fail (pause or continue; a rollback
    /// is never rolled back).
    #[arg(long, value_enum)]
    pub rollback_failure_action: Option<FailureActionArg>,
    /// Fraction of a rollback's tasks that may fail.
    #[arg(long, value_parser = parse_ratio, value_name = "RATIO")]
    pub rollback_max_failure_ratio: Option<f32>,
    /// stop-first or start-first, for rollbacks.
    #[arg(long, value_enum)]
    pub rollback_order: Option<OrderArg>,
}

fn parse_ratio(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "invalid ratio {s:?}: expected a number from 0 to 1"
        )),
    }
}

fn action(a: FailureActionArg) -> i32 {
    match a {
        FailureActionArg::Pause => UpdateFailureAction::Pause as i32,
        FailureActionArg::Continue => UpdateFailureAction::Continue as i32,
        FailureActionArg::Rollback => UpdateFailureAction::Rollback as i32,
    }
}

fn order(o: OrderArg) -> i32 {
    match o {
        OrderArg::StopFirst => UpdateOrder::StopFirst as i32,
        OrderArg::StartFirst => UpdateOrder::StartFirst as i32,
    }
}

/// The settings every rollout shares, from either flag set.
struct Common {
    parallelism: Option<u64>,
    delay: Option<u64>,
    monitor: Option<u64>,
    failure_action: Option<FailureActionArg>,
    max_failure_ratio: Option<f32>,
    order: Option<OrderArg>,
}

impl Common {
    fn is_empty(&self) -> bool {
        self.parallelism.is_none()
            && self.delay.is_none()
            && self.monitor.is_none()
            && self.failure_action.is_none()
            && self.max_failure_ratio.is_none()
            && self.order.is_none()
    }

    fn apply(&self, config: &mut UpdateConfig) {
        if let Some(p) = self.parallelism {
            config.parallelism = p;
        }
        if let Some(d) = self.delay {
            config.delay_ms = d;
        }
        if let Some(m) = self.monitor {
            config.monitor_ms = m;
        }
        if let Some(a) = self.failure_action {
            config.failure_action = action(a);
        }
        if let Some(r) = self.max_failure_ratio {
            config.max_failure_ratio = r;
        }
        if let Some(o) = self.order {
            config.order = order(o);
        }
    }
}

/// A new service's update settings: Swarm's parallelism of 1 unless given.
fn fresh() -> UpdateConfig {
    UpdateConfig {
        parallelism: 1,
        ..Default::default()
    }
}

impl UpdateFlags {
    /// The update settings after these flags (`current`: the service's, or
    /// none on create). Unchanged (None stays None) when no flag is given.
    pub fn apply(&self, current: Option<UpdateConfig>) -> Option<UpdateConfig> {
        let common = Common {
            parallelism: self.update_parallelism,
            delay: self.update_delay,
            monitor: self.update_monitor,
            failure_action: self.update_failure_action,
            max_failure_ratio: self.update_max_failure_ratio,
            order: self.update_order,
        };
        let own = self.update_canary.is_none()
            && self.update_auto_promote.is_none()
            && self.update_min_healthy.is_none()
            && self.update_progress_deadline.is_none();
        if common.is_empty() && own {
            return current;
        }
        let mut config = current.unwrap_or_else(fresh);
        common.apply(&mut config);
        if let Some(n) = self.update_canary {
            config.canary = n;
        }
        if let Some(on) = self.update_auto_promote {
            config.auto_promote = on;
        }
        if let Some(d) = self.update_min_healthy {
            config.min_healthy_ms = d;
        }
        if let Some(d) = self.update_progress_deadline {
            config.progress_deadline_ms = d;
        }
        Some(config)
    }
}

impl RollbackFlags {
    /// The rollback settings after these flags.
    pub fn apply(&self, current: Option<UpdateConfig>) -> Option<UpdateConfig> {
        let common = Common {
            parallelism: self.rollback_parallelism,
            delay: self.rollback_delay,
            monitor: self.rollback_monitor,
            failure_action: self.rollback_failure_action,
            max_failure_ratio: self.rollback_max_failure_ratio,
            order: self.rollback_order,
        };
        if common.is_empty() {
            return current;
        }
        let mut config = current.unwrap_or_else(fresh);
        common.apply(&mut config);
        Some(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_changes_one_setting_and_keeps_the_others() {
        let current = UpdateConfig {
            parallelism: 3,
            delay_ms: 2_000,
            order: UpdateOrder::StartFirst as i32,
            ..Default::default()
        };
        let flags = UpdateFlags {
            update_delay: Some(500),
            update_failure_action: Some(FailureActionArg::Rollback),
            ..Default::default()
        };
        let after = flags.apply(Some(current)).expect("config");
        assert_eq!(after.parallelism, 3);
        assert_eq!(after.delay_ms, 500);
        assert_eq!(after.order, UpdateOrder::StartFirst as i32);
        assert_eq!(after.failure_action, UpdateFailureAction::Rollback as i32);
        assert_eq!(UpdateFlags::default().apply(Some(current)), Some(current));
        assert_eq!(UpdateFlags::default().apply(None), None);
        // On create, a first flag starts from Swarm's defaults.
        let canary = UpdateFlags {
            update_canary: Some(2),
            ..Default::default()
        };
        let made = canary.apply(None).expect("config");
        assert_eq!((made.parallelism, made.canary), (1, 2));
        let rollback = RollbackFlags {
            rollback_order: Some(OrderArg::StartFirst),
            ..Default::default()
        };
        assert_eq!(
            rollback.apply(None).map(|c| c.order),
            Some(UpdateOrder::StartFirst as i32)
        );
    }

    #[test]
    fn ratios_are_between_zero_and_one() {
        assert_eq!(parse_ratio("0.25"), Ok(0.25));
        assert!(parse_ratio("1.5").is_err());
        assert!(parse_ratio("-1").is_err());
        assert!(parse_ratio("half").is_err());
    }
}
