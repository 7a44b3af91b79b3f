//! What a container leaves under `--root/<id>/`: `state.json` (written by create),
//! `exit.json` (written by the monitor when init ends), `config.json` (a copy of the
//! spec, for exec) and the `exec.fifo` that `start` opens. It survives a restart of
//! whoever called the runtime.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    InvalidId(#[from] crate::id::InvalidId),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("failed to {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt state file {}: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

type Result<T> = std::result::Result<T, StateError>;

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Lifecycle status, as OCI names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
}

/// How the container's init process ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// Exit code if it exited, else None.
    pub code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// The kernel's OOM killer killed a process of the container.
    #[serde(default)]
    pub oom_killed: bool,
}

impl Exit {
    /// The status a shell reports: the code, or 128 + signal.
    pub fn shell_status(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(code), _) => code,
            (None, Some(sig)) => 128 + sig,
            (None, None) => 255,
        }
    }
}

/// What create records; read by every later command.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// Host pid of the container's init process.
    pub pid: i32,
    /// Start time of that pid (field 22 of /proc/PID/stat), against pid reuse.
    pub pid_start: u64,
    /// Host pid of the monitor process that waits for init (0 under `run`).
    pub monitor_pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    /// The cgroup directories, one per hierarchy.
    pub cgroup_paths: Vec<PathBuf>,
    pub annotations: HashMap<String, String>,
}

/// OCI state JSON (plus berth's `created` and `exit`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState<'a> {
    pub oci_version: &'static str,
    pub id: &'a str,
    pub status: Status,
    pub pid: i32,
    pub bundle: &'a Path,
    pub annotations: &'a HashMap<String, String>,
    pub rootfs: &'a Path,
    pub created: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<Exit>,
}

impl Record {
    /// The OCI state of this container in `status` (pid 0 once stopped, as
    /// `state` reports it).
    pub fn oci_state(&self, status: Status, exit: Option<Exit>) -> OciState<'_> {
        OciState {
            oci_version: "1.0.2",
            id: &self.id,
            status,
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            bundle: &self.bundle,
            annotations: &self.annotations,
            rootfs: &self.rootfs,
            created: &self.created,
            exit,
        }
    }

    /// The state JSON a hook reads on its stdin.
    pub fn hook_state(&self, status: Status) -> Vec<u8> {
        to_json(&self.oci_state(status, None))
    }
}

/// The state directory of one container.
#[derive(Debug, Clone)]
pub struct Dir {
    pub path: PathBuf,
    pub id: String,
}

impl Dir {
    pub fn new(root: &Path, id: &str) -> Result<Dir> {
        crate::id::validate(id)?;
        Ok(Dir {
            path: root.join(id),
            id: id.to_string(),
        })
    }

    /// Makes the directory; fails if the container exists.
    pub fn create(&self) -> Result<()> {
        let root = self.path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(root).map_err(io("create state root", root))?;
        match std::fs::create_dir(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StateError::Exists(self.id.clone()))
            }
            Err(e) => Err(io("create state directory", &self.path)(e)),
        }
    }

    pub fn exists(&self) -> bool {
        self.path.is_dir()
    }

    pub fn fifo(&self) -> PathBuf {
        self.path.join("exec.fifo")
    }

    pub fn config(&self) -> PathBuf {
        self.path.join("config.json")
    }

    fn record_path(&self) -> PathBuf {
        self.path.join("state.json")
    }

    fn exit_path(&self) -> PathBuf {
        self.path.join("exit.json")
    }

    /// The copy of config.json create kept (for hooks and exec); `None` when
    /// it cannot be read.
    pub fn saved_spec(&self) -> Option<oci_spec::runtime::Spec> {
        let text = std::fs::read(self.config()).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn save(&self, record: &Record) -> Result<()> {
        write_atomic(&self.record_path(), &to_json(record))
    }

    pub fn load(&self) -> Result<Record> {
        let path = self.record_path();
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(self.id.clone()));
            }
            Err(e) => return Err(io("read", &path)(e)),
        };
        serde_json::from_slice(&text).map_err(|source| StateError::Corrupt { path, source })
    }

    pub fn save_exit(&self, exit: &Exit) -> Result<()> {
        write_atomic(&self.exit_path(), &to_json(exit))
    }

    pub fn load_exit(&self) -> Option<Exit> {
        let text = std::fs::read(self.exit_path()).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// The status, from the process table and the fifo.
    pub fn status(&self, record: &Record) -> Status {
        if !crate::proc::alive(record.pid, Some(record.pid_start)) {
            Status::Stopped
        } else if self.fifo().exists() {
            Status::Created
        } else {
            Status::Running
        }
    }

    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove state directory", &self.path)(e)),
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(data).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("rename", &tmp))
}

/// All container ids under the root.
pub fn list(root: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read state root", root)(e)),
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("state.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Now as RFC 3339 (UTC), without a date crate.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_status() {
        let signalled = Exit {
            code: None,
            signal: Some(9),
            oom_killed: true,
        };
        assert_eq!(signalled.shell_status(), 137);
        let exited = Exit {
            code: Some(3),
            ..Exit::default()
        };
        assert_eq!(exited.shell_status(), 3);
    }

    #[test]
    fn time_format() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 30, "{t}");
        assert!(t.starts_with("20"), "{t}");
    }
}
