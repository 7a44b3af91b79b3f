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
use super::gc_plan::{Goal, Inputs, Plan, Victim, choose};
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

impl PruneReport {
    /// Adds what another collection removed.
    pub fn absorb(&mut self, other: PruneReport) {
        self.blobs.extend(other.blobs);
        self.snapshots.extend(other.snapshots);
        self.bytes += other.bytes;
        self.blobs.sort();
        self.snapshots.sort();
    }
}

/// What `prune_images` takes besides content nothing references.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneScope {
    /// Docker's `image prune`: dangling content only, the blobs and layers
    /// no name and no container references (what removed names, moved tags
    /// and interrupted pulls left). Named images stay.
    Dangling,
    /// Docker's `image prune -a`: also every named image no container uses.
    Unused,
}

/// What `prune_images` removed.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImagePruneReport {
    /// Names removed (only with `PruneScope::Unused`), sorted.
    pub untagged: Vec<String>,
    /// Image ids (config digests) whose content went.
    pub deleted: Vec<Digest>,
    pub content: PruneReport,
}

/// The blobs and snapshots a collection may remove (`None`: any).
#[derive(Default)]
pub(super) struct Candidates {
    pub blobs: HashSet<Digest>,
    pub snapshots: HashSet<Digest>,
}

impl Candidates {
    pub fn of<'a>(images: impl IntoIterator<Item = &'a Image>) -> Candidates {
        let mut c = Candidates::default();
        for image in images {
            c.blobs.extend(image.blobs().cloned());
            c.snapshots
                .extend(image.layers.iter().map(|l| l.chain_id.clone()));
        }
        c
    }
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
        self.collect(None).await
    }

    /// Docker's `image prune [-a]` (see `PruneScope`): the one function
    /// `berth image prune`, `berth-agent image prune` and garbage collection
    /// share. Names and content go under one hold of the GC lock, so no pull
    /// or container mount slips in between.
    pub async fn prune_images(&self, scope: PruneScope) -> Result<ImagePruneReport> {
        let _gc = self.gc.write().await;
        let mut report = ImagePruneReport::default();
        if scope == PruneScope::Unused {
            for victim in &self.plan(&Goal::Everything)?.victims {
                self.remove_victim(victim, &mut report).await?;
            }
        }
        report.content.absorb(self.collect(None).await?);
        report.untagged.sort();
        Ok(report)
    }

    /// What `goal` removes, from the index as it is now. The caller holds
    /// the GC lock alone (no container may take an image meanwhile).
    pub(super) fn plan(&self, goal: &Goal) -> Result<Plan> {
        let images = self.index.images()?;
        let in_use = self
            .index
            .containers()?
            .into_iter()
            .map(|c| c.image.config_digest)
            .collect();
        let usage = self.index.uses()?;
        let inputs = Inputs {
            images: &images,
            usage: &usage,
            in_use: &in_use,
            now: super::now(),
        };
        Ok(choose(&inputs, goal))
    }

    /// Removes one image of a plan: every name of it at once (one index
    /// transaction: a crash leaves all names or none), then its blobs and
    /// layers nothing else references. Content a crash leaves after the
    /// names went is unreferenced, and the next `collect(None)` takes it.
    /// The caller holds the GC lock alone.
    pub(super) async fn remove_victim(
        &self,
        victim: &Victim,
        report: &mut ImagePruneReport,
    ) -> Result<()> {
        let mut images = Vec::new();
        for name in &victim.names {
            images.extend(self.index.image(name)?);
        }
        self.index
            .remove_image_names(&victim.names, Some(&victim.id))?;
        let content = self.collect(Some(Candidates::of(&images))).await?;
        report.untagged.extend(victim.names.iter().cloned());
        report
            .deleted
            .extend(deleted_ids(vec![victim.id.clone()], &content));
        report.content.absorb(content);
        Ok(())
    }

    /// Removes what nothing references among `only` (everything if `None`).
    /// The caller holds the GC lock alone.
    pub(super) async fn collect(&self, only: Option<Candidates>) -> Result<PruneReport> {
        let (index, content, snaps) = (
            self.index.clone(),
            self.content.clone(),
            self.snapshots.clone(),
        );
        let report = blocking("prune", move || {
            let refs = count(&index)?;
            let blob_ok = |d: &Digest| only.as_ref().is_none_or(|o| o.blobs.contains(d));
            let snap_ok = |d: &Digest| only.as_ref().is_none_or(|o| o.snapshots.contains(d));
            let mut report = PruneReport::default();
            for blob in content.list()? {
                if !refs.blobs.contains_key(&blob) && blob_ok(&blob) {
                    report.bytes += content.size(&blob).unwrap_or_default();
                    content.delete(&blob)?;
                    report.blobs.push(blob);
                }
            }
            let mut kept = HashSet::new();
            for snap in index.snapshots()? {
                if refs.snapshots.contains_key(&snap.chain_id) || !snap_ok(&snap.chain_id) {
                    kept.insert(snap.id);
                } else {
                    // The record first: a crash between leaves a directory
                    // nothing names, which the next full collection sweeps.
                    index.remove_snapshot(&snap.chain_id)?;
                    snaps.remove(snap.id)?;
                    report.snapshots.push(snap.chain_id);
                }
            }
            if only.is_none() {
                for id in snaps.on_disk()? {
                    if !kept.contains(&id) {
                        snaps.remove(id)?;
                    }
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

/// The image ids among `ids` whose config blob the collection removed.
pub(super) fn deleted_ids(mut ids: Vec<Digest>, content: &PruneReport) -> Vec<Digest> {
    ids.sort();
    ids.dedup();
    ids.retain(|id| content.blobs.binary_search(id).is_ok());
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_whose_config_went_count_as_deleted() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let content = PruneReport {
            blobs: vec![a.clone()],
            ..PruneReport::default()
        };
        assert_eq!(deleted_ids(vec![b, a.clone(), a.clone()], &content), [a]);
    }
}
