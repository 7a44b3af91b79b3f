//! Named local volumes in placement: a task that mounts a volume runs only on
//! the node that holds it, and a volume that is on no node yet (or does not
//! exist at all) is put on the node its first task is placed on, by the same
//! commit as that placement. A task never moves to an empty volume elsewhere:
//! while its volume's node is down, drained or full, it waits with the reason.
//!
//! Every placement of a task that mounts a volume also writes the volume (at
//! the version read): `volume rm` deletes it at the version it checked for
//! users, so a placement and a removal can never both succeed.

use std::collections::{BTreeMap, BTreeSet};

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Op};
use berth_proto::v1::{Node, NodeAvailability, NodeStatus, ServiceSpec, Timestamps, Volume, mount};

use crate::store::put;

/// The only driver berth has.
pub const LOCAL_DRIVER: &str = "local";

struct Entry {
    volume: Volume,
    /// The version read; `None`: made in this round.
    read: Option<u64>,
    written: bool,
}

/// The volumes as this round reads and changes them.
pub struct VolumeBook {
    by_name: BTreeMap<String, Entry>,
}

/// A node as messages name it.
pub fn node_name(node: &Node) -> &str {
    if node.name.is_empty() {
        &node.id
    } else {
        &node.name
    }
}

impl VolumeBook {
    pub fn new(volumes: &[Volume]) -> VolumeBook {
        let by_name = volumes
            .iter()
            .map(|v| {
                let entry = Entry {
                    volume: v.clone(),
                    read: Some(v.version),
                    written: false,
                };
                (v.name.clone(), entry)
            })
            .collect();
        VolumeBook { by_name }
    }

    /// The node (an index into `nodes`) the volumes in `names` pin a task to:
    /// `None` when none of them is on a node yet; an error saying why the
    /// task cannot be placed at all.
    pub fn pin(&self, names: &BTreeSet<&str>, nodes: &[Node]) -> Result<Option<usize>, String> {
        let bound: Vec<(&str, &str)> = names
            .iter()
            .filter_map(|name| {
                let entry = self.by_name.get(*name)?;
                let node = entry.volume.node_id.as_str();
                (!node.is_empty()).then_some((*name, node))
            })
            .collect();
        let Some((first_name, first_node)) = bound.first().copied() else {
            return Ok(None);
        };
        if let Some((other_name, other_node)) = bound.iter().find(|(_, n)| *n != first_node) {
            let name_of = |id: &str| {
                nodes
                    .iter()
                    .find(|n| n.id == id)
                    .map_or(id.to_string(), |n| node_name(n).to_string())
            };
            return Err(format!(
                "volumes {first_name} (node {}) and {other_name} (node {}) are on different \
                 nodes: a task can mount the volumes of one node only",
                name_of(first_node),
                name_of(other_node)
            ));
        }
        match nodes.iter().position(|n| n.id == first_node) {
            Some(i) => Ok(Some(i)),
            None => Err(format!(
                "volume {first_name} is on node {first_node}, which is no longer in the \
                 cluster: remove the volume (`berth volume rm`) to make it anew elsewhere"
            )),
        }
    }

    /// Records that a task of `spec` was placed on `node`: its volumes are
    /// written with the placement, made (or put on the node) when needed.
    pub fn placed(
        &mut self,
        spec: &ServiceSpec,
        node: &Node,
        now_ms: i64,
        new_id: &mut dyn FnMut() -> String,
    ) {
        for m in &spec.mounts {
            if m.kind != mount::Kind::Volume as i32 {
                continue;
            }
            let entry = self
                .by_name
                .entry(m.source.clone())
                .or_insert_with(|| Entry {
                    volume: Volume {
                        id: new_id(),
                        name: m.source.clone(),
                        driver: LOCAL_DRIVER.to_string(),
                        labels: m.volume_labels.clone(),
                        created_at_first_use: true,
                        timestamps: Some(Timestamps {
                            created_ms: now_ms,
                            updated_ms: now_ms,
                        }),
                        ..Default::default()
                    },
                    read: None,
                    written: false,
                });
            if entry.volume.node_id.is_empty() {
                entry.volume.node_id = node.id.clone();
                let ts = entry.volume.timestamps.get_or_insert_with(Default::default);
                ts.updated_ms = now_ms;
            }
            entry.written = true;
        }
    }

    /// The writes: new volumes (absent before), the others at the version read.
    pub fn ops(self) -> Vec<Op> {
        self.by_name
            .into_values()
            .filter(|e| e.written)
            .map(|e| match e.read {
                None => put_volume(e.volume, Expect::Absent, 0),
                Some(version) => put_volume(e.volume, Expect::Version, version),
            })
            .collect()
    }
}

fn put_volume(volume: Volume, expect: Expect, version: u64) -> Op {
    put(
        berth_proto::store::Object {
            kind: Some(Kind::Volume(volume)),
        },
        expect,
        version,
    )
}

/// Why a task pinned to `node` by `volume` cannot go there, when the node
/// takes no new tasks at all (down, drained, paused).
pub fn unavailable(volume: &str, node: &Node) -> Option<String> {
    let why = if node.status != NodeStatus::Ready as i32 {
        if node.status == NodeStatus::Down as i32 {
            "down"
        } else {
            "not ready"
        }
    } else if node.availability == NodeAvailability::Drain as i32 {
        "drained"
    } else if node.availability == NodeAvailability::Pause as i32 {
        "paused"
    } else {
        return None;
    };
    Some(format!(
        "volume {volume} is on node {}, which is {why}: the task waits for that node \
         (it does not move to an empty volume elsewhere)",
        node_name(node)
    ))
}

/// The volume a pinned task is held by, for messages: the first bound one.
pub fn pinning_volume<'a>(book: &VolumeBook, names: &BTreeSet<&'a str>) -> &'a str {
    names
        .iter()
        .find(|n| {
            book.by_name
                .get(**n)
                .is_some_and(|e| !e.volume.node_id.is_empty())
        })
        .copied()
        .unwrap_or_default()
}

/// The volume an op writes.
pub fn put_volume_name(op: &Op) -> Option<&str> {
    match op.op.as_ref()? {
        berth_proto::store::op::Op::Put(p) => match p.object.as_ref()?.kind.as_ref()? {
            Kind::Volume(v) => Some(v.name.as_str()),
            _ => None,
        },
        _ => None,
    }
}

/// Drops the volume writes no placement in `ops` needs any more (the
/// allocator took back the placement that made them).
pub fn keep_used(ops: &mut Vec<Op>) {
    let used: BTreeSet<String> = ops
        .iter()
        .filter_map(crate::store::ops::put_task)
        .filter(|t| !t.node_id.is_empty())
        .filter_map(|t| t.spec.as_ref())
        .flat_map(|s| {
            berth_proto::mounts::volume_names(s)
                .into_iter()
                .map(str::to_string)
        })
        .collect();
    ops.retain(|o| put_volume_name(o).is_none_or(|name| used.contains(name)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::schedule_with;
    use berth_proto::store::op;
    use berth_proto::v1::{Mount, ResourceRequirements, Resources, Task, mount::Kind as M};

    fn node(name: &str) -> Node {
        crate::scheduler::tests::node(name, 4000, 1 << 30)
    }

    fn spec(volumes: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: "db".into(),
            mounts: volumes
                .iter()
                .map(|v| Mount {
                    kind: M::Volume as i32,
                    source: v.to_string(),
                    target: format!("/{v}"),
                    volume_labels: [("made".to_string(), "by-mount".to_string())].into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn pending(slot: u64, spec: &ServiceSpec) -> Task {
        crate::scheduler::tests::pending(&format!("t{slot}"), "db", slot, spec)
    }

    fn volume(name: &str, node: &str) -> Volume {
        Volume {
            id: format!("v-{name}"),
            name: name.into(),
            driver: LOCAL_DRIVER.into(),
            node_id: node.into(),
            version: 7,
            ..Default::default()
        }
    }

    /// The volume puts (object, expect, version) and the task puts of a round.
    fn split(ops: &[Op]) -> (Vec<(Volume, i32, u64)>, Vec<Task>) {
        let (mut volumes, mut tasks) = (Vec::new(), Vec::new());
        for o in ops {
            let Some(op::Op::Put(p)) = &o.op else {
                panic!("not a put: {o:?}");
            };
            match p.object.as_ref().and_then(|o| o.kind.clone()) {
                Some(Kind::Volume(v)) => {
                    assert!(tasks.is_empty(), "volume writes come first");
                    volumes.push((v, p.expect, p.version));
                }
                Some(Kind::Task(t)) => tasks.push(*t),
                other => panic!("unexpected {other:?}"),
            }
        }
        (volumes, tasks)
    }

    fn message(t: &Task) -> &str {
        t.status.as_ref().map_or("", |s| s.message.as_str())
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("new-{n}")
        }
    }

    #[test]
    fn a_volume_that_does_not_exist_is_made_on_the_node_of_its_first_task() {
        let nodes = vec![node("a"), node("b")];
        let s = spec(&["data"]);
        let tasks = vec![pending(1, &s), pending(2, &s)];
        let ops = schedule_with(&nodes, &[], &tasks, 5, &mut ids());
        let (volumes, placed) = split(&ops);
        assert_eq!(volumes.len(), 1);
        let (v, expect, _) = &volumes[0];
        assert_eq!(*expect, Expect::Absent as i32);
        assert_eq!((v.id.as_str(), v.name.as_str()), ("new-1", "data"));
        assert_eq!(v.driver, "local");
        assert!(v.created_at_first_use);
        assert_eq!(v.labels.get("made").map(String::as_str), Some("by-mount"));
        // Both replicas share the volume, so both go to its node (no spread).
        assert_eq!(placed.len(), 2);
        for t in &placed {
            assert_eq!(t.node_id, v.node_id, "{}", t.id);
        }
    }

    #[test]
    fn tasks_go_only_to_the_node_that_holds_their_volume() {
        let nodes = vec![node("a"), node("b"), node("c")];
        let s = spec(&["data"]);
        let tasks: Vec<Task> = (1..=3).map(|i| pending(i, &s)).collect();
        let ops = schedule_with(&nodes, &[volume("data", "id-b")], &tasks, 5, &mut ids());
        let (volumes, placed) = split(&ops);
        assert_eq!(placed.len(), 3);
        assert!(placed.iter().all(|t| t.node_id == "id-b"));
        // The volume is written at the version read, node unchanged.
        assert_eq!(volumes.len(), 1);
        assert_eq!(volumes[0].0.node_id, "id-b");
        assert_eq!((volumes[0].1, volumes[0].2), (Expect::Version as i32, 7));
    }

    #[test]
    fn a_volume_made_without_a_node_gets_the_node_of_its_first_task() {
        let nodes = vec![node("a")];
        let s = spec(&["data"]);
        let ops = schedule_with(
            &nodes,
            &[volume("data", "")],
            &[pending(1, &s)],
            5,
            &mut ids(),
        );
        let (volumes, placed) = split(&ops);
        assert_eq!(placed[0].node_id, "id-a");
        assert_eq!(volumes[0].0.node_id, "id-a");
        assert_eq!(volumes[0].0.id, "v-data");
        assert_eq!((volumes[0].1, volumes[0].2), (Expect::Version as i32, 7));
    }

    #[test]
    fn a_task_waits_while_its_volumes_node_is_drained_down_or_paused() {
        let s = spec(&["data"]);
        for (edit, word) in [
            (
                (|n: &mut Node| n.availability = NodeAvailability::Drain as i32) as fn(&mut Node),
                "drained",
            ),
            (|n: &mut Node| n.status = NodeStatus::Down as i32, "down"),
            (
                |n: &mut Node| n.availability = NodeAvailability::Pause as i32,
                "paused",
            ),
        ] {
            let mut nodes = vec![node("a"), node("b")];
            edit(&mut nodes[1]);
            let ops = schedule_with(
                &nodes,
                &[volume("data", "id-b")],
                &[pending(1, &s)],
                5,
                &mut ids(),
            );
            let (volumes, tasks) = split(&ops);
            assert!(
                volumes.is_empty(),
                "{word}: nothing is written for a waiting task"
            );
            assert!(tasks[0].node_id.is_empty(), "{word}: never moved to node a");
            assert_eq!(
                message(&tasks[0]),
                format!(
                    "volume data is on node b, which is {word}: the task waits for that node \
                     (it does not move to an empty volume elsewhere)"
                )
            );
        }
    }

    #[test]
    fn a_full_volume_node_is_explained_for_that_node_alone() {
        let nodes = vec![node("a"), node("b")];
        let mut s = spec(&["data"]);
        s.resources = Some(ResourceRequirements {
            reservations: Some(Resources {
                milli_cpus: 0,
                memory_bytes: 2 << 30,
                pids: 0,
            }),
            limits: None,
        });
        let ops = schedule_with(
            &nodes,
            &[volume("data", "id-b")],
            &[pending(1, &s)],
            5,
            &mut ids(),
        );
        let (_, tasks) = split(&ops);
        assert_eq!(
            message(&tasks[0]),
            "volume data is on node b: no node has 2 GiB of memory free: 1 node checked"
        );
    }

    #[test]
    fn volumes_on_two_nodes_cannot_be_mounted_together() {
        let nodes = vec![node("a"), node("b")];
        let s = spec(&["one", "two"]);
        let ops = schedule_with(
            &nodes,
            &[volume("one", "id-a"), volume("two", "id-b")],
            &[pending(1, &s)],
            5,
            &mut ids(),
        );
        let (_, tasks) = split(&ops);
        assert_eq!(
            message(&tasks[0]),
            "cannot be placed: volumes one (node a) and two (node b) are on different nodes: \
             a task can mount the volumes of one node only"
        );
        let ops = schedule_with(
            &nodes,
            &[volume("one", "gone")],
            &[pending(1, &s)],
            5,
            &mut ids(),
        );
        let (_, tasks) = split(&ops);
        assert!(
            message(&tasks[0]).contains("which is no longer in the cluster"),
            "{}",
            message(&tasks[0])
        );
    }

    #[test]
    fn volume_writes_of_placements_taken_back_are_dropped() {
        let nodes = vec![node("a")];
        let s = spec(&["data"]);
        let mut ops = schedule_with(&nodes, &[], &[pending(1, &s)], 5, &mut ids());
        assert_eq!(ops.len(), 2);
        ops.retain(|o| crate::store::ops::put_task(o).is_none());
        keep_used(&mut ops);
        assert!(ops.is_empty());
    }
}
