//! Named local volumes on this node, in Docker's layout:
//! `<data dir>/volumes/<name>/_data` is what a task mounts. A volume's
//! directory is made at its first use by a task (or by `volume create
//! --node`) and deleted only by `volume rm` (through the agent's API); tasks
//! that end leave it as it is.

use std::path::{Path, PathBuf};

/// The data directory inside a volume's directory (Docker's name).
const DATA: &str = "_data";

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {name}: {why}")]
    Name { name: String, why: String },
    #[error("volume {name}: cannot {op} {}: {source}", path.display())]
    Io {
        name: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The volumes directory of one agent.
#[derive(Clone, Debug)]
pub struct VolumeStore {
    root: PathBuf,
}

impl VolumeStore {
    /// The volumes under `<data_dir>/volumes` (made when the first one is).
    pub fn new(data_dir: &Path) -> VolumeStore {
        VolumeStore {
            root: data_dir.join("volumes"),
        }
    }

    fn dir(&self, name: &str) -> Result<PathBuf, VolumeError> {
        // The controller checked the name; a directory name is only ever
        // made of a checked one here too.
        berth_proto::mounts::check_volume_name(name).map_err(|why| VolumeError::Name {
            name: name.to_string(),
            why,
        })?;
        Ok(self.root.join(name))
    }

    /// Where the volume's data is (whether or not it exists yet).
    pub fn mountpoint(&self, name: &str) -> Result<PathBuf, VolumeError> {
        Ok(self.dir(name)?.join(DATA))
    }

    /// The data directory, made if absent (mode 0755, root's, as Docker's).
    pub fn ensure(&self, name: &str) -> Result<PathBuf, VolumeError> {
        let data = self.mountpoint(name)?;
        std::fs::create_dir_all(&data).map_err(|source| VolumeError::Io {
            name: name.to_string(),
            op: "create",
            path: data.clone(),
            source,
        })?;
        Ok(data)
    }

    pub fn exists(&self, name: &str) -> Result<bool, VolumeError> {
        Ok(self.mountpoint(name)?.is_dir())
    }

    /// Deletes the volume's directory and everything in it; `false` when
    /// there was none.
    pub fn remove(&self, name: &str) -> Result<bool, VolumeError> {
        let dir = self.dir(name)?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(VolumeError::Io {
                name: name.to_string(),
                op: "remove",
                path: dir,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_is_made_kept_and_removed_in_dockers_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = VolumeStore::new(dir.path());
        let data = store.ensure("data").expect("ensure");
        assert_eq!(data, dir.path().join("volumes/data/_data"));
        std::fs::write(data.join("f"), "kept").expect("write");
        assert_eq!(store.ensure("data").expect("again"), data);
        assert_eq!(
            std::fs::read_to_string(data.join("f")).expect("read"),
            "kept"
        );
        assert!(store.exists("data").expect("exists"));
        assert!(store.remove("data").expect("remove"));
        assert!(!dir.path().join("volumes/data").exists());
        assert!(!store.remove("data").expect("remove again"));
    }

    #[test]
    fn names_that_could_leave_the_volumes_directory_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = VolumeStore::new(dir.path());
        for bad in ["..", "../x", "a/b", ""] {
            assert!(store.ensure(bad).is_err(), "{bad:?}");
            assert!(store.remove(bad).is_err(), "{bad:?}");
        }
    }
}
