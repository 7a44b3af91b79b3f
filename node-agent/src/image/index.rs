//! The image index in sled: image names → manifests, snapshots by ChainID, and the
//! containers that hold snapshots. These are the roots garbage collection counts
//! references from.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::error::{ImageError, Result};

/// One layer of an image as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// Digest of the blob as stored (compressed or not).
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Digest of the uncompressed tar (from the image config).
    pub diff_id: Digest,
    /// ChainID of the stack up to and including this layer: the snapshot key.
    pub chain_id: Digest,
}

/// An image in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Normalized reference, e.g. `127.0.0.1:5000/busybox:1`.
    pub name: String,
    /// The image index or manifest list the manifest was chosen from, if any.
    pub index_digest: Option<Digest>,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    /// Bottom layer first.
    pub layers: Vec<Layer>,
    /// Seconds since the epoch when the name was last set.
    pub created: u64,
}

impl Image {
    /// Bytes of the image's blobs as stored.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }

    /// Every blob the image needs: index, manifest, config, layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Digest> {
        self.index_digest
            .iter()
            .chain([&self.manifest_digest, &self.config_digest])
            .chain(self.layers.iter().map(|l| &l.digest))
    }

    /// The snapshot key of the whole image (the top layer's ChainID).
    pub fn top_chain_id(&self) -> Option<&Digest> {
        self.layers.last().map(|l| &l.chain_id)
    }
}

#[cfg(test)]
impl Image {
    /// An image without layers named `name` (normalized) whose config is
    /// `config`: images with the same `config` share their id.
    pub(crate) fn named(name: &str, config: &[u8]) -> Image {
        Image {
            name: super::reference::normalize(name).unwrap_or_else(|_| name.to_string()),
            index_digest: None,
            manifest_digest: Digest::of(name.as_bytes()),
            config_digest: Digest::of(config),
            layers: Vec::new(),
            created: 0,
        }
    }
}

#[cfg(test)]
impl ContainerRef {
    /// Task `task`'s container, holding `image`.
    pub(crate) fn of(task: &str, image: &Image) -> ContainerRef {
        ContainerRef {
            container_id: task.into(),
            image: image.clone(),
        }
    }
}

/// An unpacked layer on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub chain_id: Digest,
    /// Directory name under `snapshots/` (short, for the mount option limit).
    pub id: u64,
    pub parent: Option<Digest>,
    pub diff_id: Digest,
    /// Directories made without a tar entry whose owner and mode still have to
    /// be taken from the layers below (empty once done).
    #[serde(default)]
    pub implicit_dirs: Vec<std::path::PathBuf>,
}

/// A container's claim on an image's blobs and snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRef {
    pub container_id: String,
    pub image: Image,
}

pub struct Index {
    path: PathBuf,
    db: sled::Db,
    images: sled::Tree,
    snapshots: sled::Tree,
    containers: sled::Tree,
    /// Image id (config digest) → `ImageUse`: the LRU order of garbage
    /// collection, kept across agent restarts.
    usage: sled::Tree,
}

/// When tasks last used an image (seconds since the epoch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUse {
    /// When a task using the image last started (its rootfs was prepared).
    pub last_started: u64,
    /// When a task using the image last ended (its rootfs was released).
    pub last_ended: Option<u64>,
}

impl Index {
    pub fn open(path: &Path) -> Result<Index> {
        let err = |source| ImageError::Index {
            path: path.to_path_buf(),
            source,
        };
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(err)?;
        let images = db.open_tree("images").map_err(err)?;
        let snapshots = db.open_tree("snapshots").map_err(err)?;
        let containers = db.open_tree("containers").map_err(err)?;
        let usage = db.open_tree("usage").map_err(err)?;
        Ok(Index {
            path: path.to_path_buf(),
            db,
            images,
            snapshots,
            containers,
            usage,
        })
    }

    fn err(&self, source: sled::Error) -> ImageError {
        ImageError::Index {
            path: self.path.clone(),
            source,
        }
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map(drop).map_err(|e| self.err(e))
    }

    fn get<T: DeserializeOwned>(&self, tree: &sled::Tree, key: &str) -> Result<Option<T>> {
        match tree.get(key.as_bytes()).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => decode(key, &v).map(Some),
        }
    }

    fn put<T: Serialize>(&self, tree: &sled::Tree, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| ImageError::CorruptRecord {
            what: key.to_string(),
            reason: e.to_string(),
        })?;
        tree.insert(key.as_bytes(), bytes)
            .map_err(|e| self.err(e))?;
        self.flush()
    }

    fn all<T: DeserializeOwned>(&self, tree: &sled::Tree) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for kv in tree.iter() {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            out.push(decode(&String::from_utf8_lossy(&k), &v)?);
        }
        Ok(out)
    }

    fn remove<T: DeserializeOwned>(&self, tree: &sled::Tree, key: &str) -> Result<Option<T>> {
        let old = tree.remove(key.as_bytes()).map_err(|e| self.err(e))?;
        self.flush()?;
        old.map(|v| decode(key, &v)).transpose()
    }

    pub fn image(&self, name: &str) -> Result<Option<Image>> {
        self.get(&self.images, name)
    }
    pub fn put_image(&self, image: &Image) -> Result<()> {
        self.put(&self.images, &image.name, image)
    }
    pub fn images(&self) -> Result<Vec<Image>> {
        self.all(&self.images)
    }
    pub fn remove_image(&self, name: &str) -> Result<Option<Image>> {
        self.remove(&self.images, name)
    }
    /// Removes every name in `names` and the usage record of `forget` (the
    /// image id, when its last names go) in one sled transaction: after a
    /// crash an image has all those names or none (its content, then
    /// unreferenced, goes with the next collection).
    pub fn remove_image_names(&self, names: &[String], forget: Option<&Digest>) -> Result<()> {
        use sled::Transactional;
        (&self.images, &self.usage)
            .transaction(|(images, usage)| {
                for name in names {
                    images.remove(name.as_bytes())?;
                }
                if let Some(id) = forget {
                    usage.remove(id.as_str().as_bytes())?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => self.err(e),
                sled::transaction::TransactionError::Abort(()) => {
                    self.err(sled::Error::Unsupported("aborted".into()))
                }
            })?;
        self.flush()
    }

    /// A task starts using image `id` at `now` (seconds): the LRU order of
    /// garbage collection.
    pub fn note_start(&self, id: &Digest, now: u64) -> Result<()> {
        self.update_use(id, |u| u.last_started = now)
    }

    /// Updates the usage record of image `id` with `f`.
    pub fn update_use(&self, id: &Digest, f: impl Fn(&mut ImageUse)) -> Result<()> {
        self.usage
            .fetch_and_update(id.as_str().as_bytes(), |old| {
                let mut u: ImageUse = old
                    .and_then(|v| serde_json::from_slice(v).ok())
                    .unwrap_or_default();
                f(&mut u);
                serde_json::to_vec(&u).ok()
            })
            .map_err(|e| self.err(e))?;
        self.flush()
    }
    /// Every usage record, by image id.
    pub fn uses(&self) -> Result<std::collections::HashMap<Digest, ImageUse>> {
        let mut out = std::collections::HashMap::new();
        for kv in self.usage.iter() {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            let key = String::from_utf8_lossy(&k).to_string();
            let id = Digest::parse(&key).map_err(|e| ImageError::CorruptRecord {
                what: format!("usage of {key}"),
                reason: e.to_string(),
            })?;
            out.insert(id, decode(&key, &v)?);
        }
        Ok(out)
    }

    pub fn snapshot(&self, chain_id: &Digest) -> Result<Option<Snapshot>> {
        self.get(&self.snapshots, chain_id.as_str())
    }
    pub fn put_snapshot(&self, snap: &Snapshot) -> Result<()> {
        self.put(&self.snapshots, snap.chain_id.as_str(), snap)
    }
    /// Records `snap` unless a snapshot with its ChainID exists; returns the existing one.
    pub fn insert_snapshot_if_absent(&self, snap: &Snapshot) -> Result<Option<Snapshot>> {
        let key = snap.chain_id.as_str();
        let bytes = serde_json::to_vec(snap).map_err(|e| ImageError::CorruptRecord {
            what: key.to_string(),
            reason: e.to_string(),
        })?;
        let swapped = self
            .snapshots
            .compare_and_swap(key.as_bytes(), None as Option<&[u8]>, Some(bytes))
            .map_err(|e| self.err(e))?;
        self.flush()?;
        match swapped {
            Ok(()) => Ok(None),
            Err(cas) => cas.current.map(|v| decode(key, &v)).transpose(),
        }
    }
    pub fn snapshots(&self) -> Result<Vec<Snapshot>> {
        self.all(&self.snapshots)
    }
    pub fn remove_snapshot(&self, chain_id: &Digest) -> Result<Option<Snapshot>> {
        self.remove(&self.snapshots, chain_id.as_str())
    }
    /// A fresh, never reused snapshot directory number.
    pub fn next_snapshot_id(&self) -> Result<u64> {
        self.db.generate_id().map_err(|e| self.err(e))
    }

    pub fn put_container(&self, c: &ContainerRef) -> Result<()> {
        self.put(&self.containers, &c.container_id, c)
    }
    pub fn containers(&self) -> Result<Vec<ContainerRef>> {
        self.all(&self.containers)
    }
    pub fn remove_container(&self, id: &str) -> Result<Option<ContainerRef>> {
        self.remove(&self.containers, id)
    }
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::CorruptRecord {
        what: key.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_snapshots_and_containers_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("db")).unwrap();
        let d = Digest::of(b"x");
        let image = Image {
            name: "127.0.0.1:5000/a:1".into(),
            index_digest: None,
            manifest_digest: d.clone(),
            config_digest: d.clone(),
            layers: vec![Layer {
                digest: d.clone(),
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                size: 3,
                diff_id: d.clone(),
                chain_id: d.clone(),
            }],
            created: 1,
        };
        index.put_image(&image).unwrap();
        assert_eq!(index.image(&image.name).unwrap(), Some(image.clone()));
        assert_eq!(index.images().unwrap().len(), 1);
        let a = index.next_snapshot_id().unwrap();
        assert_ne!(a, index.next_snapshot_id().unwrap());
        index
            .put_container(&ContainerRef {
                container_id: "c1".into(),
                image: image.clone(),
            })
            .unwrap();
        assert_eq!(index.remove_image(&image.name).unwrap(), Some(image));
        assert!(index.images().unwrap().is_empty());
        assert_eq!(index.containers().unwrap().len(), 1);
    }

    #[test]
    fn usage_survives_reopening_and_goes_with_the_image_names() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Image::named("a:1", b"one"), Image::named("a:2", b"one"));
        let id = a.config_digest.clone();
        {
            let index = Index::open(&dir.path().join("db")).unwrap();
            index.put_image(&a).unwrap();
            index.put_image(&b).unwrap();
            index.update_use(&id, |u| u.last_started = 7).unwrap();
            index.update_use(&id, |u| u.last_ended = Some(9)).unwrap();
        }
        // sled's flusher thread lets go of the file lock a moment after the
        // last handle drops: the reopen waits for it (bounded).
        let mut tries = 0;
        let index = loop {
            match Index::open(&dir.path().join("db")) {
                Ok(index) => break index,
                Err(err) if tries < 100 => {
                    tries += 1;
                    eprintln!("reopen, try {tries}: {err}");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(err) => panic!("reopening the index: {err}"),
            }
        };
        let want = ImageUse {
            last_started: 7,
            last_ended: Some(9),
        };
        assert_eq!(index.uses().unwrap().get(&id), Some(&want));
        index
            .remove_image_names(&[a.name.clone(), b.name.clone()], Some(&id))
            .unwrap();
        assert!(index.images().unwrap().is_empty());
        assert!(index.uses().unwrap().is_empty());
    }
}
