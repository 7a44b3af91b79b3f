//! A decoded task shared by every reader on the leader.
//!
//! The watch stream hands each committed change out once, decoded, behind an
//! `Arc`. The planner's view and the dispatcher's tracker both keep the task
//! tables current from it; holding the event itself (not a copy of its task)
//! makes the two share one decoded task. At 20,000 tasks a decoded table is
//! ~40 MB (a task carries its whole service spec), so a copy per reader was a
//! large part of the leader's memory.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use berth_proto::v1::{Task, WatchEvent, watch_event};

/// A task: the watch event that carried it, or one read from the store.
#[derive(Clone)]
pub struct TaskRef(Arc<WatchEvent>);

impl TaskRef {
    /// The task a watch event carries (None for any other kind).
    pub fn from_event(event: &Arc<WatchEvent>) -> Option<TaskRef> {
        matches!(event.object, Some(watch_event::Object::Task(_))).then(|| TaskRef(event.clone()))
    }

    /// A task read from the store (no event carried it).
    pub fn new(task: Task) -> TaskRef {
        TaskRef(Arc::new(WatchEvent {
            object: Some(watch_event::Object::Task(Box::new(task))),
            ..Default::default()
        }))
    }

    /// Whether both are the same decoded task (not only equal ones).
    pub fn ptr_eq(&self, other: &TaskRef) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Deref for TaskRef {
    type Target = Task;

    fn deref(&self) -> &Task {
        match &self.0.object {
            Some(watch_event::Object::Task(task)) => task,
            // Both constructors hold a task and nothing changes it.
            _ => unreachable!("a TaskRef always holds a task"),
        }
    }
}

impl Borrow<Task> for TaskRef {
    fn borrow(&self) -> &Task {
        self
    }
}

impl PartialEq for TaskRef {
    fn eq(&self, other: &TaskRef) -> bool {
        **self == **other
    }
}

impl fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Task::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_event_is_shared_and_other_events_are_not_tasks() {
        let task = Task {
            id: "t1".into(),
            ..Default::default()
        };
        let event = Arc::new(WatchEvent {
            revision: 3,
            object: Some(watch_event::Object::Task(Box::new(task.clone()))),
            ..Default::default()
        });
        let a = TaskRef::from_event(&event).expect("a task event");
        let b = TaskRef::from_event(&event).expect("a task event");
        assert!(a.ptr_eq(&b), "both hold the event's one task");
        assert_eq!(*a, task);
        let read = TaskRef::new(task.clone());
        assert_eq!(read, a);
        assert!(!read.ptr_eq(&a));
        let node = Arc::new(WatchEvent {
            object: Some(watch_event::Object::Node(Default::default())),
            ..Default::default()
        });
        assert!(TaskRef::from_event(&node).is_none());
    }
}
