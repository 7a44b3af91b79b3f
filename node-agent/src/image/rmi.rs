//! Removing an image as `docker rmi` does: by name or by image id (a prefix
//! will do), refused while a container uses it, its content removed at once
//! when nothing else needs it.
//!
//! Docker's rules, as they apply here (berth keeps no stopped containers:
//! a container that holds an image runs, or is about to):
//! - a name whose image has other names only loses that name ("Untagged");
//! - the last name of an image a container uses is refused, naming the
//!   task, and `-f` does not change that (Docker: "cannot be forced - image
//!   is being used by running container");
//! - an id with several names is refused unless forced (Docker: "must be
//!   forced - image is referenced in multiple repositories"); forced, every
//!   name goes.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ImageStore;
use super::digest::Digest;
use super::error::{ImageError, Result};
use super::gc::{Candidates, PruneReport, deleted_ids};
use super::index::{ContainerRef, Image};
use super::reference;

/// What `remove_image` did.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct RemoveReport {
    pub untagged: Vec<String>,
    /// Image ids whose content went (none while another name or a container
    /// still needs it).
    pub deleted: Vec<Digest>,
    pub content: PruneReport,
}

/// The names to remove, and whether the image's content may go with them.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Removal {
    pub untag: Vec<String>,
    pub id: Digest,
    /// The last names of the image go: its content is collected.
    pub last: bool,
}

/// Decides what removing `what` means among `images` with the containers'
/// `holds` (pure; see the module's rules).
pub(super) fn plan(
    what: &str,
    force: bool,
    images: &[Image],
    holds: &[ContainerRef],
) -> Result<Removal> {
    let by_name = reference::normalize(what)
        .ok()
        .and_then(|name| images.iter().find(|i| i.name == name));
    let (named, targets): (Option<&Image>, Vec<&Image>) = match by_name {
        Some(image) => (Some(image), vec![image]),
        None => (None, by_id(what, images)?),
    };
    let Some(first) = targets.first() else {
        return Err(ImageError::UnknownImage {
            name: reference::normalize(what).unwrap_or_else(|_| what.to_string()),
        });
    };
    let id = first.config_digest.clone();
    let all_names: Vec<&Image> = images.iter().filter(|i| i.config_digest == id).collect();
    let untag: Vec<String> = match named {
        Some(image) => vec![image.name.clone()],
        None => all_names.iter().map(|i| i.name.clone()).collect(),
    };
    let last = untag.len() == all_names.len();
    if last && let Some(user) = holds.iter().find(|c| c.image.config_digest == id) {
        return Err(ImageError::InUse {
            image: what.to_string(),
            task: user.container_id.clone(),
            id: id.short().to_string(),
        });
    }
    if named.is_none() && untag.len() > 1 && !force {
        return Err(ImageError::SeveralNames {
            id: id.short().to_string(),
            names: untag.join(", "),
        });
    }
    Ok(Removal { untag, id, last })
}

/// The images whose id `what` is or starts ("sha256:" optional), all of one id.
fn by_id<'a>(what: &str, images: &'a [Image]) -> Result<Vec<&'a Image>> {
    let hex = what.strip_prefix("sha256:").unwrap_or(what);
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(Vec::new());
    }
    let hex = hex.to_ascii_lowercase();
    let mut ids: BTreeMap<&Digest, Vec<&Image>> = BTreeMap::new();
    for image in images {
        if image.config_digest.hex().starts_with(&hex) {
            ids.entry(&image.config_digest).or_default().push(image);
        }
    }
    if ids.len() > 1 {
        return Err(ImageError::AmbiguousId {
            prefix: what.to_string(),
            ids: ids
                .keys()
                .map(|d| d.short().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(ids.into_values().next().unwrap_or_default())
}

impl ImageStore {
    /// `docker rmi [-f] IMAGE`: see the module's rules. The names go, then
    /// the image's blobs and layers that nothing else references, under one
    /// hold of the GC lock.
    pub async fn remove_image(&self, what: &str, force: bool) -> Result<RemoveReport> {
        let _gc = self.gc.write().await;
        let images = self.index.images()?;
        let holds = self.index.containers()?;
        let removal = plan(what, force, &images, &holds)?;
        let image = images
            .iter()
            .find(|i| i.config_digest == removal.id)
            .cloned();
        // All at once; the last names take the image's usage record along.
        self.index
            .remove_image_names(&removal.untag, removal.last.then_some(&removal.id))?;
        let content = match (removal.last, image) {
            (true, Some(image)) => self.collect(Some(Candidates::of([&image]))).await?,
            _ => PruneReport::default(),
        };
        Ok(RemoveReport {
            untagged: removal.untag,
            deleted: deleted_ids(vec![removal.id], &content),
            content,
        })
    }

    /// The containers (tasks) that use each image id now.
    pub fn users(&self) -> Result<BTreeMap<Digest, Vec<String>>> {
        let mut out: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for c in self.index.containers()? {
            out.entry(c.image.config_digest)
                .or_default()
                .push(c.container_id);
        }
        for users in out.values_mut() {
            users.sort();
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_of_an_image_with_other_names_is_only_untagged_even_in_use() {
        let (one, pinned) = (Image::named("web:1", b"c1"), Image::named("web:2", b"c1"));
        let images = vec![one.clone(), pinned];
        let r = plan("web:1", false, &images, &[ContainerRef::of("t1", &one)]).unwrap();
        assert_eq!(r.untag, vec![one.name]);
        assert!(!r.last);
    }

    #[test]
    fn the_last_name_of_an_image_a_task_uses_is_refused_even_forced() {
        let one = Image::named("web:1", b"c1");
        let images = vec![one.clone(), Image::named("db:1", b"c2")];
        for force in [false, true] {
            let err =
                plan("web:1", force, &images, &[ContainerRef::of("task-7", &one)]).unwrap_err();
            assert!(matches!(err, ImageError::InUse { ref task, .. } if task == "task-7"));
            assert!(err.to_string().contains("task task-7"), "{err}");
        }
        // By id too.
        let hex = one.config_digest.hex().to_string();
        let err = plan(
            &hex[..12],
            true,
            &images,
            &[ContainerRef::of("task-7", &one)],
        )
        .unwrap_err();
        assert!(matches!(err, ImageError::InUse { .. }), "{err}");
        // Unused, it goes with its content.
        let r = plan("docker.io/library/db:1", false, &images, &[]).unwrap();
        assert!(r.last);
    }

    #[test]
    fn an_id_with_several_names_must_be_forced() {
        let images = vec![
            Image::named("a:1", b"c1"),
            Image::named("b:1", b"c1"),
            Image::named("c:1", b"c9"),
        ];
        let id = images[0].config_digest.to_string();
        let err = plan(&id, false, &images, &[]).unwrap_err();
        assert!(matches!(err, ImageError::SeveralNames { .. }), "{err}");
        let r = plan(&id, true, &images, &[]).unwrap();
        assert_eq!(r.untag.len(), 2);
        assert!(r.last);
    }

    #[test]
    fn unknown_names_and_ambiguous_prefixes_are_refused() {
        let images: Vec<Image> = (0..40)
            .map(|i| Image::named(&format!("i:{i}"), format!("c{i}").as_bytes()))
            .collect();
        let err = plan("nothere:1", false, &images, &[]).unwrap_err();
        assert!(matches!(err, ImageError::UnknownImage { .. }), "{err}");
        // 40 ids: some two share their first hex digit.
        let shared = (0..16u32)
            .map(|d| char::from_digit(d, 16).unwrap().to_string())
            .find(|p| {
                images
                    .iter()
                    .filter(|i| i.config_digest.hex().starts_with(p.as_str()))
                    .count()
                    > 1
            })
            .unwrap();
        let err = plan(&shared, false, &images, &[]).unwrap_err();
        assert!(matches!(err, ImageError::AmbiguousId { .. }), "{err}");
    }
}
