//! CPU time and memory of one process, read from /proc.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("reading /proc/{pid}/{file}: {why}")]
    Read {
        pid: u32,
        file: &'static str,
        why: String,
    },
}

fn read(pid: u32, file: &'static str) -> Result<String, UsageError> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).map_err(|e| UsageError::Read {
        pid,
        file,
        why: e.to_string(),
    })
}

/// User + system CPU time the process used so far (all its threads).
pub fn cpu_time(pid: u32) -> Result<Duration, UsageError> {
    let stat = read(pid, "stat")?;
    let bad = |why: &str| UsageError::Read {
        pid,
        file: "stat",
        why: why.to_string(),
    };
    cpu_time_of(&stat, clock_ticks_per_second()).ok_or_else(|| bad("no utime/stime fields"))
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// utime + stime (fields 14 and 15) of a /proc/PID/stat line. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its
/// closing parenthesis.
fn cpu_time_of(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_millis(ticks * 1000 / ticks_per_second))
}

/// The process's peak resident memory so far (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64, UsageError> {
    status_kib(pid, "VmHWM:")
}

/// The process's resident memory now (VmRSS), in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, UsageError> {
    status_kib(pid, "VmRSS:")
}

/// A "FIELD: N kB" line of /proc/PID/status.
fn status_kib(pid: u32, field: &'static str) -> Result<u64, UsageError> {
    let status = read(pid, "status")?;
    status_field_kib(&status, field).ok_or_else(|| UsageError::Read {
        pid,
        file: "status",
        why: format!("no {field} line"),
    })
}

fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (berth (ctl) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 50 0 0 20 0 9 0 123 456 789";
        assert_eq!(cpu_time_of(stat, 100), Some(Duration::from_secs(3)));
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(cpu_time(pid).is_ok());
        assert!(peak_rss_kib(pid).expect("VmHWM") > 0);
        let status = "Name:\tx\nVmHWM:\t  12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(status_field_kib(status, "VmHWM:"), Some(12345));
    }
}
