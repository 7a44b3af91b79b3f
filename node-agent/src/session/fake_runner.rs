//! A task runner for the session's unit tests, in place of the network
//! service and the supervisor: it records every assignment set it is given,
//! and the test reports task status through it as the supervisor would.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use berth_proto::v1::{Assignments, TaskStatusUpdate};
use tokio::sync::{mpsc, watch};

use super::TaskRunner;

pub struct FakeRunner {
    sets: Mutex<Vec<Assignments>>,
    statuses: Mutex<BTreeMap<String, TaskStatusUpdate>>,
    updates: mpsc::UnboundedSender<TaskStatusUpdate>,
    /// The shared sequence "applied" (the network service's in production).
    pub applied: watch::Sender<u64>,
}

impl FakeRunner {
    /// The runner, and the status updates the session reads (what
    /// `Supervisor::open` returns in production).
    pub fn new() -> (Arc<FakeRunner>, mpsc::UnboundedReceiver<TaskStatusUpdate>) {
        let (updates, rx) = mpsc::unbounded_channel();
        let runner = FakeRunner {
            sets: Mutex::new(Vec::new()),
            statuses: Mutex::new(BTreeMap::new()),
            updates,
            applied: watch::channel(0).0,
        };
        (Arc::new(runner), rx)
    }

    /// Every set given so far, in order.
    pub fn sets(&self) -> Vec<Assignments> {
        self.sets.lock().expect("fake runner lock").clone()
    }

    /// A task's status changed: remembered (for resending after a reconnect)
    /// and reported to the session.
    pub fn report(&self, update: TaskStatusUpdate) {
        self.statuses
            .lock()
            .expect("fake runner lock")
            .insert(update.task_id.clone(), update.clone());
        self.updates
            .send(update)
            .expect("the session reads updates");
    }
}

impl TaskRunner for FakeRunner {
    fn reconcile(&self, assignments: Assignments) {
        self.sets
            .lock()
            .expect("fake runner lock")
            .push(assignments);
    }

    fn shared_applied(&self) -> Option<watch::Receiver<u64>> {
        Some(self.applied.subscribe())
    }

    fn statuses(&self) -> Vec<TaskStatusUpdate> {
        let statuses = self.statuses.lock().expect("fake runner lock");
        statuses.values().cloned().collect()
    }
}
