//! Traffic during rollouts: `berth-loadgen` (src/bin/berth-loadgen.rs) runs as
//! a process of a test host, either on the host itself (a client of a
//! published port) or inside a task's container through the runtime's `exec`
//! (a client of a VIP), until the test stops it; its JSON summary says how
//! many requests failed, why, and which answers came when. The processes are
//! the test net's, so they end with it whatever happens to the test.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bin_path;
use crate::cluster::Cluster;

/// One distinct answer body, or one failure reason: how often, first and last
/// (Unix ms, the machine's clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub what: String,
    pub count: u64,
    pub first_ms: u64,
    pub last_ms: u64,
}

/// What a load generator saw.
#[derive(Clone, Debug)]
pub struct Summary {
    pub ok: u64,
    pub failed: u64,
    pub failures: Vec<Seen>,
    pub bodies: Vec<Seen>,
    pub started_ms: u64,
    pub ended_ms: u64,
}

impl Summary {
    /// The summary berth-loadgen printed (the last JSON line of `log`).
    pub fn parse(log: &str) -> Result<Summary> {
        let line = log
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .with_context(|| format!("no summary in the load generator's output:\n{log}"))?;
        let value: Value = serde_json::from_str(line).context("the load generator's summary")?;
        let seen = |list: &Value, key: &str| -> Vec<Seen> {
            list.as_array()
                .into_iter()
                .flatten()
                .map(|v| Seen {
                    what: v[key].as_str().unwrap_or_default().to_string(),
                    count: v["count"].as_u64().unwrap_or(0),
                    first_ms: v["first_ms"].as_u64().unwrap_or(0),
                    last_ms: v["last_ms"].as_u64().unwrap_or(0),
                })
                .collect()
        };
        Ok(Summary {
            ok: value["ok"].as_u64().unwrap_or(0),
            failed: value["failed"].as_u64().unwrap_or(0),
            failures: seen(&value["failures"], "reason"),
            bodies: seen(&value["bodies"], "body"),
            started_ms: value["started_ms"].as_u64().unwrap_or(0),
            ended_ms: value["ended_ms"].as_u64().unwrap_or(0),
        })
    }

    /// The answer `body`, if it came at all.
    pub fn body(&self, body: &str) -> Option<&Seen> {
        self.bodies.iter().find(|b| b.what == body)
    }
}

/// Where a load generator runs.
enum Place {
    /// On test host `host`; it stops when `file` (a path of the host's) exists.
    Host { host: usize, file: PathBuf },
    /// In the container of `task` on agent `agent`, started from that agent's
    /// host; it stops when `file` (a path in the container) exists.
    Container {
        agent: usize,
        task: String,
        file: String,
    },
}

/// A running load generator.
pub struct Load {
    name: String,
    /// The test host the process belongs to.
    host: usize,
    place: Place,
}

fn loadgen_args(url: &str, stop_file: &str) -> Vec<String> {
    [
        "--url",
        url,
        "--threads",
        "2",
        "--pause-ms",
        "5",
        "--timeout-ms",
        "3000",
        "--stop-file",
        stop_file,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl Load {
    /// `GET url` from test host `host` itself, as process `name`.
    pub fn from_host(cluster: &mut Cluster, host: usize, name: &str, url: &str) -> Result<Load> {
        let file = cluster.c.net.host(host).dir().join(format!("{name}.stop"));
        let args = loadgen_args(url, &file.to_string_lossy());
        cluster
            .c
            .net
            .host_mut(host)
            .spawn(name, bin_path("berth-loadgen"), &args)?;
        Ok(Load {
            name: name.to_string(),
            host,
            place: Place::Host { host, file },
        })
    }

    /// `GET url` from inside the container of `task`, which runs on agent
    /// `agent` and has `berth-loadgen` in its image (`images::web_layout`).
    pub fn in_container(
        cluster: &mut Cluster,
        agent: usize,
        task: &str,
        name: &str,
        url: &str,
    ) -> Result<Load> {
        let file = format!("/{name}.stop");
        let mut args: Vec<String> = [
            "--root",
            "/run/berth/runtime",
            "exec",
            task,
            "berth-loadgen",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(loadgen_args(url, &file));
        let host = cluster.agent_hosts[agent];
        cluster
            .c
            .net
            .host_mut(host)
            .spawn(name, bin_path("berth-runtime"), &args)?;
        Ok(Load {
            name: name.to_string(),
            host,
            place: Place::Container {
                agent,
                task: task.to_string(),
                file,
            },
        })
    }

    /// Stops it and returns what it saw.
    pub fn stop(self, cluster: &mut Cluster) -> Result<Summary> {
        match &self.place {
            Place::Host { host, file } => {
                let touched = cluster
                    .c
                    .net
                    .host(*host)
                    .run("touch", &[&file.to_string_lossy()]);
                touched.with_context(|| format!("stopping {}", self.name))?;
            }
            Place::Container { agent, task, file } => {
                let out = cluster.exec(*agent, task, &["touch", file])?;
                if !out.status.success() {
                    bail!("stopping {}: {out:?}", self.name);
                }
            }
        }
        let proc = cluster.c.net.host_mut(self.host).proc(&self.name)?;
        let status = proc.wait_exit(Duration::from_secs(30))?;
        let log = proc.log();
        if !status.success() {
            bail!("{} ended with {status}:\n{log}", self.name);
        }
        Summary::parse(&log)
    }
}

/// One run of `duration` against `url` from the container of `task` on agent
/// `agent`, to see that a path answers before a measured run.
pub fn probe_from_container(
    cluster: &Cluster,
    agent: usize,
    task: &str,
    url: &str,
    duration: &str,
) -> Result<Summary> {
    let out = cluster.exec(
        agent,
        task,
        &[
            "berth-loadgen",
            "--url",
            url,
            "--duration",
            duration,
            "--timeout-ms",
            "1000",
        ],
    )?;
    Summary::parse(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| String::from_utf8_lossy(&out.stderr).to_string())
}

/// One run of `duration` against `url` from test host `host`.
pub fn probe_from_host(
    cluster: &Cluster,
    host: usize,
    url: &str,
    duration: &str,
) -> Result<Summary> {
    let loadgen = bin_path("berth-loadgen");
    let out = cluster.c.net.host(host).run_unchecked(
        &loadgen.to_string_lossy(),
        &["--url", url, "--duration", duration, "--timeout-ms", "1000"],
    )?;
    Summary::parse(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| String::from_utf8_lossy(&out.stderr).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_is_read_from_the_last_json_line() {
        let log = "==== start #1 of load on h1: berth-loadgen\n\
                   {\"ok\":12,\"failed\":1,\"started_ms\":5,\"ended_ms\":9,\
                   \"failures\":[{\"reason\":\"connect: ConnectionRefused\",\"count\":1,\"first_ms\":6,\"last_ms\":6}],\
                   \"bodies\":[{\"body\":\"v1\",\"count\":12,\"first_ms\":5,\"last_ms\":8}]}\n";
        let s = Summary::parse(log).expect("a summary");
        assert_eq!((s.ok, s.failed, s.started_ms, s.ended_ms), (12, 1, 5, 9));
        assert_eq!(s.failures[0].what, "connect: ConnectionRefused");
        assert_eq!(
            s.body("v1"),
            Some(&Seen {
                what: "v1".into(),
                count: 12,
                first_ms: 5,
                last_ms: 8
            })
        );
        assert!(Summary::parse("nothing").is_err());
    }
}
