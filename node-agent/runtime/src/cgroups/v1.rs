//! cgroup v1: one directory per mounted hierarchy (plus the v2 one on a hybrid
//! host, joined but not limited).

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::fs::{self, Mount};
use super::{CgroupError, CpuStats, CpuUsage, MemoryEntry, MemoryStats, PidsStats, Result, Stats};

#[derive(Debug, Clone)]
struct Hierarchy {
    /// Controllers of the hierarchy ("cpu", "memory", "name=systemd"; empty for v2).
    controllers: Vec<String>,
    path: PathBuf,
    /// Where the hierarchy is mounted on the host.
    mount: PathBuf,
}

#[derive(Debug, Clone)]
pub struct V1 {
    hierarchies: Vec<Hierarchy>,
}

impl V1 {
    pub fn new(mounts: &[Mount], rel: &Path) -> V1 {
        V1 {
            hierarchies: mounts
                .iter()
                .map(|m| Hierarchy {
                    controllers: m.controllers.clone(),
                    path: m.point.join(rel),
                    mount: m.point.clone(),
                })
                .collect(),
        }
    }

    pub fn from_paths(mounts: &[Mount], paths: &[PathBuf]) -> V1 {
        let hierarchies = paths
            .iter()
            .map(|p| {
                let mount = mounts
                    .iter()
                    .filter(|m| p.starts_with(&m.point))
                    .max_by_key(|m| m.point.as_os_str().len());
                Hierarchy {
                    controllers: mount.map(|m| m.controllers.clone()).unwrap_or_default(),
                    path: p.clone(),
                    mount: mount.map(|m| m.point.clone()).unwrap_or_default(),
                }
            })
            .collect();
        V1 { hierarchies }
    }

    pub fn is_empty(&self) -> bool {
        self.hierarchies.is_empty()
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.hierarchies.iter().map(|h| h.path.clone()).collect()
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        self.hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| h.path.as_path())
    }

    fn need(&self, controller: &'static str) -> Result<&Path> {
        self.dir(controller)
            .ok_or(CgroupError::NoController(controller))
    }

    /// The directory whose cgroup.procs lists the container's processes.
    pub fn main_path(&self) -> Option<PathBuf> {
        ["pids", "memory", "cpu", "freezer"]
            .iter()
            .find_map(|c| self.dir(c))
            .map(Path::to_path_buf)
            .or_else(|| self.hierarchies.first().map(|h| h.path.clone()))
    }

    pub fn create(&self, resources: Option<&LinuxResources>) -> Result<()> {
        for h in &self.hierarchies {
            fs::create_dirs(&h.path)?;
            if h.controllers.iter().any(|c| c == "cpuset") {
                inherit_cpuset(&h.mount, &h.path)?;
            }
        }
        if let Some(r) = resources {
            self.apply(r)?;
        }
        Ok(())
    }

    fn apply(&self, r: &LinuxResources) -> Result<()> {
        if let Some(mem) = r.memory() {
            if let Some(limit) = mem.limit() {
                let dir = self.need("memory")?;
                fs::write(&dir.join("memory.limit_in_bytes"), &limit.to_string())?;
                // Without a swap setting, the container gets no swap: the limit
                // is the limit (runc leaves memsw unset; the spec allows either).
                let swap = mem.swap().unwrap_or(limit);
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    fs::write(&memsw, &swap.to_string())?;
                }
            }
            if let Some(res) = mem.reservation() {
                let dir = self.need("memory")?;
                fs::write(&dir.join("memory.soft_limit_in_bytes"), &res.to_string())?;
            }
        }
        if let Some(cpu) = r.cpu() {
            if let Some(shares) = cpu.shares() {
                fs::write(&self.need("cpu")?.join("cpu.shares"), &shares.to_string())?;
            }
            if let Some(period) = cpu.period() {
                fs::write(
                    &self.need("cpu")?.join("cpu.cfs_period_us"),
                    &period.to_string(),
                )?;
            }
            if let Some(quota) = cpu.quota() {
                fs::write(
                    &self.need("cpu")?.join("cpu.cfs_quota_us"),
                    &quota.to_string(),
                )?;
            }
            if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
                fs::write(&self.need("cpuset")?.join("cpuset.cpus"), cpus)?;
            }
            if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
                fs::write(&self.need("cpuset")?.join("cpuset.mems"), mems)?;
            }
        }
        if let Some(pids) = r.pids() {
            let limit = pids.limit();
            let value = if limit > 0 {
                limit.to_string()
            } else {
                "max".to_string()
            };
            fs::write(&self.need("pids")?.join("pids.max"), &value)?;
        }
        if let (Some(devices), Some(dir)) = (r.devices(), self.dir("devices")) {
            for rule in devices {
                let file = if rule.allow() {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                fs::write(&dir.join(file), &super::v1_device_rule(rule))?;
            }
            // The devices every container gets (runc's list), after the spec's rules.
            for rule in super::DEFAULT_DEVICE_RULES {
                fs::write(&dir.join("devices.allow"), rule)?;
            }
        }
        Ok(())
    }

    pub fn oom_kills(&self) -> u64 {
        self.dir("memory")
            .map(|d| fs::keyed(&d.join("memory.oom_control"), "oom_kill"))
            .unwrap_or(0)
    }

    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        if let Some(d) = self.dir("cpuacct") {
            stats.cpu = CpuStats {
                usage: CpuUsage {
                    total: fs::read_u64(&d.join("cpuacct.usage")),
                },
            };
        }
        if let Some(d) = self.dir("memory") {
            stats.memory = MemoryStats {
                usage: MemoryEntry {
                    usage: fs::read_u64(&d.join("memory.usage_in_bytes")),
                    max: fs::read_u64(&d.join("memory.max_usage_in_bytes")),
                    limit: fs::read_u64(&d.join("memory.limit_in_bytes")),
                    failcnt: fs::read_u64(&d.join("memory.failcnt")),
                },
                oom_kills: self.oom_kills(),
            };
        }
        if let Some(d) = self.dir("pids") {
            let limit = fs::read(&d.join("pids.max")).unwrap_or_default();
            stats.pids = PidsStats {
                current: fs::read_u64(&d.join("pids.current")),
                limit: limit.trim().parse().unwrap_or(0),
            };
        }
        stats
    }

    /// Freezes the cgroup (so a fork bomb cannot outrun us), kills, thaws.
    pub fn kill_all(&self) -> Result<()> {
        let Some(main) = self.main_path() else {
            return Ok(());
        };
        if !main.exists() {
            return Ok(());
        }
        let freezer = self.dir("freezer").map(|d| d.join("freezer.state"));
        if let Some(state) = freezer.as_deref().filter(|s| s.exists()) {
            let _ = fs::write(state, "FROZEN");
            for pid in fs::procs(&main) {
                // SAFETY: kill(2) with plain integers.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            let _ = fs::write(state, "THAWED");
        }
        for h in &self.hierarchies {
            if h.path.exists() {
                fs::kill_procs(&h.path)?;
            }
        }
        Ok(())
    }
}

/// A new cpuset cgroup starts with empty cpus and mems, and no process can
/// join it (ENOSPC): gives every directory from below `mount` down to `dir`
/// that has none its parent's. Existing directories are filled too: a
/// concurrent creator (another container created at the same moment) may have
/// made one and not filled it yet.
pub(super) fn inherit_cpuset(mount: &Path, dir: &Path) -> Result<()> {
    let Ok(rel) = dir.strip_prefix(mount) else {
        return Ok(());
    };
    let mut parent = mount.to_path_buf();
    for part in rel.components() {
        let here = parent.join(part);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let mine = fs::read(&here.join(file)).unwrap_or_default();
            if mine.trim().is_empty() {
                let theirs = fs::read(&parent.join(file)).unwrap_or_default();
                fs::write(&here.join(file), theirs.trim())?;
            }
        }
        parent = here;
    }
    Ok(())
}

impl V1 {
    /// One entry per hierarchy, named like its host mount point.
    pub fn views(&self) -> Vec<crate::rootfs::CgroupView> {
        self.hierarchies
            .iter()
            // A hybrid host's empty v2 hierarchy is joined but not shown (as runc).
            .filter(|h| !h.controllers.is_empty())
            .filter_map(|h| {
                let name = h.mount.file_name()?.to_string_lossy().into_owned();
                let v2 = h.controllers.is_empty();
                Some(crate::rootfs::CgroupView {
                    name,
                    fstype: if v2 { "cgroup2" } else { "cgroup" },
                    data: h.controllers.join(","),
                    host_dir: h.path.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder};

    use super::*;

    #[test]
    fn cpusets_are_inherited_down_to_the_container() {
        let mount = tempfile::tempdir().expect("tempdir");
        let m = mount.path();
        std::fs::write(m.join("cpuset.cpus"), "0-3\n").expect("write");
        std::fs::write(m.join("cpuset.mems"), "0\n").expect("write");
        let (parent, leaf) = (m.join("berth"), m.join("berth/c1"));
        std::fs::create_dir_all(&leaf).expect("dirs");
        // A parent someone filled already keeps its value; empty files are filled.
        std::fs::write(parent.join("cpuset.cpus"), "1").expect("write");
        std::fs::write(leaf.join("cpuset.mems"), "").expect("write");
        inherit_cpuset(m, &leaf).expect("inherit");
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        assert_eq!(read(&parent.join("cpuset.cpus")), "1");
        assert_eq!(read(&parent.join("cpuset.mems")), "0");
        assert_eq!(read(&leaf.join("cpuset.cpus")), "1");
        assert_eq!(read(&leaf.join("cpuset.mems")), "0");
    }

    #[test]
    fn limits_go_to_their_controllers() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mounts: Vec<Mount> = ["cpu", "memory"]
            .iter()
            .map(|c| Mount {
                point: tmp.path().join(c),
                v2: false,
                controllers: vec![c.to_string()],
            })
            .collect();
        let v1 = V1::new(&mounts, Path::new("ctr"));
        for (dir, files) in [
            (
                "cpu",
                &["cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.shares"][..],
            ),
            (
                "memory",
                &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"][..],
            ),
        ] {
            let d = tmp.path().join(dir).join("ctr");
            std::fs::create_dir_all(&d).expect("mkdir");
            for f in files {
                std::fs::write(d.join(f), "").expect("file");
            }
        }
        let resources = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1i64 << 20)
                    .build()
                    .expect("mem"),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(20_000i64)
                    .period(50_000u64)
                    .shares(256u64)
                    .build()
                    .expect("cpu"),
            )
            .build()
            .expect("resources");
        v1.apply(&resources).expect("apply");
        let read = |p: &str| std::fs::read_to_string(tmp.path().join(p)).expect("read");
        assert_eq!(read("cpu/ctr/cpu.cfs_quota_us"), "20000");
        assert_eq!(read("cpu/ctr/cpu.cfs_period_us"), "50000");
        assert_eq!(read("cpu/ctr/cpu.shares"), "256");
        assert_eq!(read("memory/ctr/memory.limit_in_bytes"), "1048576");
        // No swap setting: no swap.
        assert_eq!(read("memory/ctr/memory.memsw.limit_in_bytes"), "1048576");
        // A limit for a controller that is not mounted is an error, not ignored.
        let pids = LinuxResourcesBuilder::default()
            .pids(
                oci_spec::runtime::LinuxPidsBuilder::default()
                    .limit(5i64)
                    .build()
                    .expect("pids"),
            )
            .build()
            .expect("resources");
        assert!(matches!(
            v1.apply(&pids),
            Err(CgroupError::NoController("pids"))
        ));
    }
}
