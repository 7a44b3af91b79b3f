//! Snapshots: each layer unpacked once into `snapshots/<n>/`, keyed by its ChainID.
//!
//! ChainID(1) = DiffID(1); ChainID(n) = sha256(ChainID(n-1) + " " + DiffID(n)).
//! A layer is unpacked into `snapshots/tmp-*` and renamed to its number only once
//! its DiffID checked out, so a failed unpack leaves nothing.

use std::path::{Path, PathBuf};

use tracing::{debug, info};

use super::digest::Digest;
use super::error::{ImageError, Result};
use super::index::{Index, Layer, Snapshot};
use super::store::ContentStore;
use super::{lower, unpack};

/// The ChainIDs of a stack of DiffIDs, bottom first.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => Digest::of(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[derive(Clone, Debug)]
pub struct SnapshotDir {
    root: PathBuf,
}

impl SnapshotDir {
    /// Opens `root` and removes unfinished unpacks of earlier processes.
    pub fn open(root: &Path) -> Result<SnapshotDir> {
        std::fs::create_dir_all(root).map_err(|e| ImageError::io("create", root, e))?;
        let entries = std::fs::read_dir(root).map_err(|e| ImageError::io("read", root, e))?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("tmp-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(SnapshotDir {
            root: root.to_path_buf(),
        })
    }

    pub fn path(&self, id: u64) -> PathBuf {
        self.root.join(id.to_string())
    }

    /// Numbers of the snapshot directories on disk.
    pub fn on_disk(&self) -> Result<Vec<u64>> {
        let entries =
            std::fs::read_dir(&self.root).map_err(|e| ImageError::io("read", &self.root, e))?;
        Ok(entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect())
    }

    pub fn remove(&self, id: u64) -> Result<()> {
        let path = self.path(id);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io("remove snapshot", path, e)),
        }
    }

    /// Unpacks `layer` from its blob unless its snapshot exists. Blocking.
    pub fn ensure(
        &self,
        index: &Index,
        store: &ContentStore,
        layer: &Layer,
        parent: Option<&Digest>,
    ) -> Result<Snapshot> {
        if let Some(s) = index.snapshot(&layer.chain_id)?
            && self.path(s.id).is_dir()
        {
            return Ok(s);
        }
        let tmp = tempfile::Builder::new()
            .prefix("tmp-")
            .tempdir_in(&self.root)
            .map_err(|e| ImageError::io("create a snapshot in", &self.root, e))?;
        let blob = store.open_blob(&layer.digest)?;
        let reader = unpack::decompressed(blob).map_err(|source| ImageError::Unpack {
            digest: layer.digest.clone(),
            source: unpack::UnpackError::Tar(source),
        })?;
        let started = std::time::Instant::now();
        let got =
            unpack::unpack_layer(reader, tmp.path()).map_err(|source| ImageError::Unpack {
                digest: layer.digest.clone(),
                source,
            })?;
        if got.diff_id != layer.diff_id {
            return Err(ImageError::DiffIdMismatch {
                digest: layer.digest.clone(),
                expected: layer.diff_id.clone(),
                actual: got.diff_id,
            });
        }
        let id = index.next_snapshot_id()?;
        let dest = self.path(id);
        let tmp_path = tmp.keep();
        if let Err(e) = std::fs::rename(&tmp_path, &dest) {
            let _ = std::fs::remove_dir_all(&tmp_path);
            return Err(ImageError::io("rename a snapshot to", dest, e));
        }
        let snap = Snapshot {
            chain_id: layer.chain_id.clone(),
            id,
            parent: parent.cloned(),
            diff_id: layer.diff_id.clone(),
            implicit_dirs: got.implicit_dirs,
        };
        // Another pull may have unpacked the same layer meanwhile: keep one.
        if let Some(existing) = index.insert_snapshot_if_absent(&snap)? {
            if self.path(existing.id).is_dir() {
                debug!(chain_id = %layer.chain_id, "snapshot unpacked twice, keeping the first");
                self.remove(id)?;
                return Ok(existing);
            }
            // The record outlived its directory (removed by hand): replace it.
            index.put_snapshot(&snap)?;
        }
        info!(layer = %layer.digest, chain_id = %layer.chain_id, snapshot = id,
              entries = got.entries, ms = started.elapsed().as_millis() as u64, "layer unpacked");
        Ok(snap)
    }
}

impl SnapshotDir {
    /// Gives directories a layer made without a tar entry the owner and mode the
    /// same path has in the nearest layer below, as a merged overlay would show
    /// it. Runs once per snapshot, bottom up, after the whole stack is unpacked.
    /// Blocking.
    pub fn inherit_parent_dirs(&self, index: &Index, layers: &[Layer]) -> Result<()> {
        for (i, layer) in layers.iter().enumerate() {
            let Some(mut snap) = index.snapshot(&layer.chain_id)? else {
                continue;
            };
            if snap.implicit_dirs.is_empty() {
                continue;
            }
            let upper = self.path(snap.id);
            for rel in &snap.implicit_dirs {
                for below in layers[..i].iter().rev() {
                    let Some(lower) = index.snapshot(&below.chain_id)? else {
                        break;
                    };
                    let lower = self.path(lower.id);
                    match lower::lower_dir(&lower, rel)
                        .map_err(|e| ImageError::io("inspect", lower.join(rel), e))?
                    {
                        lower::LowerDir::Found(uid, gid, mode) => {
                            lower::set_dir_owner_mode(&upper, rel, uid, gid, mode).map_err(
                                |e| ImageError::io("set the owner and mode of", upper.join(rel), e),
                            )?;
                            break;
                        }
                        lower::LowerDir::Hidden => break,
                        lower::LowerDir::Absent => {}
                    }
                }
            }
            snap.implicit_dirs.clear();
            index.put_snapshot(&snap)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_formula() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }
}
