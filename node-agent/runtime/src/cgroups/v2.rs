//! cgroup v2 (unified): one directory; controllers enabled in the ancestors.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::fs;
use super::{CpuStats, CpuUsage, MemoryEntry, MemoryStats, PidsStats, Result, Stats};

#[derive(Debug, Clone)]
pub struct V2 {
    pub path: PathBuf,
}

const ROOT: &str = "/sys/fs/cgroup";

impl V2 {
    pub fn new(path: PathBuf) -> V2 {
        V2 { path }
    }

    pub fn create(&self, resources: Option<&LinuxResources>) -> Result<()> {
        fs::create_dirs(&self.path)?;
        self.enable_controllers()?;
        if let Some(r) = resources {
            self.apply(r)?;
        }
        Ok(())
    }

    /// Writes `+cpu +memory ...` into subtree_control from the root down to our parent.
    fn enable_controllers(&self) -> Result<()> {
        let root = Path::new(ROOT);
        let Ok(rel) = self.path.strip_prefix(root) else {
            return Ok(());
        };
        let available = fs::read(&root.join("cgroup.controllers")).unwrap_or_default();
        let wanted: Vec<String> = ["cpu", "cpuset", "memory", "pids", "io", "hugetlb"]
            .iter()
            .filter(|c| available.split_whitespace().any(|a| a == **c))
            .map(|c| format!("+{c}"))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let mut dir = root.to_path_buf();
        let comps: Vec<_> = rel.components().collect();
        for comp in &comps[..comps.len().saturating_sub(1)] {
            fs::write(&dir.join("cgroup.subtree_control"), &wanted.join(" "))?;
            dir.push(comp);
        }
        fs::write(&dir.join("cgroup.subtree_control"), &wanted.join(" "))
    }

    fn apply(&self, r: &LinuxResources) -> Result<()> {
        let d = &self.path;
        if let Some(mem) = r.memory() {
            if let Some(limit) = mem.limit() {
                fs::write(&d.join("memory.max"), &max_or(limit))?;
                // spec swap is memory+swap; v2 swap.max is swap alone.
                let swap = match mem.swap() {
                    Some(s) if s < 0 => "max".to_string(),
                    Some(s) => (s - limit).max(0).to_string(),
                    None => "0".to_string(),
                };
                let swap_file = d.join("memory.swap.max");
                if swap_file.exists() {
                    fs::write(&swap_file, &swap)?;
                }
            }
            if let Some(res) = mem.reservation() {
                fs::write(&d.join("memory.low"), &max_or(res))?;
            }
        }
        if let Some(cpu) = r.cpu() {
            if let Some(shares) = cpu.shares().filter(|s| *s > 0) {
                fs::write(
                    &d.join("cpu.weight"),
                    &super::shares_to_weight(shares).to_string(),
                )?;
            }
            if cpu.quota().is_some() || cpu.period().is_some() {
                let quota = match cpu.quota() {
                    Some(q) if q > 0 => q.to_string(),
                    _ => "max".to_string(),
                };
                let period = cpu.period().unwrap_or(100_000);
                fs::write(&d.join("cpu.max"), &format!("{quota} {period}"))?;
            }
            if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
                fs::write(&d.join("cpuset.cpus"), cpus)?;
            }
            if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
                fs::write(&d.join("cpuset.mems"), mems)?;
            }
        }
        if let Some(pids) = r.pids() {
            let value = if pids.limit() > 0 {
                pids.limit().to_string()
            } else {
                "max".to_string()
            };
            fs::write(&d.join("pids.max"), &value)?;
        }
        Ok(())
    }

    pub fn oom_kills(&self) -> u64 {
        fs::keyed(&self.path.join("memory.events"), "oom_kill")
    }

    pub fn stats(&self) -> Stats {
        let d = &self.path;
        let limit = |file: &str| {
            fs::read(&d.join(file))
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(u64::MAX)
        };
        Stats {
            cpu: CpuStats {
                usage: CpuUsage {
                    total: fs::keyed(&d.join("cpu.stat"), "usage_usec") * 1000,
                },
            },
            memory: MemoryStats {
                usage: MemoryEntry {
                    usage: fs::read_u64(&d.join("memory.current")),
                    max: fs::read_u64(&d.join("memory.peak")),
                    limit: limit("memory.max"),
                    failcnt: fs::keyed(&d.join("memory.events"), "max"),
                },
                oom_kills: self.oom_kills(),
            },
            pids: PidsStats {
                current: fs::read_u64(&d.join("pids.current")),
                limit: limit("pids.max"),
            },
        }
    }

    pub fn kill_all(&self) -> Result<()> {
        if !self.path.exists() {
            return Ok(());
        }
        let kill = self.path.join("cgroup.kill");
        if kill.exists() {
            let _ = fs::write(&kill, "1");
        }
        fs::kill_procs(&self.path)
    }
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    use super::*;

    #[test]
    fn limits_are_written_in_v2_syntax() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let files = [
            "memory.max",
            "memory.swap.max",
            "cpu.max",
            "cpu.weight",
            "pids.max",
            "cpuset.cpus",
        ];
        for f in files {
            std::fs::write(tmp.path().join(f), "").expect("file");
        }
        let resources = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64i64 << 20)
                    .swap(96i64 << 20)
                    .build()
                    .expect("mem"),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(50_000i64)
                    .period(100_000u64)
                    .shares(1024u64)
                    .cpus("0-1")
                    .build()
                    .expect("cpu"),
            )
            .pids(
                LinuxPidsBuilder::default()
                    .limit(0i64)
                    .build()
                    .expect("pids"),
            )
            .build()
            .expect("resources");
        V2::new(tmp.path().to_path_buf())
            .apply(&resources)
            .expect("apply");
        let read = |f: &str| std::fs::read_to_string(tmp.path().join(f)).expect("read");
        assert_eq!(read("memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("memory.swap.max"), (32u64 << 20).to_string());
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("cpu.weight"), "39");
        assert_eq!(read("pids.max"), "max");
        assert_eq!(read("cpuset.cpus"), "0-1");
    }
}
