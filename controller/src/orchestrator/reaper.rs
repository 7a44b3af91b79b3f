//! The task reaper: stops the tasks of removed services, deletes finished tasks
//! nobody needs, and keeps a short history per slot.

use std::collections::BTreeMap;

use berth_proto::v1::TaskState;
use tracing::{debug, info};

use super::plan::Plan;
use super::task::{created_ms, is_terminal, observed};

/// Tasks whose service is gone: stop them; delete those already finished.
pub fn removed_service(plan: &mut Plan<'_>, tasks: &[usize]) {
    for &i in tasks {
        let read = plan.original(i);
        if read.desired_state > TaskState::Complete as i32 && is_terminal(observed(read)) {
            debug!(task = %read.id, service = %read.service_id, "service removed; deleting finished task");
            plan.delete(i);
        } else if plan.task(i).desired_state <= TaskState::Complete as i32 {
            info!(task = %read.id, service = %read.service_id, node = %read.node_id,
                  "service removed; stopping task");
            plan.set_desired(i, TaskState::Shutdown);
        }
    }
}

/// Keeps the newest `keep` finished, stopped tasks of each slot (`slot_of`
/// tells a task's slot) and deletes the older ones. A task this pass just
/// stopped (replaced) counts as history at once, so the slot is back at its
/// limit when the pass commits; but only tasks this pass left alone are
/// deleted (a changed one is left for the next pass).
pub fn trim_history<K: Ord>(
    plan: &mut Plan<'_>,
    tasks: &[usize],
    keep: usize,
    slot_of: impl Fn(&berth_proto::v1::Task) -> K,
) {
    let mut history: BTreeMap<K, Vec<usize>> = BTreeMap::new();
    for &i in tasks {
        let planned = plan.task(i);
        if planned.desired_state > TaskState::Complete as i32 && is_terminal(observed(planned)) {
            history.entry(slot_of(planned)).or_default().push(i);
        }
    }
    for (_, mut finished) in history {
        if finished.len() <= keep {
            continue;
        }
        finished.sort_by_key(|&i| {
            let t = plan.task(i);
            (std::cmp::Reverse(created_ms(t)), t.id.clone())
        });
        for &i in &finished[keep..] {
            if plan.touched(i) {
                continue;
            }
            let t = plan.original(i);
            debug!(task = %t.id, service = %t.service_id, slot = t.slot, "deleting old task history");
            plan.delete(i);
        }
    }
}

/// Tasks stopped before any node had them: no agent will report them, so they
/// are marked SHUTDOWN here (and reaped as history).
pub fn never_placed(plan: &mut Plan<'_>) {
    for i in 0..plan.len() {
        let task = plan.task(i);
        if task.node_id.is_empty()
            && task.desired_state > TaskState::Complete as i32
            && !is_terminal(observed(task))
        {
            let now = plan.now_ms;
            let status = plan.edit(i).status.get_or_insert_with(Default::default);
            status.state = TaskState::Shutdown as i32;
            status.message = "stopped before it was placed on a node".into();
            status.timestamp_ms = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{Task, TaskStatus, Timestamps};

    fn task(id: &str, slot: u64, desired: TaskState, state: TaskState, created: i64) -> Task {
        Task {
            id: id.into(),
            slot,
            node_id: "n".into(),
            desired_state: desired as i32,
            status: Some(TaskStatus {
                state: state as i32,
                ..Default::default()
            }),
            timestamps: Some(Timestamps {
                created_ms: created,
                updated_ms: created,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn removed_service_tasks_stop_then_go() {
        use TaskState::*;
        let tasks = vec![
            task("running", 1, Running, Running, 1),
            task("done", 2, Shutdown, Shutdown, 1),
            task("stopping", 3, Shutdown, Running, 1),
            task("finished", 4, Complete, Complete, 1),
        ];
        let mut plan = Plan::new(&tasks, 9);
        removed_service(&mut plan, &[0, 1, 2, 3]);
        assert_eq!(plan.task(0).desired_state, Shutdown as i32);
        assert_eq!(plan.task(3).desired_state, Shutdown as i32);
        let ops = plan.into_ops();
        // running and finished: put; done: delete; stopping: unchanged.
        assert_eq!(ops.len(), 3);
        assert!(ops.iter().any(|o| matches!(&o.op,
            Some(berth_proto::store::op::Op::Delete(d)) if d.id == "done")));
    }

    #[test]
    fn keeps_five_newest_per_slot() {
        use TaskState::*;
        let mut tasks: Vec<Task> = (0..8)
            .map(|n| task(&format!("h{n}"), 1, Shutdown, Failed, n))
            .collect();
        tasks.push(task("live", 1, Running, Running, 100));
        tasks.push(task("other-slot", 2, Shutdown, Failed, 0));
        let all: Vec<usize> = (0..tasks.len()).collect();
        let mut plan = Plan::new(&tasks, 9);
        trim_history(&mut plan, &all, 5, |t| t.slot);
        let ops = plan.into_ops();
        let deleted: Vec<String> = ops
            .iter()
            .filter_map(|o| match &o.op {
                Some(berth_proto::store::op::Op::Delete(d)) => Some(d.id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, vec!["h0", "h1", "h2"]);
    }

    #[test]
    fn a_task_stopped_by_this_pass_counts_at_once() {
        use TaskState::*;
        let tasks: Vec<Task> = vec![
            task("old", 1, Shutdown, Failed, 1),
            task("older", 1, Shutdown, Failed, 0),
            // Ended and still desired running: this pass replaces it.
            task("just-failed", 1, Running, Failed, 5),
        ];
        let mut plan = Plan::new(&tasks, 9);
        plan.set_desired(2, Shutdown);
        trim_history(&mut plan, &[0, 1, 2], 2, |t| t.slot);
        let deleted: Vec<String> = plan
            .into_ops()
            .iter()
            .filter_map(|o| match &o.op {
                Some(berth_proto::store::op::Op::Delete(d)) => Some(d.id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, vec!["older"]);
    }

    #[test]
    fn never_placed_tasks_are_marked_shut_down() {
        use TaskState::*;
        let mut t = task("p", 1, Shutdown, Pending, 1);
        t.node_id.clear();
        let tasks = vec![t, task("placed", 1, Shutdown, Assigned, 1)];
        let mut plan = Plan::new(&tasks, 9);
        never_placed(&mut plan);
        assert_eq!(observed(plan.task(0)), Shutdown as i32);
        assert_eq!(observed(plan.task(1)), Assigned as i32);
    }
}
