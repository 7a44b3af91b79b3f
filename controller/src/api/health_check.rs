//! What a service's health check may say: a probe with a command or a port,
//! timings within reason, and nothing besides `disable` when it is disabled.

use berth_proto::v1::{HealthCheck, health_check};

/// The longest interval, timeout or start period accepted (a day: anything
/// longer is a unit mistake).
const MAX_MS: u64 = 24 * 60 * 60 * 1000;
/// The shortest interval: probes more often than this load the node for nothing.
const MIN_INTERVAL_MS: u64 = 100;
const MAX_RETRIES: u32 = 100;

/// Checks `check`; the error says which part is wrong (the caller names the
/// service).
pub fn validate(check: &HealthCheck) -> Result<(), String> {
    if check.disable {
        let set = check.probe.is_some()
            || check.interval_ms != 0
            || check.timeout_ms != 0
            || check.retries != 0
            || check.start_period_ms != 0;
        return match set {
            true => Err("a disabled health check cannot have a probe or timings".into()),
            false => Ok(()),
        };
    }
    let port = |p: u32| match p {
        1..=65535 => Ok(()),
        _ => Err(format!("health check port {p} is out of range (1-65535)")),
    };
    match &check.probe {
        Some(health_check::Probe::Exec(e))
            if e.command.first().is_none_or(|c| c.trim().is_empty()) =>
        {
            return Err("health check command is empty".into());
        }
        Some(health_check::Probe::Exec(_)) => {}
        Some(health_check::Probe::Http(h)) => {
            port(h.port)?;
            if !h.path.is_empty() && !h.path.starts_with('/') {
                return Err(format!(
                    "health check path {:?} does not start with /",
                    h.path
                ));
            }
            if h.path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "health check path {:?} has spaces or control characters",
                    h.path
                ));
            }
        }
        Some(health_check::Probe::Tcp(t)) => port(t.port)?,
        // Timings alone apply to the image's check.
        None => {}
    }
    if check.interval_ms != 0 && check.interval_ms < MIN_INTERVAL_MS {
        return Err(format!(
            "health check interval {} ms is below {MIN_INTERVAL_MS} ms",
            check.interval_ms
        ));
    }
    for (what, ms) in [
        ("interval", check.interval_ms),
        ("timeout", check.timeout_ms),
        ("start period", check.start_period_ms),
    ] {
        if ms > MAX_MS {
            return Err(format!("health check {what} {ms} ms is over a day"));
        }
    }
    if check.retries > MAX_RETRIES {
        return Err(format!(
            "health check retries {} is over {MAX_RETRIES}",
            check.retries
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{ExecProbe, HttpProbe, TcpProbe};

    fn with(probe: health_check::Probe) -> HealthCheck {
        HealthCheck {
            probe: Some(probe),
            ..HealthCheck::default()
        }
    }

    #[test]
    fn good_checks_pass() {
        let exec = with(health_check::Probe::Exec(ExecProbe {
            command: vec!["/bin/sh".into(), "-c".into(), "true".into()],
        }));
        assert_eq!(validate(&exec), Ok(()));
        let http = HealthCheck {
            interval_ms: 500,
            retries: 5,
            ..with(health_check::Probe::Http(HttpProbe {
                port: 8080,
                path: "/healthz".into(),
            }))
        };
        assert_eq!(validate(&http), Ok(()));
        let off = HealthCheck {
            disable: true,
            ..HealthCheck::default()
        };
        assert_eq!(validate(&off), Ok(()));
    }

    #[test]
    fn bad_checks_say_what_is_wrong() {
        let err = |c: HealthCheck| validate(&c).unwrap_err();
        assert!(err(with(health_check::Probe::Tcp(TcpProbe { port: 0 }))).contains("port 0"));
        assert!(
            err(with(health_check::Probe::Exec(ExecProbe {
                command: vec![]
            })))
            .contains("command is empty")
        );
        assert!(
            err(with(health_check::Probe::Http(HttpProbe {
                port: 80,
                path: "health".into()
            })))
            .contains("does not start with /")
        );
        let fast = HealthCheck {
            interval_ms: 10,
            ..with(health_check::Probe::Tcp(TcpProbe { port: 80 }))
        };
        assert!(err(fast).contains("below 100 ms"));
        let long = HealthCheck {
            timeout_ms: MAX_MS + 1,
            ..HealthCheck::default()
        };
        assert!(err(long).contains("timeout"));
        let both = HealthCheck {
            disable: true,
            retries: 2,
            ..HealthCheck::default()
        };
        assert!(err(both).contains("disabled"));
    }
}
