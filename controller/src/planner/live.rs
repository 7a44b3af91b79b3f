//! The planner's copy of the nodes, services and tasks it plans from, kept
//! current from the store's watch stream while this member leads.
//!
//! Why: a round used to decode the whole task table from the store. At 20,000
//! tasks that was ~16 % of a converging 1,000-node leader's CPU and a third of
//! the pages it touched, once per round. Kept from the stream, a round costs
//! what changed since the last one; the tasks are the watch events' own
//! ([`TaskRef`]), the same ones the dispatcher's tracker holds.
//!
//! Volumes, the cluster settings and the networks have no watch event of
//! their own (or are a handful of records): a round reads them from the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_proto::v1::{
    ClusterSettings, Node, Service, Task, Volume, WatchAction, WatchEvent, watch_event,
};

use crate::store::{ClusterView, StateMachine, StoreError, TaskRef, read_view};

/// The tables as of [`LiveView::revision`], by id (the store's order).
#[derive(Debug, Default)]
pub struct LiveView {
    /// The revision the tables were read at: changes up to it are in them.
    read_at: u64,
    /// The newest revision applied.
    revision: u64,
    nodes: BTreeMap<String, Node>,
    services: BTreeMap<String, Service>,
    tasks: BTreeMap<String, TaskRef>,
}

impl LiveView {
    /// The tables as the store has them now. Subscribe to the watch stream
    /// first: the changes after this read arrive there (those up to it are
    /// skipped by [`LiveView::apply`]).
    pub fn read(sm: &StateMachine) -> Result<LiveView, StoreError> {
        let revision = sm.revision()?;
        Ok(LiveView::from_view(revision, read_view(sm)?))
    }

    /// The tables of `view`, read at `revision`.
    pub fn from_view(revision: u64, view: ClusterView) -> LiveView {
        LiveView {
            read_at: revision,
            revision,
            nodes: view.nodes.into_iter().map(|n| (n.id.clone(), n)).collect(),
            services: view
                .services
                .into_iter()
                .map(|s| (s.id.clone(), s))
                .collect(),
            tasks: view
                .tasks
                .into_iter()
                .map(|t| (t.id.clone(), TaskRef::new(t)))
                .collect(),
        }
    }

    /// The newest revision whose changes are in the tables.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Applies one committed change. Changes at or before the read are in
    /// the tables already (one transaction's changes share a revision, so the
    /// filter is the read, not the last change applied).
    pub fn apply(&mut self, event: &Arc<WatchEvent>) {
        if event.revision <= self.read_at {
            return;
        }
        self.revision = self.revision.max(event.revision);
        let removed = event.action == WatchAction::Removed as i32;
        match &event.object {
            Some(watch_event::Object::Node(node)) => {
                put_or_remove(&mut self.nodes, &node.id, removed, || node.clone())
            }
            Some(watch_event::Object::Service(service)) => {
                put_or_remove(&mut self.services, &service.id, removed, || {
                    (**service).clone()
                })
            }
            Some(watch_event::Object::Task(task)) => {
                put_or_remove(&mut self.tasks, &task.id, removed, || {
                    TaskRef::from_event(event).expect("a task event")
                })
            }
            _ => {}
        }
    }

    /// The view a round plans from: these tables, with the volumes and
    /// settings the round read.
    pub fn view(&self, volumes: Vec<Volume>, settings: ClusterSettings) -> ClusterView<&Task> {
        ClusterView {
            nodes: self.nodes.values().cloned().collect(),
            services: self.services.values().cloned().collect(),
            tasks: self.tasks.values().map(|t| &**t).collect(),
            volumes,
            settings,
        }
    }
}

fn put_or_remove<T>(
    table: &mut BTreeMap<String, T>,
    id: &str,
    removed: bool,
    value: impl FnOnce() -> T,
) {
    if removed {
        table.remove(id);
    } else {
        table.insert(id.to_string(), value());
    }
}

#[cfg(test)]
mod tests {
    use berth_proto::v1::Task;

    use super::*;

    fn task(id: &str, node: &str) -> Task {
        Task {
            id: id.into(),
            node_id: node.into(),
            ..Default::default()
        }
    }

    fn event(revision: u64, action: WatchAction, object: watch_event::Object) -> Arc<WatchEvent> {
        Arc::new(WatchEvent {
            revision,
            action: action as i32,
            object: Some(object),
            time_ms: 0,
        })
    }

    fn task_ids(live: &LiveView) -> Vec<(String, String)> {
        let view = live.view(Vec::new(), Default::default());
        view.tasks
            .iter()
            .map(|t| (t.id.clone(), t.node_id.clone()))
            .collect()
    }

    #[test]
    fn changes_after_the_read_apply_in_order_and_earlier_ones_are_skipped() {
        let read = ClusterView {
            tasks: vec![task("b", "n1"), task("a", "")],
            ..Default::default()
        };
        let mut live = LiveView::from_view(10, read);
        // Already in the read: a change at revision 10 must not undo a later
        // state the read holds.
        live.apply(&event(
            10,
            WatchAction::Updated,
            watch_event::Object::Task(Box::new(task("a", "old"))),
        ));
        live.apply(&event(
            11,
            WatchAction::Updated,
            watch_event::Object::Task(Box::new(task("a", "n2"))),
        ));
        live.apply(&event(
            12,
            WatchAction::Created,
            watch_event::Object::Task(Box::new(task("c", ""))),
        ));
        live.apply(&event(
            12,
            WatchAction::Removed,
            watch_event::Object::Task(Box::new(task("b", "n1"))),
        ));
        assert_eq!(live.revision(), 12);
        assert_eq!(
            task_ids(&live),
            vec![("a".into(), "n2".into()), ("c".into(), "".into())],
            "in id order, as the store lists them"
        );
    }

    #[test]
    fn a_task_is_the_events_own_and_nodes_and_services_follow_too() {
        let mut live = LiveView::default();
        let change = event(
            1,
            WatchAction::Created,
            watch_event::Object::Task(Box::new(task("t", "n"))),
        );
        live.apply(&change);
        let held = live.tasks.get("t").expect("applied");
        assert!(held.ptr_eq(&TaskRef::from_event(&change).expect("a task")));
        let node = Node {
            id: "n".into(),
            ..Default::default()
        };
        let service = Service {
            id: "s".into(),
            ..Default::default()
        };
        live.apply(&event(
            2,
            WatchAction::Created,
            watch_event::Object::Node(node.clone()),
        ));
        live.apply(&event(
            3,
            WatchAction::Created,
            watch_event::Object::Service(Box::new(service)),
        ));
        live.apply(&event(
            4,
            WatchAction::Removed,
            watch_event::Object::Service(Box::new(Service {
                id: "s".into(),
                ..Default::default()
            })),
        ));
        let view = live.view(Vec::new(), Default::default());
        assert_eq!(view.nodes, vec![node]);
        assert!(view.services.is_empty());
    }
}
