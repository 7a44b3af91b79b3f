//! Small file helpers shared by the v1 and v2 code.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{CgroupError, Result};

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone)]
pub struct Mount {
    pub point: PathBuf,
    pub v2: bool,
    /// v1 controllers (and `name=...`) in the mount options.
    pub controllers: Vec<String>,
}

pub fn mounts() -> Result<Vec<Mount>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(CgroupError::Mounts)?;
    let mut out: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split_whitespace();
        let fstype = r.next().unwrap_or("");
        let super_opts = r.nth(1).unwrap_or("");
        let mut l = left.split_whitespace();
        let root = l.nth(3).unwrap_or("");
        let Some(point) = l.next() else { continue };
        if root != "/" {
            continue;
        }
        let point = PathBuf::from(point);
        if out.iter().any(|m| m.point == point) {
            continue;
        }
        match fstype {
            "cgroup2" => out.push(Mount {
                point,
                v2: true,
                controllers: Vec::new(),
            }),
            "cgroup" => out.push(Mount {
                point,
                v2: false,
                controllers: super_opts
                    .split(',')
                    .filter(|o| {
                        !matches!(*o, "rw" | "ro" | "relatime" | "noatime" | "clone_children")
                            && !o.starts_with("release_agent")
                    })
                    .map(str::to_string)
                    .collect(),
            }),
            _ => {}
        }
    }
    Ok(out)
}

pub fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|source| CgroupError::Io {
        what: "write",
        path: path.to_path_buf(),
        source,
    })
}

pub fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

pub fn read_u64(path: &Path) -> u64 {
    read(path).and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// A `key value` line of a flat-keyed file (memory.events, cpu.stat, oom_control).
pub fn keyed(path: &Path, key: &str) -> u64 {
    read(path)
        .and_then(|text| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok()).flatten()
            })
        })
        .unwrap_or(0)
}

pub fn procs(dir: &Path) -> Vec<i32> {
    read(&dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Makes `dir` and its missing parents.
pub fn create_dirs(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Io {
            what: "create",
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// rmdir, retrying while an exiting process still holds the cgroup.
pub fn remove_dir(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) if Instant::now() > deadline => {
                return Err(CgroupError::Io {
                    what: "remove",
                    path: dir.to_path_buf(),
                    source,
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// SIGKILLs the processes in `dir` until it is empty.
pub fn kill_procs(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = procs(dir);
        if pids.is_empty() {
            return Ok(());
        }
        for pid in pids {
            // SAFETY: kill(2) with plain integers.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        if Instant::now() > deadline {
            return Err(CgroupError::Busy(dir.to_path_buf()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
