//! state, list, ps, events --stats: what they report, as data.

use std::path::Path;

use super::CommandError;
use crate::cgroups::{Cgroup, Stats};
use crate::state::{self, Dir, Status};

/// The OCI state of one container (with berth's `created` and, once it
/// stopped, `exit`) as JSON.
pub fn state(root: &Path, id: &str) -> Result<serde_json::Value, CommandError> {
    let dir = Dir::new(root, id)?;
    let record = dir.load()?;
    let status = dir.status(&record);
    let exit = if status == Status::Stopped {
        dir.load_exit()
    } else {
        None
    };
    let state = record.oci_state(status, exit);
    Ok(serde_json::to_value(&state).unwrap_or_default())
}

/// The states of every readable container under `root`, by id.
pub fn list(root: &Path) -> Result<Vec<serde_json::Value>, CommandError> {
    let mut states = Vec::new();
    for id in state::list(root)? {
        if let Ok(v) = state(root, &id) {
            states.push(v);
        }
    }
    Ok(states)
}

fn cgroup_of(root: &Path, id: &str) -> Result<Cgroup, CommandError> {
    let dir = Dir::new(root, id)?;
    let record = dir.load()?;
    Cgroup::from_paths(&record.cgroup_paths).map_err(|source| CommandError::Cgroup {
        id: id.into(),
        source,
    })
}

/// Host pids of the container's processes.
pub fn ps(root: &Path, id: &str) -> Result<Vec<i32>, CommandError> {
    Ok(cgroup_of(root, id)?.pids())
}

/// The container's resource usage.
pub fn stats(root: &Path, id: &str) -> Result<Stats, CommandError> {
    Ok(cgroup_of(root, id)?.stats())
}
