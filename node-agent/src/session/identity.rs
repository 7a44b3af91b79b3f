//! Who this node is: its id (kept in the data dir once the cluster gave it one),
//! and what it has to offer (CPUs, memory).

use std::path::{Path, PathBuf};

use berth_proto::v1::Resources;
use serde::{Deserialize, Serialize};

use super::SessionError;

const FILE: &str = "node.json";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub node_id: String,
    #[serde(skip)]
    path: PathBuf,
}

impl NodeIdentity {
    pub fn load(data_dir: &Path) -> Result<NodeIdentity, SessionError> {
        let path = data_dir.join(FILE);
        let err = |why: String| SessionError::Identity {
            path: path.clone(),
            why,
        };
        let mut identity = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<NodeIdentity>(&bytes)
                .map_err(|e| err(format!("not valid JSON: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => NodeIdentity::default(),
            Err(e) => return Err(err(e.to_string())),
        };
        identity.path = path;
        Ok(identity)
    }

    /// Remembers the id the cluster gave this node (atomically).
    pub fn save(&mut self, node_id: &str) -> Result<(), SessionError> {
        if self.node_id == node_id {
            return Ok(());
        }
        self.node_id = node_id.to_string();
        let err = |why: String| SessionError::Identity {
            path: self.path.clone(),
            why,
        };
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| err(e.to_string()))?;
        std::fs::write(&tmp, bytes).map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| err(e.to_string()))?;
        Ok(())
    }
}

/// CPUs (all of them) and memory (MemTotal) of this host.
pub fn detect_resources() -> Resources {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    Resources {
        milli_cpus: cpus * 1000,
        memory_bytes: memory,
        pids: 0,
    }
}
