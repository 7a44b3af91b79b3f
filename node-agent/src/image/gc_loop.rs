//! Image garbage collection in the running agent: every `interval`, and at
//! once when a pull filled the disk, the disk of the data dir is measured;
//! at or above the high mark, dangling content goes first, then unused
//! images least recently used first (`gc_plan`), one image at a time, until
//! the disk is under the low mark. The disk is measured through `DiskUsage`
//! (statvfs on a real agent), so that a round can be tested with figures.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::ImageStore;
use super::error::{ImageError, Result};
use super::gc::ImagePruneReport;
use super::gc_plan::{DiskFigures, Goal, Marks};

/// How full a filesystem is.
pub trait DiskUsage: Send + Sync {
    fn figures(&self, path: &Path) -> Result<DiskFigures>;
}

/// The filesystem's own figures (statvfs(2)), as `df` shows them.
pub struct Statvfs;

impl DiskUsage for Statvfs {
    fn figures(&self, path: &Path) -> Result<DiskFigures> {
        let s = nix::sys::statvfs::statvfs(path)
            .map_err(|e| ImageError::io("statvfs", path, e.into()))?;
        let unit = s.fragment_size() as u64;
        Ok(DiskFigures {
            total: (s.blocks() as u64).saturating_mul(unit),
            available: (s.blocks_available() as u64).saturating_mul(unit),
        })
    }
}

/// When and how far garbage collection removes images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcPolicy {
    pub marks: Marks,
    /// How often the disk is measured (besides after every pull).
    pub interval: Duration,
    /// Images used (a task started or ended, a name set) less than this long
    /// ago stay, whatever the disk says.
    pub keep_recent: Duration,
}

impl Default for GcPolicy {
    fn default() -> GcPolicy {
        GcPolicy {
            marks: Marks::default(),
            interval: Duration::from_secs(60),
            keep_recent: Duration::from_secs(300),
        }
    }
}

impl ImageStore {
    /// One round of garbage collection (see the module): what it removed,
    /// nothing if the disk is under the high mark.
    pub async fn collect_garbage(
        &self,
        policy: &GcPolicy,
        disk: &dyn DiskUsage,
    ) -> Result<ImagePruneReport> {
        let mut report = ImagePruneReport::default();
        let figures = disk.figures(&self.root)?;
        if !figures.at_or_above(policy.marks.high()) {
            return Ok(report);
        }
        let _gc = self.gc.write().await;
        info!(
            used = format!("{:.1} %", figures.used_percent()),
            high = policy.marks.high(),
            low = policy.marks.low(),
            "the image store's disk is at its high mark: removing unused images"
        );
        // What no image names (interrupted pulls and removals) costs no image.
        report.content.absorb(self.collect(None).await?);
        let plan = self.plan(&Goal::Disk {
            figures,
            marks: policy.marks,
            keep_recent: policy.keep_recent.as_secs(),
        })?;
        let under_low = |d: DiskFigures| !d.at_or_above(policy.marks.low());
        for victim in &plan.victims {
            if under_low(disk.figures(&self.root)?) {
                break;
            }
            info!(image = %victim.id, names = ?victim.names, last_used = victim.last_used, "removing image");
            self.remove_victim(victim, &mut report).await?;
        }
        let after = disk.figures(&self.root)?;
        if under_low(after) {
            info!(
                used = format!("{:.1} %", after.used_percent()),
                images = report.deleted.len(),
                bytes = report.content.bytes,
                "image garbage collection done"
            );
        } else {
            warn!(
                used = format!("{:.1} %", after.used_percent()),
                low = policy.marks.low(),
                images = report.deleted.len(),
                "still above the low mark: every other image is in use or recently used"
            );
        }
        report.untagged.sort();
        Ok(report)
    }
}

/// Runs garbage collection every `policy.interval` and after every pull,
/// for as long as the agent runs. A failed round is logged; the next one
/// tries again.
pub async fn run_gc(store: ImageStore, policy: GcPolicy, disk: Arc<dyn DiskUsage>) {
    let mut tick = tokio::time::interval(policy.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = store.grew.notified() => {}
        }
        if let Err(e) = store.collect_garbage(&policy, disk.as_ref()).await {
            warn!("image garbage collection: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A disk whose used bytes are what the test says, minus the bytes the
    /// store removed since (its content store shrinking).
    struct Figures {
        store: ImageStore,
        total: u64,
        /// Bytes used besides the store's content.
        other: Mutex<u64>,
    }

    impl DiskUsage for Figures {
        fn figures(&self, _: &Path) -> Result<DiskFigures> {
            let used = *self.other.lock().unwrap() + self.store.content_bytes()?;
            Ok(DiskFigures {
                total: self.total,
                available: self.total.saturating_sub(used),
            })
        }
    }

    /// Images a:1, b:1 and c:1, created (named) in that order, each with a
    /// blob of 8 bytes.
    fn put_images(store: &ImageStore) {
        for (i, name) in ["a:1", "b:1", "c:1"].iter().enumerate() {
            let config = format!("config-{i}");
            let mut image = crate::image::Image::named(name, config.as_bytes());
            let expected = crate::image::store::Expected {
                digest: image.config_digest.clone(),
                size: None,
                what: "config".into(),
            };
            store
                .content
                .write_all(config.as_bytes(), &expected)
                .unwrap();
            image.manifest_digest = image.config_digest.clone();
            image.created = i as u64;
            store.index.put_image(&image).unwrap();
        }
    }

    #[tokio::test]
    async fn a_round_under_the_high_mark_removes_nothing_and_one_above_stops_under_the_low_mark() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        // Three images of 8 bytes each (their config blobs), used in turn.
        put_images(&store);
        let disk = Figures {
            store: store.clone(),
            total: 100,
            other: Mutex::new(0),
        };
        let policy = GcPolicy {
            marks: Marks::new(50, 25).unwrap(),
            keep_recent: Duration::ZERO,
            ..GcPolicy::default()
        };
        // 24 + 24 bytes of 100: under the high mark.
        *disk.other.lock().unwrap() = 24;
        let report = store.collect_garbage(&policy, &disk).await.unwrap();
        assert_eq!(report, ImagePruneReport::default());
        // 30 + 24: at the high mark. Removing a (the oldest) leaves 46;
        // b leaves 38 ... c leaves 30: still not under 25, all unused go.
        *disk.other.lock().unwrap() = 30;
        let report = store.collect_garbage(&policy, &disk).await.unwrap();
        assert_eq!(report.deleted.len(), 3, "{report:?}");
        assert!(store.list().unwrap().is_empty());
        // The same again with room: only the oldest goes.
        put_images(&store);
        *disk.other.lock().unwrap() = 10;
        let policy = GcPolicy {
            marks: Marks::new(30, 27).unwrap(),
            ..policy
        };
        let report = store.collect_garbage(&policy, &disk).await.unwrap();
        assert_eq!(report.untagged, ["docker.io/library/a:1"]);
        let left: Vec<String> = store.list().unwrap().into_iter().map(|i| i.name).collect();
        assert_eq!(left, ["docker.io/library/b:1", "docker.io/library/c:1"]);
    }
}
