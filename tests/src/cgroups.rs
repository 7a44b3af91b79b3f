//! Cgroups a test makes: one top-level name per test (`berth-test-PID-N`) in every
//! mounted hierarchy, removed at the end (processes inside killed first), and
//! leftovers of crashed earlier runs removed by prefix when their owner is dead.
//!
//! Cgroups are not covered by the test's namespaces, so they need this explicit
//! cleanup; the runtime under test creates its cgroups below the test's name.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Prefix of every cgroup (and temporary directory) a test run owns.
pub const TEST_PREFIX: &str = "berth-test-";

/// Mount points of all cgroup hierarchies (v1 controllers and the v2 unified one).
pub fn hierarchies() -> Vec<PathBuf> {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut roots = Vec::new();
    for line in mountinfo.lines() {
        // "... mount_point options - fstype source super_options"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = right.split_whitespace().next().unwrap_or("");
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        if let Some(mount_point) = left.split_whitespace().nth(4) {
            let path = PathBuf::from(mount_point);
            if !roots.contains(&path) {
                roots.push(path);
            }
        }
    }
    roots
}

/// Removes `name` (a top-level cgroup) from every hierarchy.
pub fn remove_everywhere(name: &str) -> Result<()> {
    let mut failures = Vec::new();
    for root in hierarchies() {
        let dir = root.join(name);
        if dir.exists()
            && let Err(err) = remove_tree(&dir)
        {
            failures.push(format!("{}: {err:#}", dir.display()));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("failed to remove test cgroups: {}", failures.join("; "))
    }
}

/// Removes the cgroups of earlier runs whose test process is gone.
pub fn remove_stale() {
    for root in hierarchies() {
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if owner_is_dead(&name) {
                let _ = remove_tree(&entry.path());
            }
        }
    }
}

/// True for `berth-test-PID-...` names whose PID no longer runs.
pub fn owner_is_dead(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(TEST_PREFIX) else {
        return false;
    };
    let pid = rest.split('-').next().unwrap_or("");
    match pid.parse::<u32>() {
        Ok(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => false,
    }
}

/// Kills every process in the tree, then removes the directories bottom-up.
fn remove_tree(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = procs_in_tree(dir);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: kill with plain integers.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("processes in {} survive SIGKILL", dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    rmdir_tree(dir)
}

fn procs_in_tree(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for child in subdirs(dir) {
        pids.extend(procs_in_tree(&child));
    }
    pids
}

fn rmdir_tree(dir: &Path) -> Result<()> {
    for child in subdirs(dir) {
        rmdir_tree(&child)?;
    }
    // An exiting process can hold the cgroup busy for a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) if Instant::now() > deadline => {
                return Err(err).with_context(|| format!("failed to remove {}", dir.display()));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}
