//! The supervisor's local state: one directory per task under
//! `<data_dir>/containers/<task>/` holding `record.json` (what the agent knows
//! of the container: pid, phase, last status) and `task.pb` (the task as the
//! controller sent it). Written atomically (temp file + rename), so an agent that
//! dies at any point finds either the old or the new record.

use std::path::{Path, PathBuf};

use berth_proto::v1::{Task, TaskState, TaskStatus};
use prost::Message;
use serde::{Deserialize, Serialize};

use super::error::{Result, SupervisorError};
use super::health::HealthConfig;

/// Where the container of a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Image pull, rootfs and bundle; no container yet (or a half-made one).
    Preparing,
    /// The shim was started: a container may exist.
    Creating,
    /// The container's process was started.
    Running,
    /// The container ended and was deleted; the final status is kept.
    Done,
}

/// The last status reported, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredStatus {
    pub state: i32,
    pub message: String,
    pub error: String,
    pub container_id: String,
    pub exit_code: Option<i32>,
    pub timestamp_ms: i64,
    /// `TaskHealth`.
    #[serde(default)]
    pub health: i32,
}

impl From<&TaskStatus> for StoredStatus {
    fn from(s: &TaskStatus) -> Self {
        StoredStatus {
            state: s.state,
            message: s.message.clone(),
            error: s.error.clone(),
            container_id: s.container_id.clone(),
            exit_code: s.exit_code,
            timestamp_ms: s.timestamp_ms,
            health: s.health,
        }
    }
}

impl From<&StoredStatus> for TaskStatus {
    fn from(s: &StoredStatus) -> Self {
        TaskStatus {
            state: s.state,
            message: s.message.clone(),
            error: s.error.clone(),
            container_id: s.container_id.clone(),
            exit_code: s.exit_code,
            timestamp_ms: s.timestamp_ms,
            health: s.health,
        }
    }
}

/// What the agent knows of one task's container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub task_id: String,
    pub container_id: String,
    pub phase: Phase,
    /// Host pid of the container's init, once started.
    pub init_pid: Option<i32>,
    /// Start time of that pid (clock ticks since boot, /proc/PID/stat field 22),
    /// so a reused pid is never mistaken for the container.
    pub init_start: Option<u64>,
    /// The image's stop signal (`StopSignal`), if it names one.
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// The task's health check (service spec or image), if it has one.
    #[serde(default)]
    pub health: Option<HealthConfig>,
    pub status: StoredStatus,
}

impl Record {
    pub fn new(task_id: &str, container_id: &str) -> Record {
        Record {
            task_id: task_id.to_string(),
            container_id: container_id.to_string(),
            phase: Phase::Preparing,
            init_pid: None,
            init_start: None,
            stop_signal: None,
            health: None,
            status: StoredStatus {
                state: TaskState::Assigned as i32,
                ..StoredStatus::default()
            },
        }
    }
}

/// The directory of all task states.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn open(data_dir: &Path) -> Result<StateDir> {
        let root = data_dir.join("containers");
        std::fs::create_dir_all(&root).map_err(|e| SupervisorError::io("create", &root, e))?;
        Ok(StateDir { root })
    }

    /// The directory of one task (bundle, fifos, pid and exit files live here too).
    pub fn task_dir(&self, task_id: &str) -> PathBuf {
        self.root.join(task_id)
    }

    pub fn save(&self, record: &Record) -> Result<()> {
        let dir = self.task_dir(&record.task_id);
        let data =
            serde_json::to_vec_pretty(record).map_err(|e| SupervisorError::CorruptState {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
        write_atomic(&dir.join("record.json"), &data)
    }

    pub fn save_task(&self, task: &Task) -> Result<()> {
        write_atomic(
            &self.task_dir(&task.id).join("task.pb"),
            &task.encode_to_vec(),
        )
    }

    pub fn load_task(&self, task_id: &str) -> Result<Task> {
        let path = self.task_dir(task_id).join("task.pb");
        let data = std::fs::read(&path).map_err(|e| SupervisorError::io("read", &path, e))?;
        Task::decode(data.as_slice()).map_err(|e| SupervisorError::CorruptState {
            path,
            reason: e.to_string(),
        })
    }

    /// Every record, with the directories that hold none (or a corrupt one).
    pub fn load_all(&self) -> Result<(Vec<Record>, Vec<PathBuf>)> {
        let mut records = Vec::new();
        let mut broken = Vec::new();
        let entries = std::fs::read_dir(&self.root)
            .map_err(|e| SupervisorError::io("list", &self.root, e))?;
        for entry in entries.flatten() {
            let path = entry.path().join("record.json");
            match std::fs::read(&path)
                .ok()
                .and_then(|d| serde_json::from_slice::<Record>(&d).ok())
            {
                Some(r) => records.push(r),
                None => broken.push(entry.path()),
            }
        }
        Ok((records, broken))
    }

    /// Removes a task's directory.
    pub fn remove(&self, task_id: &str) -> Result<()> {
        let dir = self.task_dir(task_id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SupervisorError::io("remove", dir, e)),
        }
    }
}

/// Runs `f` (file writes that end in an fsync) on tokio's blocking threads:
/// a worker waiting for the disk holds up neither the other workers nor the
/// session (under `berth dev` everything shares one async thread).
pub(crate) async fn blocking<T: Send + 'static>(
    task: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SupervisorError::Task {
            task: task.to_string(),
            reason: format!("writing its state failed: {e}"),
        })?
}

/// Writes `data` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| SupervisorError::io("create", dir, e))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| SupervisorError::io("create", &tmp, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| SupervisorError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| SupervisorError::io("rename", &tmp, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_tasks_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let mut r = Record::new("t1", "t1");
        r.phase = Phase::Running;
        r.init_pid = Some(42);
        state.save(&r).unwrap();
        let task = Task {
            id: "t1".into(),
            service_name: "web".into(),
            ..Task::default()
        };
        state.save_task(&task).unwrap();
        std::fs::create_dir_all(dir.path().join("containers/junk")).unwrap();
        let (records, broken) = state.load_all().unwrap();
        assert_eq!(records, vec![r]);
        assert_eq!(broken.len(), 1);
        assert_eq!(state.load_task("t1").unwrap(), task);
        state.remove("t1").unwrap();
        assert!(!state.task_dir("t1").exists());
    }
}
