//! What a task's health check is: the service's `HealthCheck` where it names
//! a probe, else the image's `Healthcheck`; each timing from the service if
//! set, else from the image, else Docker's default.

use std::time::Duration;

use berth_proto::v1::{HealthCheck, health_check};
use serde::{Deserialize, Serialize};

use crate::image::Healthcheck;

/// Docker's defaults.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;

/// One probe of a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// A command run inside the container; exit code 0 passes.
    Exec { command: Vec<String> },
    /// A GET of `http://127.0.0.1:PORT/PATH` from the container's network
    /// namespace; 2xx and 3xx pass.
    Http { port: u16, path: String },
    /// A TCP connect to 127.0.0.1:PORT from the container's network namespace.
    Tcp { port: u16 },
}

/// A task's resolved health check (stored in its record, so an adopted
/// container keeps being checked without its image config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    /// Failures in a row that make the task unhealthy (at least 1).
    pub retries: u32,
    /// Failures before this much time after the start do not count.
    pub start_period: Duration,
}

fn spec_probe(check: &HealthCheck) -> Option<Probe> {
    Some(match check.probe.as_ref()? {
        health_check::Probe::Exec(e) => Probe::Exec {
            command: e.command.clone(),
        },
        health_check::Probe::Http(h) => Probe::Http {
            port: u16::try_from(h.port).ok()?,
            path: h.path.clone(),
        },
        health_check::Probe::Tcp(t) => Probe::Tcp {
            port: u16::try_from(t.port).ok()?,
        },
    })
}

/// The image's test: `["CMD", args...]`, `["CMD-SHELL", command]` (run by
/// /bin/sh -c); `["NONE"]` or nothing is no check.
fn image_probe(image: &Healthcheck) -> Option<Probe> {
    let (kind, rest) = image.test.split_first()?;
    let command = match kind.as_str() {
        "CMD" => rest.to_vec(),
        "CMD-SHELL" => {
            let mut c = vec!["/bin/sh".to_string(), "-c".to_string()];
            c.push(rest.join(" "));
            c
        }
        _ => return None,
    };
    (!command.is_empty()).then_some(Probe::Exec { command })
}

/// The first non-zero of the service's milliseconds and the image's
/// nanoseconds, else `default`.
fn pick(spec_ms: u64, image_ns: u64, default: Duration) -> Duration {
    match (spec_ms, image_ns) {
        (0, 0) => default,
        (0, ns) => Duration::from_nanos(ns),
        (ms, _) => Duration::from_millis(ms),
    }
}

/// The check a task runs; `None`: it has none (or it is disabled).
pub fn resolve(spec: Option<&HealthCheck>, image: Option<&Healthcheck>) -> Option<HealthConfig> {
    if spec.is_some_and(|s| s.disable) {
        return None;
    }
    let probe = spec
        .and_then(spec_probe)
        .or_else(|| image.and_then(image_probe))?;
    let s = spec.cloned().unwrap_or_default();
    let i = image.cloned().unwrap_or_default();
    let retries = match (s.retries, i.retries) {
        (0, 0) => DEFAULT_RETRIES,
        (0, r) | (r, _) => r,
    };
    Some(HealthConfig {
        probe,
        interval: pick(s.interval_ms, i.interval, DEFAULT_INTERVAL),
        timeout: pick(s.timeout_ms, i.timeout, DEFAULT_TIMEOUT),
        retries,
        start_period: pick(s.start_period_ms, i.start_period, Duration::ZERO),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{ExecProbe, TcpProbe};

    fn image(test: &[&str]) -> Healthcheck {
        Healthcheck {
            test: test.iter().map(|s| s.to_string()).collect(),
            interval: 5_000_000_000,
            retries: 2,
            ..Healthcheck::default()
        }
    }

    #[test]
    fn the_image_check_runs_shell_commands_through_sh() {
        let c = resolve(None, Some(&image(&["CMD-SHELL", "curl -f localhost"]))).unwrap();
        assert_eq!(
            c.probe,
            Probe::Exec {
                command: vec!["/bin/sh".into(), "-c".into(), "curl -f localhost".into()]
            }
        );
        assert_eq!(c.interval, Duration::from_secs(5));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.retries, 2);
        assert_eq!(c.start_period, Duration::ZERO);
        let c = resolve(None, Some(&image(&["CMD", "/bin/check", "-q"]))).unwrap();
        assert_eq!(
            c.probe,
            Probe::Exec {
                command: vec!["/bin/check".into(), "-q".into()]
            }
        );
        assert_eq!(resolve(None, Some(&image(&["NONE"]))), None);
        assert_eq!(resolve(None, Some(&image(&[]))), None);
        assert_eq!(resolve(None, None), None);
    }

    #[test]
    fn the_service_check_wins_and_its_timings_override_the_images() {
        let spec = HealthCheck {
            probe: Some(health_check::Probe::Tcp(TcpProbe { port: 80 })),
            timeout_ms: 1500,
            ..HealthCheck::default()
        };
        let c = resolve(Some(&spec), Some(&image(&["CMD", "true"]))).unwrap();
        assert_eq!(c.probe, Probe::Tcp { port: 80 });
        assert_eq!(c.timeout, Duration::from_millis(1500));
        assert_eq!(c.interval, Duration::from_secs(5), "the image's interval");
        assert_eq!(c.retries, 2);
        // Timings alone keep the image's probe.
        let timings = HealthCheck {
            interval_ms: 700,
            ..HealthCheck::default()
        };
        let c = resolve(Some(&timings), Some(&image(&["CMD", "true"]))).unwrap();
        assert_eq!(
            c.probe,
            Probe::Exec {
                command: vec!["true".into()]
            }
        );
        assert_eq!(c.interval, Duration::from_millis(700));
        // Defaults when nobody sets them.
        let exec = HealthCheck {
            probe: Some(health_check::Probe::Exec(ExecProbe {
                command: vec!["true".into()],
            })),
            ..HealthCheck::default()
        };
        let c = resolve(Some(&exec), None).unwrap();
        assert_eq!(
            (c.interval, c.timeout, c.retries),
            (DEFAULT_INTERVAL, DEFAULT_TIMEOUT, DEFAULT_RETRIES)
        );
    }

    #[test]
    fn a_disabled_check_turns_off_the_images() {
        let off = HealthCheck {
            disable: true,
            ..HealthCheck::default()
        };
        assert_eq!(resolve(Some(&off), Some(&image(&["CMD", "true"]))), None);
    }
}
