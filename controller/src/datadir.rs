//! The controller's data directory: a marker file saying whose it is, the sled
//! database (state machine) and the raft log. Decides between init, join and
//! restart, and refuses anything that is not ours, before writing a byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_proto::store::SnapshotData;
use protobuf::Message as _;
use raft::eraftpb::ConfState;
use serde::{Deserialize, Serialize};

use crate::store::{StateMachine, WatchHub, keys};

const MARKER: &str = "berth-controller.json";
const DB_DIR: &str = "db";
const LOG_DIR: &str = "raft-log";
/// This member's own certificate, key and trusted roots.
const TLS_DIR: &str = "tls";
/// The admin client bundle `--init` writes, for the CLI.
const ADMIN_DIR: &str = "admin";
/// 2: the raft log moved from sled to raft-engine.
const FORMAT: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot use data dir {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a berth controller data dir: it is not empty and has no {MARKER} \
         (found {found}); use an empty or new directory"
    )]
    Foreign { path: PathBuf, found: String },
    #[error("{path} holds no controller data yet: start with --init (new cluster) or --join ADDR")]
    Uninitialized { path: PathBuf },
    #[error("data dir {path} is corrupt: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("data dir {path} has format {found}, this controller reads format {FORMAT}")]
    Format { path: PathBuf, found: u32 },
}

/// Who this member is; written last, so its presence means the dir is complete.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    pub format: u32,
    pub cluster_id: String,
    pub member_id: u64,
}

impl Marker {
    /// A marker of the format this controller writes.
    pub fn new(cluster_id: String, member_id: u64) -> Self {
        Marker {
            format: FORMAT,
            cluster_id,
            member_id,
        }
    }
}

pub enum Existing {
    /// A complete data dir of a member.
    Member(Marker),
    /// Nothing there yet (or an empty directory).
    Empty,
}

/// Looks at `path` without changing it.
pub fn inspect(path: &Path) -> Result<Existing, DataDirError> {
    let io = |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    };
    let marker_path = path.join(MARKER);
    match std::fs::read(&marker_path) {
        Ok(bytes) => {
            let marker: Marker =
                serde_json::from_slice(&bytes).map_err(|e| DataDirError::Corrupt {
                    path: path.to_path_buf(),
                    what: format!("{MARKER}: {e}"),
                })?;
            if marker.format != FORMAT {
                return Err(DataDirError::Format {
                    path: path.to_path_buf(),
                    found: marker.format,
                });
            }
            for dir in [DB_DIR, LOG_DIR] {
                if !path.join(dir).is_dir() {
                    return Err(DataDirError::Corrupt {
                        path: path.to_path_buf(),
                        what: format!("{MARKER} exists but {dir}/ is missing"),
                    });
                }
            }
            Ok(Existing::Member(marker))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let entries: Vec<String> = match std::fs::read_dir(path) {
                Ok(entries) => entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect(),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(err) => return Err(io(err)),
            };
            if entries.is_empty() {
                Ok(Existing::Empty)
            } else {
                let mut found = entries;
                found.sort();
                found.truncate(5);
                Err(DataDirError::Foreign {
                    path: path.to_path_buf(),
                    found: found.join(", "),
                })
            }
        }
        Err(err) => Err(io(err)),
    }
}

/// Where a member's raft log lives.
pub fn log_dir(path: &Path) -> PathBuf {
    path.join(LOG_DIR)
}

/// Where a member keeps its TLS credentials.
pub fn tls_dir(path: &Path) -> PathBuf {
    path.join(TLS_DIR)
}

/// Where `--init` writes the admin client bundle.
pub fn admin_dir(path: &Path) -> PathBuf {
    path.join(ADMIN_DIR)
}

/// sled's page cache. The state machine reads from its own mirror and writes
/// sled only at checkpoints (`store/mirror.rs`), so sled's cache serves
/// nothing but those writes; its default (1 GiB) let it keep a second copy of
/// every object written.
const DB_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Opens the database of a member's data dir.
pub fn open_db(path: &Path) -> Result<sled::Db, DataDirError> {
    open_sled(&path.join(DB_DIR)).map_err(|e| DataDirError::Corrupt {
        path: path.to_path_buf(),
        what: format!("database: {e}"),
    })
}

fn open_sled(dir: &Path) -> sled::Result<sled::Db> {
    sled::Config::new()
        .path(dir)
        .cache_capacity(DB_CACHE_BYTES)
        .open()
}

/// Checks that the database matches the marker and returns its state machine.
pub fn load(
    path: &Path,
    db: sled::Db,
    marker: &Marker,
) -> Result<(sled::Db, StateMachine), DataDirError> {
    let corrupt = |what: String| DataDirError::Corrupt {
        path: path.to_path_buf(),
        what,
    };
    let tree = db
        .open_tree("state")
        .map_err(|e| corrupt(format!("state tree: {e}")))?;
    let probe = StateMachine::new(tree, WatchHub::new(0)).map_err(|e| corrupt(e.to_string()))?;
    let stored = probe.cluster_id().map_err(|e| corrupt(e.to_string()))?;
    if stored.as_deref() != Some(marker.cluster_id.as_str()) {
        return Err(corrupt(format!(
            "the database belongs to cluster {:?}, the marker says {:?}",
            stored.unwrap_or_default(),
            marker.cluster_id
        )));
    }
    let revision = probe.revision().map_err(|e| corrupt(e.to_string()))?;
    Ok((db, probe.with_watch(WatchHub::new(revision))))
}

/// Creates the data dir of a new member: the state tree's identity, the first
/// address book and (for a new cluster) the first voter set; then the marker.
/// Returns the open database (sled releases its lock asynchronously, so closing
/// and reopening could race).
pub fn create(
    path: &Path,
    marker: &Marker,
    members: &BTreeMap<u64, String>,
    voters: &[u64],
) -> Result<sled::Db, DataDirError> {
    create_with(path, marker, members, voters, Vec::new())
}

/// As [`create`], with the first objects of a new cluster (its CA record).
pub fn create_with(
    path: &Path,
    marker: &Marker,
    members: &BTreeMap<u64, String>,
    voters: &[u64],
    objects: Vec<berth_proto::store::Object>,
) -> Result<sled::Db, DataDirError> {
    let data = SnapshotData {
        revision: 0,
        members: members.clone(),
        objects,
        cluster_id: marker.cluster_id.clone(),
    };
    create_from(path, marker, &data, voters)
}

/// As [`create`], starting from a whole state (a restored backup's): with
/// `voters`, the log starts as if a snapshot of `data` had been taken.
pub fn create_from(
    path: &Path,
    marker: &Marker,
    data: &SnapshotData,
    voters: &[u64],
) -> Result<sled::Db, DataDirError> {
    let io = |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(io)?;
    let corrupt = |what: String| DataDirError::Corrupt {
        path: path.to_path_buf(),
        what,
    };
    let db = open_sled(&path.join(DB_DIR)).map_err(|e| corrupt(format!("database: {e}")))?;
    {
        let tree = db.open_tree("state").map_err(|e| corrupt(e.to_string()))?;
        let sm = StateMachine::new(tree.clone(), WatchHub::new(0))
            .map_err(|e| corrupt(e.to_string()))?;
        let conf = ConfState {
            voters: voters.to_vec(),
            ..Default::default()
        };
        let conf_bytes = conf.write_to_bytes().map_err(|e| corrupt(e.to_string()))?;
        if voters.is_empty() {
            // A joining member starts empty and learns everything (voters too)
            // from the leader's snapshot.
            sm.restore(data, 0, 0, &conf_bytes)
                .map_err(|e| corrupt(e.to_string()))?;
            tree.remove(keys::CONF_STATE)
                .map_err(|e| corrupt(e.to_string()))?;
        } else {
            sm.restore(data, 1, 1, &conf_bytes)
                .map_err(|e| corrupt(e.to_string()))?;
        }
        db.flush().map_err(|e| corrupt(e.to_string()))?;
        let log = log_dir(path);
        let logged = if voters.is_empty() {
            crate::raft::storage::create_log(&log)
        } else {
            crate::raft::storage::bootstrap_log(&log, 1, 1)
        };
        logged.map_err(|e| corrupt(e.to_string()))?;
    }
    let tmp = path.join(format!("{MARKER}.tmp"));
    let bytes = serde_json::to_vec_pretty(marker).map_err(|e| corrupt(e.to_string()))?;
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, path.join(MARKER)).map_err(io)?;
    Ok(db)
}

pub fn new_cluster_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

pub fn new_member_id() -> u64 {
    loop {
        let id = rand::random::<u64>() >> 12;
        if id != 0 {
            return id;
        }
    }
}
