//! Flags `service create` and `service update` share with the same meaning:
//! the restart policy, the resources and how tasks stop. On create they apply to nothing (the
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

/// `--stop-signal` and `--stop-grace-period`.
#[derive(Debug, Default, Args)]
pub struct StopFlags {
    /// The signal a task gets first when it is stopped: SIGTERM (the default,
    /// or the image's STOPSIGNAL), TERM, SIGQUIT, or a number.
    #[arg(long, value_parser = parse_stop_signal)]
    pub stop_signal: Option<String>,
    /// How long a stopped task may take before it is killed (500ms, 10s,
    /// 1m30s; a bare number is seconds; whole seconds, rounded up; default 10s).
    #[arg(long, value_parser = parse_grace_seconds)]
    pub stop_grace_period: Option<u32>,
}

impl StopFlags {
    /// Sets what the flags name in `spec`.
    pub fn apply(&self, spec: &mut berth_proto::v1::ServiceSpec) {
        if let Some(signal) = &self.stop_signal {
            spec.stop_signal = signal.clone();
        }
        if let Some(grace) = self.stop_grace_period {
            spec.stop_grace_seconds = grace;
        }
    }
}

/// `--stop-signal`: a signal Linux has, as the controller will check it.
fn parse_stop_signal(s: &str) -> Result<String, String> {
    berth_proto::signals::number(s)
        .map(|_| s.trim().to_string())
        .map_err(|e| e.to_string())
}

/// `--stop-grace-period` in whole seconds (the spec's unit), rounded up; at
/// least 1 s, since 0 in the spec means the default.
fn parse_grace_seconds(s: &str) -> Result<u32, String> {
    let ms = parse_duration_ms(s)?;
    if ms == 0 {
        return Err(format!(
            "invalid stop grace period {s:?}: at least 1s (0 would mean the default, 10s)"
        ));
    }
    u32::try_from(ms.div_ceil(1000))
        .map_err(|_| format!("invalid stop grace period {s:?}: too long"))
}
