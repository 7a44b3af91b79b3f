//! The settings a rollout runs with: the spec's `update_config` for an update,
//! its `rollback_config` for a rollback, with the defaults filled in.

use berth_proto::v1::{Service, UpdateConfig};

/// How long a new task is watched when `monitor_ms` is 0 (Swarm's default).
pub const DEFAULT_MONITOR_MS: u64 = 5_000;
/// How long a rollout may go without progress when `progress_deadline_ms` is 0.
pub const DEFAULT_PROGRESS_DEADLINE_MS: u64 = 600_000;

/// The settings of a spec that names none: one task at a time, as Swarm's
/// and Docker's defaults are (`UpdateConfig::default()` would be parallelism
/// 0, "all at once": a whole service stopped together by a plain
/// `service update --image`).
fn unset() -> UpdateConfig {
    UpdateConfig {
        parallelism: 1,
        ..UpdateConfig::default()
    }
}

/// The settings of `service`'s rollout. A rollback takes the `rollback_config`
/// of the spec it leaves (the one written with the failed update, which is
/// where `--rollback-*` flags given with it went), else of the spec it
/// restores; without one it goes as the update settings say, but without
/// canaries: going back waits for no promotion.
pub fn settings(service: &Service, rollback: bool) -> UpdateConfig {
    let spec = service.spec.as_ref();
    let left = service.previous_spec.as_ref();
    let mut config = if rollback {
        left.and_then(|s| s.rollback_config)
            .or_else(|| spec.and_then(|s| s.rollback_config))
            .unwrap_or_else(|| UpdateConfig {
                canary: 0,
                auto_promote: false,
                ..left
                    .and_then(|s| s.update_config)
                    .or_else(|| spec.and_then(|s| s.update_config))
                    .unwrap_or_else(unset)
            })
    } else {
        spec.and_then(|s| s.update_config).unwrap_or_else(unset)
    };
    if config.monitor_ms == 0 {
        config.monitor_ms = DEFAULT_MONITOR_MS;
    }
    if config.progress_deadline_ms == 0 {
        config.progress_deadline_ms = DEFAULT_PROGRESS_DEADLINE_MS;
    }
    config
}

/// A duration as people write it: `500ms`, `5s`, `1.5s`, `1m30s`, `10m`, `1h`.
pub fn format_ms(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    if ms < 60_000 {
        return if ms.is_multiple_of(1_000) {
            format!("{}s", ms / 1_000)
        } else {
            let text = format!("{:.3}", ms as f64 / 1_000.0);
            format!("{}s", text.trim_end_matches('0'))
        };
    }
    let (h, m, s) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1_000 % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{ServiceSpec, UpdateFailureAction};

    #[test]
    fn durations_read_as_they_are_written() {
        assert_eq!(format_ms(500), "500ms");
        assert_eq!(format_ms(5_000), "5s");
        assert_eq!(format_ms(1_500), "1.5s");
        assert_eq!(format_ms(90_000), "1m30s");
        assert_eq!(format_ms(600_000), "10m");
        assert_eq!(format_ms(3_600_000), "1h");
        assert_eq!(format_ms(3_661_000), "1h1m1s");
    }

    #[test]
    fn a_rollback_takes_the_rollback_settings_of_the_spec_it_leaves() {
        let update = UpdateConfig {
            parallelism: 2,
            canary: 1,
            failure_action: UpdateFailureAction::Rollback as i32,
            ..Default::default()
        };
        let left = ServiceSpec {
            update_config: Some(update),
            rollback_config: Some(UpdateConfig {
                parallelism: 5,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut service = Service {
            spec: Some(ServiceSpec {
                update_config: Some(update),
                ..Default::default()
            }),
            previous_spec: Some(left),
            ..Default::default()
        };
        let c = settings(&service, false);
        assert_eq!((c.parallelism, c.canary), (2, 1));
        assert_eq!(c.monitor_ms, DEFAULT_MONITOR_MS);
        assert_eq!(c.progress_deadline_ms, DEFAULT_PROGRESS_DEADLINE_MS);
        assert_eq!(settings(&service, true).parallelism, 5);
        // No rollback settings anywhere: the update's, without canaries.
        if let Some(s) = service.previous_spec.as_mut() {
            s.rollback_config = None;
        }
        let c = settings(&service, true);
        assert_eq!((c.parallelism, c.canary), (2, 0));
    }

    #[test]
    fn a_spec_without_settings_replaces_one_task_at_a_time() {
        let service = Service {
            spec: Some(ServiceSpec::default()),
            previous_spec: Some(ServiceSpec::default()),
            ..Default::default()
        };
        for rollback in [false, true] {
            let c = settings(&service, rollback);
            assert_eq!(c.parallelism, 1, "rollback: {rollback}");
            assert_eq!(c.monitor_ms, DEFAULT_MONITOR_MS);
        }
        // 0 written on purpose still means all at once.
        let all = Service {
            spec: Some(ServiceSpec {
                update_config: Some(UpdateConfig::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(settings(&all, false).parallelism, 0);
    }
}
