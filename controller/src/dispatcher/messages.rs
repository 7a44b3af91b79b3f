//! What one session sends: the complete set first, then deltas against what it
//! sent before. The work is proportional to what changed for its node: the
//! node's own tasks are compared key by key, the shared part comes from the
//! published log, encoded once for all sessions; the secrets and configs its tasks use come along
//! (payloads.rs).

use std::collections::HashMap;

use berth_proto::v1::{Assignments, AssignmentsDelta, Task, session_message::Message};

use super::assignments::{Published, SHARED_ITEMS_PER_MESSAGE, TaskKey, task_key};
use super::payloads::{PayloadSource, SentPayloads, changes};

/// What a session has told its agent so far.
#[derive(Debug, Default)]
pub struct Sent {
    shared_seq: u64,
    /// The drain watermark last sent.
    applied_everywhere: u64,
    tasks: HashMap<String, TaskKey>,
    payloads: SentPayloads,
}

/// The complete set for `node_id`, and the record of having sent it;
/// `applied_everywhere` is the drain watermark (drain.rs). Its shared part
/// comes encoded (`Assignments.shared`: berth_proto::assignments::unpack).
pub fn complete(
    published: &Published,
    node_id: &str,
    applied_everywhere: u64,
    source: &dyn PayloadSource,
) -> (Assignments, Sent) {
    let tasks: Vec<_> = published
        .assigned
        .get(node_id)
        .map(|tasks| tasks.values().map(|task| Task::clone(task)).collect())
        .unwrap_or_default();
    let mut payloads = SentPayloads::default();
    let values = changes(&tasks, source, &mut payloads);
    let sent = Sent {
        shared_seq: published.shared_seq,
        applied_everywhere,
        tasks: tasks.iter().map(|t| (t.id.clone(), task_key(t))).collect(),
        payloads,
    };
    let set = Assignments {
        tasks,
        shared: published.complete_shared(),
        revision: published.revision,
        node_id: node_id.to_string(),
        secrets: values.secrets,
        configs: values.configs,
        shared_seq: published.shared_seq,
        applied_everywhere,
        ..Default::default()
    };
    (set, sent)
}

impl Sent {
    /// True while the shared part has changes this session has not sent yet
    /// (it sends them in bounded pieces, one message after another).
    pub fn behind(&self, published: &Published) -> bool {
        self.shared_seq < published.shared_seq
    }
}

/// The next message for `node_id`, or `None` when nothing it holds changed.
/// A new drain watermark alone is news only to a node that has a task to stop.
pub fn next(
    published: &Published,
    node_id: &str,
    applied_everywhere: u64,
    sent: &mut Sent,
    source: &dyn PayloadSource,
) -> Option<Message> {
    let Some((shared, through)) = published.shared_since(sent.shared_seq, SHARED_ITEMS_PER_MESSAGE)
    else {
        // Too far behind for the log: start over with the complete set.
        let (set, fresh) = complete(published, node_id, applied_everywhere, source);
        *sent = fresh;
        return Some(Message::Assignments(set));
    };
    let mut delta = AssignmentsDelta {
        revision: published.revision,
        shared_changes: shared,
        shared_seq: through,
        applied_everywhere,
        ..Default::default()
    };
    sent.shared_seq = through;
    let drain_news =
        applied_everywhere != sent.applied_everywhere && published.stopping.contains(node_id);

    let current = published.assigned.get(node_id);
    if let Some(tasks) = current {
        for (id, task) in tasks.iter() {
            let key = task_key(task);
            if sent.tasks.get(id) != Some(&key) {
                sent.tasks.insert(id.clone(), key);
                delta.tasks.push(Task::clone(task));
            }
        }
    }
    sent.tasks.retain(|id, _| {
        let kept = current.is_some_and(|tasks| tasks.contains_key(id));
        if !kept {
            delta.removed_tasks.push(id.clone());
        }
        kept
    });
    delta.removed_tasks.sort();
    let values = changes(
        current
            .into_iter()
            .flat_map(|tasks| tasks.values().map(|task| &**task)),
        source,
        &mut sent.payloads,
    );
    delta.secrets = values.secrets;
    delta.removed_secrets = values.removed_secrets;
    delta.configs = values.configs;
    delta.removed_configs = values.removed_configs;

    let empty = delta.tasks.is_empty()
        && delta.removed_tasks.is_empty()
        && delta.shared_changes.is_empty()
        && delta.secrets.is_empty()
        && delta.removed_secrets.is_empty()
        && delta.configs.is_empty()
        && delta.removed_configs.is_empty()
        && !drain_news;
    if empty {
        return None;
    }
    sent.applied_everywhere = applied_everywhere;
    Some(Message::Delta(delta))
}
