//! The agent's image service: content store, registry pull, import, layer
//! snapshots, container rootfs mounts and garbage collection.
//!
//! On disk, under `<data-dir>/images/`:
//! - `blobs/sha256/<hex>`: the content store (`ingest/` holds writes in progress)
//! - `snapshots/<n>/`: one unpacked layer each, keyed by ChainID in the index
//! - `containers/<id>/{upper,work,rootfs}`: a container's overlay
//! - `index/`: sled: image names → manifests, snapshots, container holds
//!
//! ```no_run
//! # async fn f() -> Result<(), berth_agent::image::ImageError> {
//! use berth_agent::image::{ImageStore, PullOptions};
//! let store = ImageStore::open(std::path::Path::new("/var/lib/berth"))?;
//! let image = store.pull("127.0.0.1:5000/busybox:1", &PullOptions::default()).await?;
//! let config = store.image_config(&image)?;
//! let rootfs = store.prepare_rootfs(&image, "task-1").await?;
//! // ... run config.argv() in rootfs.path ...
//! store.release_rootfs("task-1").await?;
//! # Ok(()) }
//! ```

mod config;
mod error;
mod fsmeta;
mod gc;
mod gc_loop;
mod gc_plan;
mod import;
mod index;
mod locks;
mod lower;
mod manifest;
mod progress;
mod pull;
mod rmi;
mod rootfs;
mod snapshot;
mod store;
mod unpack;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;

// References, digests and credentials are shared with the controller, which
// resolves tags to digests with them.
use berth_registry::{auth, digest, reference};

pub use berth_registry::{
    AuthError, BasicCredentials, Digest, DigestError, DockerConfig, ReferenceError,
    RegistryCredentials, registry_of,
};
pub use config::{Healthcheck, ImageConfig};
pub use error::{ImageError, Result};
pub use gc::{ImagePruneReport, PruneReport, PruneScope, References};
pub use gc_loop::{DiskUsage, GcPolicy, Statvfs, run_gc};
pub use gc_plan::{DiskFigures, Marks};
pub use import::ImportOptions;
pub use index::{Image, ImageUse, Layer, Snapshot};
pub use progress::{LayerRow, LayerState, PullEvent, PullProgress, PullTracker};
pub use pull::PullOptions;
pub use rmi::RemoveReport;
pub use rootfs::Rootfs;
pub use snapshot::chain_ids;
pub use unpack::UnpackError;

use error::blocking;
use index::Index;
use locks::KeyedLocks;
use manifest::ManifestParts;
use snapshot::SnapshotDir;
use store::ContentStore;

/// The image store of one agent. Cheap to clone; safe to share between tasks.
#[derive(Clone)]
pub struct ImageStore {
    root: PathBuf,
    content: ContentStore,
    index: Arc<Index>,
    snapshots: SnapshotDir,
    /// Pulls, imports and mounts hold it shared; `prune` alone.
    gc: Arc<tokio::sync::RwLock<()>>,
    /// One download or unpack at a time per blob or ChainID.
    busy: KeyedLocks,
    /// Told when the store grew (a pull ended): garbage collection looks
    /// at the disk at once.
    grew: Arc<tokio::sync::Notify>,
    /// An exclusive lock on `<root>/lock` for as long as the store is open
    /// (one process at a time; the index would refuse a second one anyway,
    /// but with sled's message instead of ours).
    _lock: Arc<nix::fcntl::Flock<std::fs::File>>,
}

impl ImageStore {
    /// Opens (creating) the store in `<data_dir>/images` and clears what
    /// interrupted writes and unpacks left behind. The index is locked: one
    /// process opens a store at a time; clone the `ImageStore` to share it.
    pub fn open(data_dir: &Path) -> Result<ImageStore> {
        let root = data_dir.join("images");
        std::fs::create_dir_all(&root).map_err(|e| ImageError::io("create", &root, e))?;
        let lock = lock_store(&root)?;
        let content = ContentStore::open(&root)?;
        let snapshots = SnapshotDir::open(&root.join("snapshots"))?;
        let index = Index::open(&root.join("index"))?;
        Ok(ImageStore {
            root,
            content,
            index: Arc::new(index),
            snapshots,
            gc: Arc::new(tokio::sync::RwLock::new(())),
            busy: KeyedLocks::default(),
            grew: Arc::new(tokio::sync::Notify::new()),
            _lock: Arc::new(lock),
        })
    }

    /// The store's directory (`<data_dir>/images`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every named image, sorted by name.
    pub fn list(&self) -> Result<Vec<Image>> {
        let mut images = self.index.images()?;
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(images)
    }

    /// Bytes of every blob in the content store.
    pub fn content_bytes(&self) -> Result<u64> {
        Ok(self
            .content
            .list()?
            .iter()
            .filter_map(|d| self.content.size(d))
            .sum())
    }

    /// The image named `name` (normalized: `busybox` is `docker.io/library/busybox:latest`).
    pub fn get(&self, name: &str) -> Result<Image> {
        let key = reference::normalize(name)?;
        self.index
            .image(&key)?
            .ok_or(ImageError::UnknownImage { name: key })
    }

    /// Records that a task is about to use `image` (now): garbage collection
    /// keeps recently used images, so an image already here is not taken
    /// between this and the task's rootfs mount, which holds it from then on.
    pub fn note_use(&self, image: &Image) -> Result<()> {
        self.index.note_start(&image.config_digest, now())
    }

    /// The image named `name` if the store has it, else pulled. (A stored
    /// image is used without asking its registry, as Docker does: whoever
    /// may run tasks on this node may run the images it holds.)
    pub async fn get_or_pull(&self, name: &str, opts: &PullOptions) -> Result<Image> {
        match self.get(name) {
            Ok(image) => Ok(image),
            Err(ImageError::UnknownImage { .. }) => self.pull(name, opts).await,
            Err(e) => Err(e),
        }
    }

    /// Removes the name; the content stays until `prune` finds nothing uses it.
    pub fn remove(&self, name: &str) -> Result<Image> {
        let key = reference::normalize(name)?;
        self.index
            .remove_image(&key)?
            .ok_or(ImageError::UnknownImage { name: key })
    }

    /// The image's config: entrypoint, cmd, env, working dir, user, ports.
    pub fn image_config(&self, image: &Image) -> Result<ImageConfig> {
        let data = self.content.read(&image.config_digest)?;
        ImageConfig::parse(&data, &format!("config of {}", image.name))
    }

    /// Directory of the snapshot of a layer stack (by ChainID), if unpacked.
    pub fn snapshot_path(&self, chain_id: &Digest) -> Result<Option<PathBuf>> {
        Ok(self
            .index
            .snapshot(chain_id)?
            .map(|s| self.snapshots.path(s.id))
            .filter(|p| p.is_dir()))
    }

    /// Unpacks every layer that has no snapshot yet, in parallel on blocking threads.
    async fn ensure_snapshots(&self, layers: &[Layer]) -> Result<()> {
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        let jobs = layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                let parent = i.checked_sub(1).map(|p| layers[p].chain_id.clone());
                self.unpack_once(layer, parent)
            })
            .collect();
        run_all(jobs, parallel).await?;
        self.inherit_parent_dirs(layers).await
    }

    /// See `SnapshotDir::inherit_parent_dirs`.
    async fn inherit_parent_dirs(&self, layers: &[Layer]) -> Result<()> {
        let (index, snaps, layers) = (self.index.clone(), self.snapshots.clone(), layers.to_vec());
        blocking("owners of implicit directories", move || {
            snaps.inherit_parent_dirs(&index, &layers)
        })
        .await
    }
}

impl ImageStore {
    /// Unpacks `layer` unless its snapshot exists; concurrent callers for the
    /// same ChainID wait for the first instead of unpacking it again.
    async fn unpack_once(&self, layer: &Layer, parent: Option<Digest>) -> Result<()> {
        let _busy = self.busy.lock(&layer.chain_id).await;
        let (index, content, snaps, layer) = (
            self.index.clone(),
            self.content.clone(),
            self.snapshots.clone(),
            layer.clone(),
        );
        blocking(format!("unpack of {}", layer.digest), move || {
            snaps
                .ensure(&index, &content, &layer, parent.as_ref())
                .map(drop)
        })
        .await
    }
}

/// Takes the store's lock without waiting: held elsewhere is `Locked`.
fn lock_store(root: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let path = root.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| ImageError::io("open", &path, e))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(_, errno)| match errno {
            nix::errno::Errno::EWOULDBLOCK => ImageError::Locked {
                path: root.to_path_buf(),
            },
            other => ImageError::io("lock", &path, other.into()),
        },
    )
}

/// Runs `jobs`, `limit` at a time, each to its end even after one failed (so no
/// download or unpack outlives the call and a failed call leaves no scratch
/// file behind); returns the first error. Taking the futures as a `Vec` keeps
/// the caller's future `Send`.
async fn run_all<F: std::future::Future<Output = Result<()>>>(
    jobs: Vec<F>,
    limit: usize,
) -> Result<()> {
    let results: Vec<Result<()>> = futures_util::stream::iter(jobs)
        .buffer_unordered(limit.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// Pairs a manifest's layers with the config's DiffIDs and computes ChainIDs.
fn layers_of(parts: &ManifestParts, config: &ImageConfig, what: &str) -> Result<Vec<Layer>> {
    if parts.layers.len() != config.diff_ids.len() {
        return Err(ImageError::BadManifest {
            what: what.to_string(),
            reason: format!(
                "{} layers in the manifest but {} diff_ids in the config",
                parts.layers.len(),
                config.diff_ids.len()
            ),
        });
    }
    let chains = chain_ids(&config.diff_ids);
    Ok(parts
        .layers
        .iter()
        .zip(&config.diff_ids)
        .zip(chains)
        .map(|((l, diff_id), chain_id)| Layer {
            digest: l.digest.clone(),
            media_type: l.media_type.clone(),
            size: l.size,
            diff_id: diff_id.clone(),
            chain_id,
        })
        .collect())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync + Clone + 'static>(_: &T) {}
    fn spawnable<F: std::future::Future + Send>(_: F) {}

    #[tokio::test]
    async fn the_store_and_its_futures_can_be_shared_and_spawned() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        send_sync(&store);
        let opts = PullOptions::default();
        let image = Image {
            name: "x".into(),
            index_digest: None,
            manifest_digest: Digest::of(b"m"),
            config_digest: Digest::of(b"c"),
            layers: Vec::new(),
            created: 0,
        };
        // Only type-checked: the supervisor tokio::spawns these.
        spawnable(store.pull("x", &opts));
        spawnable(store.get_or_pull("x", &opts));
        spawnable(store.import(Path::new("x"), &ImportOptions::default()));
        spawnable(store.prune());
        spawnable(store.prune_images(PruneScope::Unused));
        spawnable(store.remove_image("x", false));
        spawnable(store.prepare_rootfs(&image, "c"));
        spawnable(store.release_rootfs("c"));
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn a_second_opener_is_told_the_store_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let first = ImageStore::open(dir.path()).unwrap();
        let err = ImageStore::open(dir.path()).err().unwrap();
        assert!(matches!(err, ImageError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("berth images"), "{err}");
        drop(first);
        ImageStore::open(dir.path()).unwrap();
    }
}
