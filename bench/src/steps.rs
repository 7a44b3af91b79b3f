//! The agent's own per-step timings of the start and stop paths, read from
//! its log (target `berth_agent::supervisor::steps`, see the agent's
//! `supervisor/steps.rs`): medians per step over every task of a phase.

use std::path::Path;

/// The log filter that turns the step lines on (and leaves the rest as
/// `berth dev` logs it by default).
pub const LOG_LEVEL: &str =
    "info,raft=warn,h2=warn,tower=warn,hickory_server=warn,berth_agent::supervisor::steps=debug";

/// The lines of the network part of a start (a breakdown of its `network`).
pub const NETWORK_PATH: &str = "network path";

/// A position in the log, to read what a phase added.
pub fn log_mark(log: &Path) -> u64 {
    std::fs::metadata(log).map_or(0, |m| m.len())
}

/// Step timings of one path ("start path" or "stop path") over many tasks.
#[derive(Debug, Default)]
pub struct PathSteps {
    /// Per step, in the order steps first appeared: every task's ms.
    steps: Vec<(String, Vec<u64>)>,
    totals: Vec<u64>,
    /// The session's report batches: ms until the leader answered (its
    /// commit of the statuses).
    reports: Vec<u64>,
}

impl PathSteps {
    /// Reads the lines of `path` that the log got between `from` and `to`
    /// (byte offsets from `log_mark`).
    pub fn read(log: &Path, from: u64, to: u64, path: &str) -> PathSteps {
        let text = std::fs::read(log).unwrap_or_default();
        let end = (to as usize).min(text.len());
        let start = (from as usize).min(end);
        let mut out = PathSteps::default();
        for line in String::from_utf8_lossy(&text[start..end]).lines() {
            out.take(line, path);
        }
        out
    }

    fn take(&mut self, line: &str, path: &str) {
        if line.contains(": statuses reported") {
            if path == NETWORK_PATH {
                return;
            }
            if let Some(ms) = field(line, "rpc_ms").and_then(|v| v.parse().ok()) {
                self.reports.push(ms);
            }
            return;
        }
        if !line.contains(&format!(": {path} ")) {
            return;
        }
        if let Some(total) = field(line, "total_ms").and_then(|v| v.parse().ok()) {
            self.totals.push(total);
        }
        for step in field(line, "steps").unwrap_or_default().split(',') {
            let Some((name, ms)) = step.split_once(':') else {
                continue;
            };
            let Ok(ms) = ms.parse::<u64>() else { continue };
            match self.steps.iter_mut().find(|(n, _)| n == name) {
                Some((_, v)) => v.push(ms),
                None => self.steps.push((name.to_string(), vec![ms])),
            }
        }
    }

    /// Tasks seen.
    pub fn tasks(&self) -> usize {
        self.totals.len()
    }

    /// The medians, merged with `other`'s (rounds of the same phase).
    pub fn merge(&mut self, other: PathSteps) {
        for (name, ms) in other.steps {
            match self.steps.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.extend(ms),
                None => self.steps.push((name, ms)),
            }
        }
        self.totals.extend(other.totals);
        self.reports.extend(other.reports);
    }

    /// `image 0, rootfs 12, ...; per task 150; report 30` (medians in ms).
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .steps
            .iter()
            .map(|(name, ms)| format!("{name} {}", median(ms)))
            .collect();
        if !self.reports.is_empty() {
            parts.push(format!("report {}", median(&self.reports)));
        }
        format!(
            "{} ms; task total {} ms (median of {} tasks)",
            parts.join(", "),
            median(&self.totals),
            self.totals.len()
        )
    }
}

/// The value of `name=` in a tracing fmt line (unquoted or quoted).
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=");
    let at = line.find(&key)? + key.len();
    let rest = &line[at..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next(),
        None => rest.split_whitespace().next(),
    }
}

fn median(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_agents_step_lines_of_one_path() {
        let mut s = PathSteps::default();
        for line in [
            "2026-12-04T00:38:04Z DEBUG berth_agent::supervisor::steps: start path task=\"a\" total_ms=150 steps=record:9,image:1,rootfs:12,network:40",
            "2026-12-04T00:38:04Z DEBUG berth_agent::supervisor::steps: start path task=\"b\" total_ms=90 steps=record:7,image:3,rootfs:10,network:20",
            "2026-12-04T00:38:04Z DEBUG berth_agent::supervisor::steps: start path task=\"c\" total_ms=100 steps=record:8,image:2,rootfs:11,network:30",
            "2026-12-04T00:38:05Z DEBUG berth_agent::supervisor::steps: stop path task=\"a\" total_ms=10 steps=signal:5",
            "2026-12-04T00:38:05Z DEBUG berth_agent::supervisor::steps: statuses reported updates=3 rpc_ms=4 waited_ms=25",
        ] {
            s.take(line, "start path");
        }
        assert_eq!(s.tasks(), 3);
        assert_eq!(
            s.summary(),
            "record 8, image 2, rootfs 11, network 30, report 4 ms; task total 100 ms (median of 3 tasks)"
        );
    }
}
