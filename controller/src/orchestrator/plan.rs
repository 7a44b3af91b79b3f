//! The orchestrator's working copy of the task table: edits, creations and
//! deletions of one pass, and the services whose rollout status (or, for an
//! automatic rollback, spec) changed; turned into compare-and-set store
//! operations at the end (one operation per object, at the version it was read).

use std::collections::{BTreeMap, BTreeSet};

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Op};
use berth_proto::v1::{Node, Service, Task, TaskState, TaskStatus, Timestamps};

use super::task::wrap;
use crate::store::{Table, delete, put, put_kind};

pub struct Plan<'a> {
    /// The tasks as read, by reference.
    original: Vec<&'a Task>,
    /// Copies of the tasks this pass changed, by index (copy on write).
    edits: BTreeMap<usize, Task>,
    deleted: BTreeSet<usize>,
    created: Vec<Task>,
    /// Services to write, each as changed from the version read.
    services: Vec<Service>,
    /// Services to delete (`run --rm` one-offs that ended), as read.
    removed_services: Vec<Service>,
    pub now_ms: i64,
    /// The earliest time (Unix ms) a waiting decision falls due: a restart
    /// delay or an update delay that runs out with nothing else changing.
    pub due_ms: Option<i64>,
}

impl<'a> Plan<'a> {
    pub fn new(original: impl IntoIterator<Item = &'a Task>, now_ms: i64) -> Self {
        Plan {
            original: original.into_iter().collect(),
            edits: BTreeMap::new(),
            deleted: BTreeSet::new(),
            created: Vec::new(),
            services: Vec::new(),
            removed_services: Vec::new(),
            now_ms,
            due_ms: None,
        }
    }

    /// Something waits until `at`: the next pass must run by then.
    pub fn due_at(&mut self, at: i64) {
        self.due_ms = Some(self.due_ms.map_or(at, |d| d.min(at)));
    }

    pub fn len(&self) -> usize {
        self.original.len()
    }

    pub fn is_empty(&self) -> bool {
        self.original.is_empty()
    }

    /// The task as this pass has left it so far.
    pub fn task(&self, i: usize) -> &Task {
        self.edits.get(&i).unwrap_or(self.original[i])
    }

    /// The task as it was read.
    pub fn original(&self, i: usize) -> &'a Task {
        self.original[i]
    }

    /// Whether this pass changed the task already.
    pub fn touched(&self, i: usize) -> bool {
        self.deleted.contains(&i) || self.edits.get(&i).is_some_and(|t| t != self.original[i])
    }

    pub fn edit(&mut self, i: usize) -> &mut Task {
        let original = self.original[i];
        self.edits.entry(i).or_insert_with(|| original.clone())
    }

    /// Sets the desired state (only ever forward).
    pub fn set_desired(&mut self, i: usize, state: TaskState) {
        if self.task(i).desired_state < state as i32 {
            self.edit(i).desired_state = state as i32;
        }
    }

    pub fn delete(&mut self, i: usize) {
        self.deleted.insert(i);
    }

    pub fn create(&mut self, task: Task) {
        self.created.push(task);
    }

    /// Writes `service` (changed from the one read, whose `version` it keeps).
    pub fn put_service(&mut self, service: Service) {
        self.services.push(service);
    }

    /// Deletes `service` (at the version read).
    pub fn delete_service(&mut self, service: &Service) {
        self.removed_services.push(service.clone());
    }

    /// Puts for changed tasks (at the version read), creates (absent) and
    /// deletes (at the version read), then puts of changed services (at the
    /// version read).
    pub fn into_ops(self) -> Vec<Op> {
        // Sized once: a pass that creates 20,000 tasks grew the list by
        // doubling, copying it into twice the pages.
        let mut ops = Vec::with_capacity(
            self.deleted.len()
                + self.edits.len()
                + self.created.len()
                + self.services.len()
                + self.removed_services.len(),
        );
        let mut edits = self.edits;
        for i in &self.deleted {
            let read = self.original[*i];
            edits.remove(i);
            ops.push(delete(Table::Task, &read.id, Expect::Version, read.version));
        }
        for (i, mut task) in edits {
            let read = self.original[i];
            if task != *read {
                let ts = task.timestamps.get_or_insert_with(Default::default);
                ts.updated_ms = self.now_ms;
                ops.push(put(wrap(task), Expect::Version, read.version));
            }
        }
        for task in self.created {
            ops.push(put(wrap(task), Expect::Absent, 0));
        }
        for service in self.services {
            let version = service.version;
            ops.push(put_kind(
                Kind::Service(Box::new(service)),
                Expect::Version,
                version,
            ));
        }
        for service in self.removed_services {
            ops.push(delete(
                Table::Service,
                &service.id,
                Expect::Version,
                service.version,
            ));
        }
        ops
    }
}

/// A new task of `service` in `slot`: PENDING for the scheduler, or ASSIGNED
/// when `node` is given (global services).
pub fn new_task(
    service: &Service,
    slot: u64,
    node: Option<&Node>,
    id: String,
    now_ms: i64,
) -> Task {
    let spec = service.spec.clone().unwrap_or_default();
    let (state, node_id, message) = match node {
        Some(n) => (
            TaskState::Assigned,
            n.id.clone(),
            format!(
                "assigned to node {} (global service)",
                if n.name.is_empty() { &n.id } else { &n.name }
            ),
        ),
        None => (
            TaskState::Pending,
            String::new(),
            "waiting for a node".to_string(),
        ),
    };
    Task {
        id,
        service_id: service.id.clone(),
        service_name: spec.name.clone(),
        slot,
        node_id,
        spec: Some(spec),
        spec_version: service.spec_version,
        desired_state: TaskState::Running as i32,
        status: Some(TaskStatus {
            state: state as i32,
            message,
            timestamp_ms: now_ms,
            ..Default::default()
        }),
        timestamps: Some(Timestamps {
            created_ms: now_ms,
            updated_ms: now_ms,
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::store::op;

    #[test]
    fn one_op_per_changed_task_at_the_version_read() {
        let tasks = vec![
            Task {
                id: "a".into(),
                version: 4,
                ..Default::default()
            },
            Task {
                id: "b".into(),
                version: 5,
                ..Default::default()
            },
            Task {
                id: "c".into(),
                version: 6,
                ..Default::default()
            },
        ];
        let mut plan = Plan::new(&tasks, 100);
        plan.set_desired(0, TaskState::Shutdown);
        plan.set_desired(0, TaskState::Running);
        assert_eq!(plan.task(0).desired_state, TaskState::Shutdown as i32);
        assert!(plan.touched(0));
        assert!(!plan.touched(1));
        plan.delete(2);
        plan.create(new_task(&Service::default(), 1, None, "d".into(), 100));
        let ops = plan.into_ops();
        assert_eq!(ops.len(), 3);
        match &ops[1].op {
            Some(op::Op::Put(p)) => {
                assert_eq!((p.expect, p.version), (Expect::Version as i32, 4));
                match p.object.as_ref().and_then(|o| o.kind.as_ref()) {
                    Some(Kind::Task(t)) => {
                        assert_eq!(t.timestamps.as_ref().map(|t| t.updated_ms), Some(100));
                    }
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
        match &ops[0].op {
            Some(op::Op::Delete(d)) => {
                assert_eq!((d.id.as_str(), d.version), ("c", 6));
            }
            other => panic!("{other:?}"),
        }
        match &ops[2].op {
            Some(op::Op::Put(p)) => assert_eq!(p.expect, Expect::Absent as i32),
            other => panic!("{other:?}"),
        }
    }
}
