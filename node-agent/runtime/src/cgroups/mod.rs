//! cgroups, v1 and v2 (unified), detected at run time. A hybrid host (v1
//! controllers plus an empty v2 hierarchy) is managed as v1, with the v2 directory
//! created and joined too so /proc/self/cgroup looks as it does under runc.

mod fs;
pub mod v1;
pub mod v2;

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read the cgroup mounts from /proc/self/mountinfo: {0}")]
    Mounts(std::io::Error),
    #[error("no cgroup hierarchy is mounted")]
    NoHierarchy,
    #[error("invalid cgroups path {0:?}")]
    BadPath(String),
    #[error("failed to {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroup {} still has processes after SIGKILL", .0.display())]
    Busy(PathBuf),
    #[error("cgroup v1: the {0} controller is needed for this spec but not mounted")]
    NoController(&'static str),
}

pub type Result<T> = std::result::Result<T, CgroupError>;

/// Resource usage, in the shape of runc's `events --stats` data.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
}

#[derive(Debug, Default, Serialize)]
pub struct CpuStats {
    pub usage: CpuUsage,
}

#[derive(Debug, Default, Serialize)]
pub struct CpuUsage {
    /// Nanoseconds of CPU time.
    pub total: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct MemoryStats {
    pub usage: MemoryEntry,
    pub oom_kills: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct MemoryEntry {
    pub usage: u64,
    pub max: u64,
    pub limit: u64,
    pub failcnt: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct PidsStats {
    pub current: u64,
    pub limit: u64,
}

/// What [`Cgroup::usage`] reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Nanoseconds of CPU time.
    pub cpu_ns: u64,
    pub memory_bytes: u64,
    /// Processes and threads.
    pub pids: u64,
}

/// The cgroup of one container.
#[derive(Debug, Clone)]
pub enum Cgroup {
    V1(v1::V1),
    V2(v2::V2),
}

/// The spec's cgroupsPath, or `/berth/<id>`, as a relative path below each root.
pub fn relative_path(spec_path: Option<&Path>, id: &str) -> Result<PathBuf> {
    let raw = match spec_path {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("berth").join(id),
    };
    let mut rel = PathBuf::new();
    for comp in raw.components() {
        match comp {
            std::path::Component::RootDir | std::path::Component::CurDir => {}
            std::path::Component::Normal(c) => rel.push(c),
            _ => return Err(CgroupError::BadPath(raw.display().to_string())),
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(CgroupError::BadPath(raw.display().to_string()));
    }
    Ok(rel)
}

impl Cgroup {
    /// Detects the layout; does not touch the filesystem beyond reading mounts.
    pub fn for_container(rel: &Path) -> Result<Cgroup> {
        let mounts = fs::mounts()?;
        if let Some(unified) = mounts
            .iter()
            .find(|m| m.v2 && m.point == Path::new("/sys/fs/cgroup"))
        {
            return Ok(Cgroup::V2(v2::V2::new(unified.point.join(rel))));
        }
        let v1 = v1::V1::new(&mounts, rel);
        if v1.is_empty() {
            return Err(CgroupError::NoHierarchy);
        }
        Ok(Cgroup::V1(v1))
    }

    /// Rebuilds the handle from the directories recorded in the state.
    pub fn from_paths(paths: &[PathBuf]) -> Result<Cgroup> {
        let mounts = fs::mounts()?;
        let v2_root = mounts
            .iter()
            .find(|m| m.v2 && m.point == Path::new("/sys/fs/cgroup"));
        match (v2_root, paths) {
            (Some(_), [only]) => Ok(Cgroup::V2(v2::V2::new(only.clone()))),
            _ => Ok(Cgroup::V1(v1::V1::from_paths(&mounts, paths))),
        }
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        match self {
            Cgroup::V1(c) => c.paths(),
            Cgroup::V2(c) => vec![c.path.clone()],
        }
    }

    /// Makes the directories and writes the limits.
    pub fn create(&self, resources: Option<&LinuxResources>) -> Result<()> {
        match self {
            Cgroup::V1(c) => c.create(resources),
            Cgroup::V2(c) => c.create(resources),
        }
    }

    /// Moves a process into the cgroup.
    pub fn join(&self, pid: i32) -> Result<()> {
        let pid = pid.to_string();
        for path in self.paths() {
            fs::write(&path.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    /// Opens every cgroup.procs for writing, for a process that will join after it
    /// has left the host's mount namespace (exec).
    pub fn open_procs(&self) -> Result<Vec<std::fs::File>> {
        self.paths()
            .iter()
            .map(|p| {
                let path = p.join("cgroup.procs");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|source| CgroupError::Io {
                        what: "open",
                        path,
                        source,
                    })
            })
            .collect()
    }

    /// Host pids of every process in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let dir = match self {
            Cgroup::V1(c) => c.main_path(),
            Cgroup::V2(c) => Some(c.path.clone()),
        };
        dir.map(|d| fs::procs(&d)).unwrap_or_default()
    }

    /// Times the OOM killer killed a process in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        match self {
            Cgroup::V1(c) => c.oom_kills(),
            Cgroup::V2(c) => c.oom_kills(),
        }
    }

    pub fn stats(&self) -> Stats {
        match self {
            Cgroup::V1(c) => c.stats(),
            Cgroup::V2(c) => c.stats(),
        }
    }

    /// CPU time, memory in use and pids only: what a metrics scrape reads
    /// of every running container, so on cgroup v2 three files instead of
    /// the whole of [`stats`](Self::stats).
    pub fn usage(&self) -> Usage {
        match self {
            Cgroup::V2(c) => Usage {
                cpu_ns: fs::keyed(&c.path.join("cpu.stat"), "usage_usec") * 1000,
                memory_bytes: fs::read_u64(&c.path.join("memory.current")),
                pids: fs::read_u64(&c.path.join("pids.current")),
            },
            Cgroup::V1(c) => {
                let stats = c.stats();
                Usage {
                    cpu_ns: stats.cpu.usage.total,
                    memory_bytes: stats.memory.usage.usage,
                    pids: stats.pids.current,
                }
            }
        }
    }

    /// SIGKILLs every process, until none is left.
    pub fn kill_all(&self) -> Result<()> {
        match self {
            Cgroup::V1(c) => c.kill_all(),
            Cgroup::V2(c) => c.kill_all(),
        }
    }

    /// Kills what is left and removes the directories; fine if they are gone.
    pub fn destroy(&self) -> Result<()> {
        self.kill_all()?;
        for path in self.paths() {
            fs::remove_dir(&path)?;
        }
        Ok(())
    }
}

/// Prepares the parent cgroup `rel` (relative to the hierarchy roots) of
/// containers that will be created concurrently: on a host with a v1 cpuset
/// hierarchy, makes it with the cpus and mems of its own parent, so that
/// runtimes creating several containers below it at once do not race on an
/// empty cpuset (a process cannot join one). Nothing to do elsewhere.
pub fn prepare_parent(rel: &Path) -> Result<()> {
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    let mounts = fs::mounts()?;
    let Some(cpuset) = mounts
        .iter()
        .find(|m| !m.v2 && m.controllers.iter().any(|c| c == "cpuset"))
    else {
        return Ok(());
    };
    let dir = cpuset.point.join(rel);
    fs::create_dirs(&dir)?;
    v1::inherit_cpuset(&cpuset.point, &dir)
}

/// OOM kills recorded for the cgroup at `rel` (relative to the hierarchy
/// roots), v1 or v2; 0 if it has no memory controller, is gone or unreadable.
pub fn oom_kills_at(rel: &Path) -> u64 {
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    Cgroup::for_container(rel).map_or(0, |c| c.oom_kills())
}

/// CFS shares (v1, 2..262144) to cpu.weight (v2, 1..10000), as runc converts them.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// A device rule in the v1 devices.allow/deny syntax: `c 1:3 rwm`.
pub fn v1_device_rule(rule: &oci_spec::runtime::LinuxDeviceCgroup) -> String {
    let kind = match rule.typ() {
        Some(oci_spec::runtime::LinuxDeviceType::C) => "c",
        Some(oci_spec::runtime::LinuxDeviceType::B) => "b",
        _ => "a",
    };
    let num = |n: Option<i64>| n.map(|v| v.to_string()).unwrap_or_else(|| "*".into());
    let access = rule.access().clone().unwrap_or_else(|| "rwm".into());
    format!(
        "{kind} {}:{} {access}",
        num(rule.major()),
        num(rule.minor())
    )
}

/// Device access every container keeps: mknod of anything, and the standard nodes
/// (null, zero, full, random, urandom, tty, ptmx, pts, tun).
pub const DEFAULT_DEVICE_RULES: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

/// Per hierarchy of a v1 (or hybrid) host: how the container's cgroup mount shows it.
pub fn v1_views(cgroup: &Cgroup) -> Vec<crate::rootfs::CgroupView> {
    let Cgroup::V1(v1) = cgroup else {
        return Vec::new();
    };
    v1.views()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_reads_cpu_memory_and_pids_of_a_v2_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("memory.current"), "4096\n").unwrap();
        std::fs::write(dir.path().join("pids.current"), "3\n").unwrap();
        let cgroup = Cgroup::V2(v2::V2::new(dir.path().to_path_buf()));
        let usage = cgroup.usage();
        assert_eq!(
            usage,
            Usage {
                cpu_ns: 1_500_000,
                memory_bytes: 4096,
                pids: 3
            }
        );
        // The same figures as the full stats.
        let stats = cgroup.stats();
        assert_eq!(stats.cpu.usage.total, usage.cpu_ns);
        assert_eq!(stats.memory.usage.usage, usage.memory_bytes);
        assert_eq!(stats.pids.current, usage.pids);
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_path(Some(Path::new("/a/b")), "x").expect("ok"),
            PathBuf::from("a/b")
        );
        assert_eq!(
            relative_path(None, "x").expect("ok"),
            PathBuf::from("berth/x")
        );
        assert!(relative_path(Some(Path::new("/a/../../etc")), "x").is_err());
        assert!(relative_path(Some(Path::new("/")), "x").is_err());
    }

    #[test]
    fn weight_conversion() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn hierarchies_are_found() {
        let mounts = fs::mounts().expect("mountinfo");
        assert!(!mounts.is_empty());
    }
}
