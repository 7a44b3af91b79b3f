//! The containers' parent cgroup. On cgroup v1 a new cpuset cgroup starts with
//! no cpus and no mems, and a process cannot join it (ENOSPC). When several
//! containers are created at once below a parent that does not exist yet, the
//! runtimes race on making it; so the supervisor makes the parent, with the
//! cpus and mems of its own parent, before it starts anything.

use std::path::Path;

use super::error::{Result, SupervisorError};

const CPUSET: &str = "/sys/fs/cgroup/cpuset";

/// Creates `parent` (a path below the hierarchy root) in the v1 cpuset
/// hierarchy, if this host has one, with cpus and mems inherited.
pub fn prepare_parent(parent: &str) -> Result<()> {
    let root = Path::new(CPUSET);
    if !root.join("cpuset.cpus").exists() {
        return Ok(());
    }
    let mut dir = root.to_path_buf();
    for part in parent.split('/').filter(|p| !p.is_empty()) {
        let up = dir.clone();
        dir.push(part);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(SupervisorError::io("create", &dir, e)),
        }
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let mine = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            if mine.trim().is_empty() {
                let theirs = std::fs::read_to_string(up.join(file))
                    .map_err(|e| SupervisorError::io("read", up.join(file), e))?;
                std::fs::write(dir.join(file), theirs.trim())
                    .map_err(|e| SupervisorError::io("write", dir.join(file), e))?;
            }
        }
    }
    Ok(())
}
