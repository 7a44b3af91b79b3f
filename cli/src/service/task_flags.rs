//! Flags `service create` and `service update` share with the same meaning:
//! the restart policy and the resources. On create they apply to nothing (the
//! defaults fill the rest); on update to the service's current settings.

use berth_proto::v1::{ResourceRequirements, Resources, RestartCondition, RestartPolicy};
use clap::{Args, ValueEnum};

use crate::units::{parse_cpus, parse_duration_ms, parse_size};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RestartArg {
    Any,
    OnFailure,
    None,
}

/// `--restart-*`.
#[derive(Debug, Default, Args)]
pub struct RestartFlags {
    /// When a task that ended is replaced (default any).
    #[arg(long, value_enum)]
    pub restart_condition: Option<RestartArg>,
    /// Wait before a task that ended is replaced (500ms, 5s, 1m; a bare
    /// number is seconds; default 5s).
    #[arg(long, value_parser = parse_duration_ms, value_name = "DURATION")]
    pub restart_delay: Option<u64>,
    /// Restarts allowed within the window (0 = unlimited).
    #[arg(long)]
    pub restart_max_attempts: Option<u64>,
    /// The window restarts are counted in (0 = forever).
    #[arg(long, value_parser = parse_duration_ms, value_name = "DURATION")]
    pub restart_window: Option<u64>,
}

/// Berth's (and Swarm's) default: any exit, 5 s apart, unlimited.
fn default_policy() -> RestartPolicy {
    RestartPolicy {
        condition: RestartCondition::Any as i32,
        delay_ms: 5_000,
        max_attempts: 0,
        window_ms: 0,
    }
}

impl RestartFlags {
    /// The policy after these flags: `current`'s (or the default) with what
    /// they name changed.
    pub fn apply(&self, current: Option<RestartPolicy>) -> RestartPolicy {
        let mut policy = current.unwrap_or_else(default_policy);
        if let Some(c) = self.restart_condition {
            let condition = match c {
                RestartArg::Any => RestartCondition::Any,
                RestartArg::OnFailure => RestartCondition::OnFailure,
                RestartArg::None => RestartCondition::None,
            };
            policy.condition = condition as i32;
        }
        if let Some(d) = self.restart_delay {
            policy.delay_ms = d;
        }
        if let Some(n) = self.restart_max_attempts {
            policy.max_attempts = n;
        }
        if let Some(w) = self.restart_window {
            policy.window_ms = w;
        }
        policy
    }

    pub fn is_empty(&self) -> bool {
        self.restart_condition.is_none()
            && self.restart_delay.is_none()
            && self.restart_max_attempts.is_none()
            && self.restart_window.is_none()
    }
}

/// `--cpus` and `--memory`: reserved for placement and enforced as limits.
#[derive(Debug, Default, Args)]
pub struct ResourceFlags {
    /// CPUs per task, reserved for placement and enforced as a limit (0.5, 2).
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<u64>,
    /// Memory per task, reserved for placement and enforced as a limit (256m, 1g).
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<u64>,
}

impl ResourceFlags {
    pub fn is_empty(&self) -> bool {
        self.cpus.is_none() && self.memory.is_none()
    }

    /// The requirements after these flags, reservations and limits alike.
    pub fn apply(&self, current: Option<ResourceRequirements>) -> ResourceRequirements {
        let mut resources = current.unwrap_or_else(|| ResourceRequirements {
            reservations: Some(Resources::default()),
            limits: Some(Resources::default()),
        });
        for amount in [&mut resources.reservations, &mut resources.limits] {
            let amount = amount.get_or_insert_with(Resources::default);
            if let Some(cpus) = self.cpus {
                amount.milli_cpus = cpus;
            }
            if let Some(memory) = self.memory {
                amount.memory_bytes = memory;
            }
        }
        resources
    }
}
