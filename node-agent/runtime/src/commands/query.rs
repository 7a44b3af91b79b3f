//! state, list, ps, events --stats.

use std::path::Path;

use super::CommandError;
use crate::cgroups::Cgroup;
use crate::state::{self, Dir, OciState, Status};

fn oci_state_json(dir: &Dir) -> Result<serde_json::Value, CommandError> {
    let record = dir.load()?;
    let status = dir.status(&record);
    let exit = if status == Status::Stopped {
        dir.load_exit()
    } else {
        None
    };
    let state = OciState {
        oci_version: "1.0.2",
        id: &record.id,
        status,
        pid: if status == Status::Stopped {
            0
        } else {
            record.pid
        },
        bundle: &record.bundle,
        annotations: &record.annotations,
        rootfs: &record.rootfs,
        created: &record.created,
        exit,
    };
    Ok(serde_json::to_value(&state).unwrap_or_default())
}

pub fn state(root: &Path, id: &str) -> Result<(), CommandError> {
    let dir = Dir::new(root, id)?;
    let value = oci_state_json(&dir)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    );
    Ok(())
}

pub fn list(root: &Path, format: &str, quiet: bool) -> Result<(), CommandError> {
    let mut states = Vec::new();
    for id in state::list(root)? {
        let dir = Dir::new(root, &id)?;
        if let Ok(v) = oci_state_json(&dir) {
            states.push(v);
        }
    }
    match format {
        _ if quiet => {
            for s in &states {
                println!("{}", s["id"].as_str().unwrap_or(""));
            }
        }
        "json" => println!("{}", serde_json::Value::Array(states)),
        "table" => {
            println!(
                "{:<24} {:<8} {:<8} {:<40} CREATED",
                "ID", "PID", "STATUS", "BUNDLE"
            );
            for s in &states {
                println!(
                    "{:<24} {:<8} {:<8} {:<40} {}",
                    s["id"].as_str().unwrap_or(""),
                    s["pid"],
                    s["status"].as_str().unwrap_or(""),
                    s["bundle"].as_str().unwrap_or(""),
                    s["created"].as_str().unwrap_or(""),
                );
            }
        }
        other => return Err(CommandError::BadFormat(other.into())),
    }
    Ok(())
}

fn cgroup_of(root: &Path, id: &str) -> Result<Cgroup, CommandError> {
    let dir = Dir::new(root, id)?;
    let record = dir.load()?;
    Cgroup::from_paths(&record.cgroup_paths).map_err(|source| CommandError::Cgroup {
        id: id.into(),
        source,
    })
}

pub fn ps(root: &Path, id: &str, format: &str) -> Result<(), CommandError> {
    let pids = cgroup_of(root, id)?.pids();
    match format {
        "json" => println!("{}", serde_json::to_string(&pids).unwrap_or_default()),
        "table" => {
            println!("{:<8} CMD", "PID");
            for pid in pids {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                println!("{pid:<8} {}", cmd.trim_end());
            }
        }
        other => return Err(CommandError::BadFormat(other.into())),
    }
    Ok(())
}

pub fn stats(root: &Path, id: &str) -> Result<(), CommandError> {
    let stats = cgroup_of(root, id)?.stats();
    let event = serde_json::json!({ "type": "stats", "id": id, "data": stats });
    println!("{event}");
    Ok(())
}
