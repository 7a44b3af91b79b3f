//! Garbage collection: reference counts from the roots (named images and
//! containers) to blobs and snapshots; `prune` removes what nothing references.
//! Counting from the roots each time, instead of keeping counters, cannot drift
//! after a crash.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use tracing::info;

use super::ImageStore;
use super::digest::Digest;
use super::error::{Result, blocking};
use super::index::{Image, Index};

/// How many images and containers reference each blob and snapshot.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct References {
    pub blobs: HashMap<Digest, usize>,
    /// By ChainID.
    pub snapshots: HashMap<Digest, usize>,
}

/// What `prune` removed.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    pub blobs: Vec<Digest>,
    /// ChainIDs.
    pub snapshots: Vec<Digest>,
    /// Bytes of blobs removed.
    pub bytes: u64,
}

fn count(index: &Index) -> Result<References> {
    let mut refs = References::default();
    let mut add = |image: &Image| {
        for b in image.blobs() {
            *refs.blobs.entry(b.clone()).or_default() += 1;
        }
        for l in &image.layers {
            *refs.snapshots.entry(l.chain_id.clone()).or_default() += 1;
        }
    };
    for image in index.images()? {
        add(&image);
    }
    for c in index.containers()? {
        add(&c.image);
    }
    Ok(refs)
}

impl ImageStore {
    /// Reference counts of every referenced blob and snapshot.
    pub fn references(&self) -> Result<References> {
        count(&self.index)
    }

    /// Removes every blob and snapshot no image or container references, and
    /// snapshot directories left by crashes.
    pub async fn prune(&self) -> Result<PruneReport> {
        let _gc = self.gc.write().await;
        let (index, content, snaps) = (
            self.index.clone(),
            self.content.clone(),
            self.snapshots.clone(),
        );
        let report = blocking("prune", move || {
            let refs = count(&index)?;
            let mut report = PruneReport::default();
            for blob in content.list()? {
                if !refs.blobs.contains_key(&blob) {
                    report.bytes += content.size(&blob).unwrap_or_default();
                    content.delete(&blob)?;
                    report.blobs.push(blob);
                }
            }
            let mut kept = HashSet::new();
            for snap in index.snapshots()? {
                if refs.snapshots.contains_key(&snap.chain_id) {
                    kept.insert(snap.id);
                } else {
                    snaps.remove(snap.id)?;
                    index.remove_snapshot(&snap.chain_id)?;
                    report.snapshots.push(snap.chain_id);
                }
            }
            for id in snaps.on_disk()? {
                if !kept.contains(&id) {
                    snaps.remove(id)?;
                }
            }
            report.blobs.sort();
            report.snapshots.sort();
            Ok(report)
        })
        .await?;
        info!(
            blobs = report.blobs.len(),
            snapshots = report.snapshots.len(),
            bytes = report.bytes,
            "pruned"
        );
        Ok(report)
    }
}
