//! `service create`'s health check flags, Docker's names: one probe of
//! `--health-cmd` (run by /bin/sh -c), `--health-http PORT[/PATH]` or
//! `--health-tcp PORT`, its timings, or `--no-healthcheck` to turn off the
//! image's check.

use anyhow::{Result, bail};
use berth_proto::v1::{ExecProbe, HealthCheck, HttpProbe, TcpProbe, health_check};
use clap::Args;

use crate::units::parse_duration_ms;

#[derive(Debug, Default, Args)]
pub struct HealthArgs {
    /// Command run in the container to check its health (through /bin/sh -c;
    /// exit 0 = healthy).
    #[arg(long, group = "health_probe")]
    pub health_cmd: Option<String>,
    /// Check health with an HTTP GET of PORT[/PATH] on the container's
    /// localhost (2xx and 3xx = healthy).
    #[arg(long, value_name = "PORT[/PATH]", group = "health_probe")]
    pub health_http: Option<String>,
    /// Check health with a TCP connect to PORT on the container's localhost.
    #[arg(long, value_name = "PORT", group = "health_probe")]
    pub health_tcp: Option<u16>,
    /// Time between checks (500ms, 10s, 1m30s; a bare number is seconds; default 30s).
    #[arg(long, value_parser = parse_duration_ms, value_name = "DURATION")]
    pub health_interval: Option<u64>,
    /// Time one check may take (default 30s).
    #[arg(long, value_parser = parse_duration_ms, value_name = "DURATION")]
    pub health_timeout: Option<u64>,
    /// Failures in a row that make a task unhealthy (default 3).
    #[arg(long)]
    pub health_retries: Option<u32>,
    /// Time after the start in which failures do not count (default 0s).
    #[arg(long, value_parser = parse_duration_ms, value_name = "DURATION")]
    pub health_start_period: Option<u64>,
    /// Run no health check, not even the image's HEALTHCHECK.
    #[arg(long, conflicts_with_all = ["health_probe", "health_interval", "health_timeout", "health_retries", "health_start_period"])]
    pub no_healthcheck: bool,
}

/// `PORT` or `PORT/PATH` -> the HTTP probe.
fn http_probe(s: &str) -> Result<HttpProbe> {
    let (port, path) = match s.split_once('/') {
        Some((port, path)) => (port, format!("/{path}")),
        None => (s, "/".to_string()),
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(HttpProbe {
            port: u32::from(p),
            path,
        }),
        _ => bail!("--health-http {s:?}: expected PORT[/PATH] with a port of 1-65535"),
    }
}

/// The service's health check; `None` when no flag is given (the image's
/// check applies).
pub fn health_check_of(a: &HealthArgs) -> Result<Option<HealthCheck>> {
    if a.no_healthcheck {
        return Ok(Some(HealthCheck {
            disable: true,
            ..HealthCheck::default()
        }));
    }
    let probe = if let Some(cmd) = &a.health_cmd {
        Some(health_check::Probe::Exec(ExecProbe {
            command: vec!["/bin/sh".into(), "-c".into(), cmd.clone()],
        }))
    } else if let Some(http) = &a.health_http {
        Some(health_check::Probe::Http(http_probe(http)?))
    } else {
        a.health_tcp.map(|port| {
            health_check::Probe::Tcp(TcpProbe {
                port: u32::from(port),
            })
        })
    };
    let check = HealthCheck {
        probe,
        interval_ms: a.health_interval.unwrap_or(0),
        timeout_ms: a.health_timeout.unwrap_or(0),
        retries: a.health_retries.unwrap_or(0),
        start_period_ms: a.health_start_period.unwrap_or(0),
        disable: false,
    };
    Ok((check != HealthCheck::default()).then_some(check))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_targets_take_a_port_and_an_optional_path() {
        let p = http_probe("8080/healthz").unwrap();
        assert_eq!((p.port, p.path.as_str()), (8080, "/healthz"));
        let p = http_probe("80").unwrap();
        assert_eq!((p.port, p.path.as_str()), (80, "/"));
        assert!(http_probe("0/x").is_err());
        assert!(http_probe("web/x").is_err());
    }

    #[test]
    fn no_flags_leave_the_images_check() {
        assert_eq!(health_check_of(&HealthArgs::default()).unwrap(), None);
    }
}
