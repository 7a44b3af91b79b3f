//! Which images garbage collection removes: a pure decision from the images,
//! when tasks last used them, the images tasks hold now and the disk's
//! figures, so that it is tested without a disk (the loop that measures the
//! disk and carries the plan out is `gc_loop`).
//!
//! The rules (kubelet's image GC, with berth's notion of use):
//! - an image is one image id (config digest) with all its names;
//! - images a container holds (a running task, or one about to run) stay;
//! - with a disk goal, images used less than `keep_recent` ago stay too: a
//!   task that ended, or a pull (the name set) that has not started its task
//!   yet. "Used" is the latest of: a task using it started, such a task
//!   ended, a name of it was set;
//! - the rest goes least recently used first, until the estimated bytes
//!   freed bring the disk under the low mark (the loop re-measures after
//!   each image and stops as soon as it is under).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::digest::Digest;
use super::error::ImageError;
use super::index::{Image, ImageUse};

/// A filesystem's size and free space, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskFigures {
    pub total: u64,
    /// Free to unprivileged users (`f_bavail`), as `df` counts it.
    pub available: u64,
}

impl DiskFigures {
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.available)
    }

    /// Whether at least `percent` % of the disk is used.
    pub fn at_or_above(&self, percent: u8) -> bool {
        u128::from(self.used()) * 100 >= u128::from(self.total) * u128::from(percent)
    }

    /// Bytes to free to get under `percent` % (0 if already under).
    pub fn to_free_for(&self, percent: u8) -> u64 {
        let allowed = u128::from(self.total) * u128::from(percent) / 100;
        u64::try_from(u128::from(self.used()).saturating_sub(allowed)).unwrap_or(u64::MAX)
    }

    /// Percent used, for messages.
    pub fn used_percent(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.used() as f64 * 100.0 / self.total as f64
    }
}

/// The high and low marks (percent of the disk used): above `high` GC starts,
/// and removes until the disk is under `low`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marks {
    high: u8,
    low: u8,
}

impl Marks {
    /// Refuses marks that could not work: `low` < `high` <= 100.
    pub fn new(high: u8, low: u8) -> Result<Marks, ImageError> {
        if high == 0 || high > 100 || low >= high {
            return Err(ImageError::BadMarks { high, low });
        }
        Ok(Marks { high, low })
    }
    pub fn high(&self) -> u8 {
        self.high
    }
    pub fn low(&self) -> u8 {
        self.low
    }
}

impl Default for Marks {
    /// kubelet's defaults.
    fn default() -> Marks {
        Marks { high: 85, low: 80 }
    }
}

/// What a collection aims at.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    /// Garbage collection: if the disk is at or above the high mark, free
    /// down to the low mark, sparing images used less than `keep_recent`
    /// seconds ago.
    Disk {
        figures: DiskFigures,
        marks: Marks,
        keep_recent: u64,
    },
    /// `image prune -a` (Docker's meaning): every image no container holds.
    Everything,
}

/// What the decision looks at.
pub struct Inputs<'a> {
    /// Every named image (one entry per name).
    pub images: &'a [Image],
    /// Usage records by image id.
    pub usage: &'a HashMap<Digest, ImageUse>,
    /// Image ids containers hold now.
    pub in_use: &'a HashSet<Digest>,
    /// Seconds since the epoch.
    pub now: u64,
}

/// One image to remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Victim {
    pub id: Digest,
    /// Every name of the image, sorted.
    pub names: Vec<String>,
    /// Seconds since the epoch (see the module's rules).
    pub last_used: u64,
    /// Layer bytes that go with it: blobs no image left after it (nor any
    /// image in use) shares. A lower bound: unpacked layers free more.
    pub bytes: u64,
}

/// The images to remove, in order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub victims: Vec<Victim>,
    /// Bytes to free to get under the low mark (0 without a disk goal).
    pub needed: u64,
}

/// Decides which images go (see the module's rules).
pub fn choose(inputs: &Inputs, goal: &Goal) -> Plan {
    let needed = match goal {
        Goal::Disk { figures, marks, .. } if !figures.at_or_above(marks.high) => {
            return Plan::default();
        }
        Goal::Disk { figures, marks, .. } => figures.to_free_for(marks.low),
        Goal::Everything => 0,
    };
    // Names and layers by image id.
    let mut by_id: BTreeMap<&Digest, Vec<&Image>> = BTreeMap::new();
    for image in inputs.images {
        by_id.entry(&image.config_digest).or_default().push(image);
    }
    // How many image ids reference each layer blob.
    let mut refs: HashMap<&Digest, usize> = HashMap::new();
    for images in by_id.values() {
        let layers: HashSet<&Digest> = images
            .iter()
            .flat_map(|i| i.layers.iter().map(|l| &l.digest))
            .collect();
        for d in layers {
            *refs.entry(d).or_default() += 1;
        }
    }
    let mut candidates: Vec<Victim> = by_id
        .iter()
        .filter(|(id, _)| !inputs.in_use.contains(**id))
        .map(|(id, images)| {
            let named = images.iter().map(|i| i.created).max().unwrap_or(0);
            let used = inputs.usage.get(*id).copied().unwrap_or_default();
            let last_used = named
                .max(used.last_started)
                .max(used.last_ended.unwrap_or(0));
            let mut names: Vec<String> = images.iter().map(|i| i.name.clone()).collect();
            names.sort();
            Victim {
                id: (*id).clone(),
                names,
                last_used,
                bytes: 0,
            }
        })
        .filter(|v| match goal {
            Goal::Disk { keep_recent, .. } => {
                inputs.now.saturating_sub(v.last_used) >= *keep_recent
            }
            Goal::Everything => true,
        })
        .collect();
    candidates.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.id.cmp(&b.id)));
    let mut victims = Vec::new();
    let mut freed = 0u64;
    for mut victim in candidates {
        if matches!(goal, Goal::Disk { .. }) && freed >= needed {
            break;
        }
        let mut sizes: HashMap<&Digest, u64> = HashMap::new();
        for image in &by_id[&victim.id] {
            for l in &image.layers {
                sizes.insert(&l.digest, l.size);
            }
        }
        for (digest, size) in sizes {
            if let Some(n) = refs.get_mut(digest) {
                *n -= 1;
                if *n == 0 {
                    victim.bytes += size;
                }
            }
        }
        freed = freed.saturating_add(victim.bytes);
        victims.push(victim);
    }
    Plan { victims, needed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::index::Layer;

    const MIB: u64 = 1 << 20;

    /// An image named `name` with layers (`blob`, size) created at `created`.
    fn image(name: &str, created: u64, layers: &[(&str, u64)]) -> Image {
        let mut i = Image::named(name, name.as_bytes());
        i.created = created;
        i.layers = layers
            .iter()
            .map(|(blob, size)| {
                let d = Digest::of(blob.as_bytes());
                Layer {
                    digest: d.clone(),
                    media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                    size: *size,
                    diff_id: d.clone(),
                    chain_id: d,
                }
            })
            .collect();
        i
    }

    fn started(at: u64) -> ImageUse {
        ImageUse {
            last_started: at,
            last_ended: None,
        }
    }

    /// A 100 MiB disk with `used` MiB used.
    fn disk(used: u64) -> DiskFigures {
        DiskFigures {
            total: 100 * MIB,
            available: (100 - used) * MIB,
        }
    }

    fn gc(used: u64, keep_recent: u64) -> Goal {
        Goal::Disk {
            figures: disk(used),
            marks: Marks::default(),
            keep_recent,
        }
    }

    fn names(plan: &Plan) -> Vec<&str> {
        plan.victims.iter().map(|v| v.names[0].as_str()).collect()
    }

    #[test]
    fn under_the_high_mark_nothing_goes() {
        let images = [image("a:1", 1, &[("a", 10 * MIB)])];
        let inputs = Inputs {
            images: &images,
            usage: &HashMap::new(),
            in_use: &HashSet::new(),
            now: 1000,
        };
        assert_eq!(choose(&inputs, &gc(84, 0)), Plan::default());
        assert_eq!(choose(&inputs, &gc(85, 0)).victims.len(), 1);
    }

    #[test]
    fn least_recently_used_unused_images_go_first_until_under_the_low_mark() {
        let images = [
            image("old:1", 10, &[("old", 4 * MIB)]),
            image("older:1", 5, &[("older", 4 * MIB)]),
            image("running:1", 1, &[("running", 4 * MIB)]),
            image("fresh:1", 50, &[("fresh", 4 * MIB)]),
        ];
        let usage: HashMap<Digest, ImageUse> = [
            // Pulled long ago, but a task started it late: recent use.
            (images[1].config_digest.clone(), started(60)),
        ]
        .into();
        let in_use: HashSet<Digest> = [images[2].config_digest.clone()].into();
        let inputs = Inputs {
            images: &images,
            usage: &usage,
            in_use: &in_use,
            now: 1000,
        };
        // 88 % used, low mark 80 %: 8 MiB to free, two images of 4 MiB.
        let plan = choose(&inputs, &gc(88, 0));
        assert_eq!(plan.needed, 8 * MIB);
        assert_eq!(
            names(&plan),
            ["docker.io/library/old:1", "docker.io/library/fresh:1"]
        );
        // prune -a: every unused image, the one in use stays.
        let plan = choose(&inputs, &Goal::Everything);
        assert_eq!(
            names(&plan),
            [
                "docker.io/library/old:1",
                "docker.io/library/fresh:1",
                "docker.io/library/older:1"
            ]
        );
    }

    #[test]
    fn images_of_recently_ended_tasks_stay() {
        let images = [
            image("ended:1", 1, &[("ended", 50 * MIB)]),
            image("long-ago:1", 1, &[("long-ago", MIB)]),
        ];
        let usage: HashMap<Digest, ImageUse> = [
            (
                images[0].config_digest.clone(),
                ImageUse {
                    last_started: 2,
                    last_ended: Some(950),
                },
            ),
            (images[1].config_digest.clone(), started(3)),
        ]
        .into();
        let inputs = Inputs {
            images: &images,
            usage: &usage,
            in_use: &HashSet::new(),
            now: 1000,
        };
        // Ended 50 s ago: kept for 300 s, whatever the disk says.
        assert_eq!(
            names(&choose(&inputs, &gc(99, 300))),
            ["docker.io/library/long-ago:1"]
        );
        // Once that time is over, it goes (after the older one).
        assert_eq!(
            names(&choose(&inputs, &gc(99, 30))),
            ["docker.io/library/long-ago:1", "docker.io/library/ended:1"]
        );
    }

    #[test]
    fn shared_layers_count_only_when_their_last_image_goes() {
        let images = [
            image("a:1", 1, &[("base", 10 * MIB), ("a", MIB)]),
            image("b:1", 2, &[("base", 10 * MIB), ("b", MIB)]),
            image("c:1", 3, &[("c", 10 * MIB)]),
        ];
        let inputs = Inputs {
            images: &images,
            usage: &HashMap::new(),
            in_use: &HashSet::new(),
            now: 1000,
        };
        // 10 MiB to free: a frees 1 (base is b's too), b 11: both go, c stays.
        let plan = choose(&inputs, &gc(90, 0));
        assert_eq!(
            plan.victims.iter().map(|v| v.bytes).collect::<Vec<_>>(),
            [MIB, 11 * MIB]
        );
        assert_eq!(
            names(&plan),
            ["docker.io/library/a:1", "docker.io/library/b:1"]
        );
        // A layer an image in use shares never counts.
        let in_use: HashSet<Digest> = [images[1].config_digest.clone()].into();
        let inputs = Inputs {
            in_use: &in_use,
            ..inputs
        };
        let plan = choose(&inputs, &Goal::Everything);
        assert_eq!(plan.victims[0].bytes, MIB);
    }

    #[test]
    fn every_name_of_an_image_goes_together_and_spares_those_a_container_holds() {
        let images = vec![
            Image::named("r/b:1", b"one"),
            Image::named("r/b:2", b"one"),
            Image::named("r/c:1", b"two"),
            Image::named("r/a:1", b"three"),
        ];
        let in_use: HashSet<Digest> = [images[0].config_digest.clone()].into();
        let inputs = Inputs {
            images: &images,
            usage: &HashMap::new(),
            in_use: &in_use,
            now: 0,
        };
        let mut names: Vec<String> = choose(&inputs, &Goal::Everything)
            .victims
            .into_iter()
            .flat_map(|v| v.names)
            .collect();
        names.sort();
        assert_eq!(names, ["docker.io/r/a:1", "docker.io/r/c:1"]);
        // Without the container both names of "one" go as one image.
        let inputs = Inputs {
            in_use: &HashSet::new(),
            ..inputs
        };
        let plan = choose(&inputs, &Goal::Everything);
        let one = plan
            .victims
            .iter()
            .find(|v| v.id == images[0].config_digest)
            .unwrap();
        assert_eq!(one.names, ["docker.io/r/b:1", "docker.io/r/b:2"]);
    }

    #[test]
    fn marks_must_leave_room_between_them() {
        assert!(Marks::new(85, 80).is_ok());
        for (high, low) in [(80, 80), (80, 90), (101, 80), (0, 0)] {
            let err = Marks::new(high, low).unwrap_err().to_string();
            assert!(err.contains(&format!("low mark {low} %")), "{err}");
        }
    }
}
