//! What one session sends: the complete set first, then deltas against what it
//! sent before. The work is proportional to what changed for its node: the
//! node's own tasks are compared key by key, the shared part comes from the
//! published log, encoded once for all sessions, with the task changes of the
//! endpoints the node follows; the secrets and configs its tasks use come
//! along (payloads.rs).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use berth_proto::v1::{
    Assignments, AssignmentsDelta, Endpoint, EndpointTasksChange, Task, session_message::Message,
};

use super::assignments::{
    NodeTasks, Published, SHARED_ITEMS_PER_MESSAGE, TaskKey, items_of, task_key,
};
use super::endpoints::followed_by_all;
use super::payloads::{PayloadSource, SentPayloads, changes};

/// What a session has told its agent so far.
#[derive(Debug, Default)]
pub struct Sent {
    shared_seq: u64,
    /// The drain watermark last sent.
    applied_everywhere: u64,
    tasks: HashMap<String, TaskKey>,
    payloads: SentPayloads,
    /// Services whose serving tasks the agent holds and gets the changes of.
    followed: BTreeSet<String>,
    /// Services to follow were left for the next message (it had enough).
    more_to_follow: bool,
    /// Names asked for that a message answered.
    answered: BTreeSet<String>,
    /// The shared sequence of the last message with something of the shared
    /// part for the agent's kernel (a change, or a service's tasks).
    owed: u64,
}

/// What a node's agent asked for (dispatcher.md, "Endpoints by interest").
#[derive(Debug, Default)]
pub struct Interest {
    /// Services by id (Follow; every endpoint for an agent that does not
    /// follow on demand).
    pub ids: Arc<BTreeSet<String>>,
    /// Names its containers looked up (Follow, heads on demand).
    pub names: Arc<BTreeSet<String>>,
    /// The agent gets only the endpoints it follows and those every node
    /// follows (`SessionRequest.heads_on_demand`).
    pub heads_on_demand: bool,
}

/// The services a node follows: those of its own tasks and those its agent
/// asked for by id or by name, that have an endpoint.
fn wanted<'a>(
    published: &'a Published,
    own: Option<&'a NodeTasks>,
    interest: &'a Interest,
) -> impl Iterator<Item = &'a String> + 'a {
    own.into_iter()
        .flat_map(|tasks| tasks.values().map(|task| &task.service_id))
        .chain(interest.ids.iter())
        .chain(interest.names.iter().flat_map(|name| published.named(name)))
        .filter(|id| published.endpoints.contains_key(*id))
}

/// What a node that starts following `service_id` gets of it: for an agent
/// that holds every endpoint's head, its serving tasks; for one that gets
/// endpoints on demand, the whole endpoint. Nothing for an endpoint every node
/// follows: the shared part has it whole.
enum Start {
    Tasks(EndpointTasksChange),
    Whole(Endpoint),
}

impl Start {
    fn of(published: &Published, service_id: &str, lean: bool) -> Option<Start> {
        let endpoint = published.endpoints.get(service_id)?;
        if followed_by_all(endpoint) {
            return None;
        }
        if lean {
            return Some(Start::Whole(endpoint.clone()));
        }
        if endpoint.tasks.is_empty() {
            return None;
        }
        Some(Start::Tasks(EndpointTasksChange {
            service_id: service_id.to_string(),
            tasks: endpoint.tasks.clone(),
            removed_tasks: Vec::new(),
        }))
    }

    /// About how many items it puts on the wire.
    fn items(&self) -> usize {
        match self {
            Start::Tasks(change) => items_of(change),
            Start::Whole(endpoint) => 1 + endpoint.tasks.len(),
        }
    }
}

/// The complete set for `node_id`, whose agent asked for `interest`, and
/// the record of having sent it; `applied_everywhere` is the drain watermark
/// (drain.rs). Its shared part comes encoded (`Assignments.shared`:
/// berth_proto::assignments::unpack).
pub fn complete(
    published: &Published,
    node_id: &str,
    interest: &Interest,
    applied_everywhere: u64,
    source: &dyn PayloadSource,
) -> (Assignments, Sent) {
    let own = published.assigned.get(node_id);
    let tasks: Vec<_> = own
        .map(|tasks| tasks.values().map(|task| Task::clone(task)).collect())
        .unwrap_or_default();
    let lean = interest.heads_on_demand;
    let followed: BTreeSet<String> = wanted(published, own, interest).cloned().collect();
    let mut followed_tasks = Vec::new();
    let mut endpoints = Vec::new();
    for start in followed
        .iter()
        .filter_map(|id| Start::of(published, id, lean))
    {
        match start {
            Start::Tasks(change) => followed_tasks.push(change),
            Start::Whole(endpoint) => endpoints.push(endpoint),
        }
    }
    let mut payloads = SentPayloads::default();
    let values = changes(&tasks, source, &mut payloads);
    let sent = Sent {
        shared_seq: published.shared_seq,
        applied_everywhere,
        tasks: tasks.iter().map(|t| (t.id.clone(), task_key(t))).collect(),
        payloads,
        followed: followed.clone(),
        more_to_follow: false,
        answered: if lean {
            interest.names.as_ref().clone()
        } else {
            BTreeSet::new()
        },
        owed: published.shared_seq,
    };
    let set = Assignments {
        tasks,
        endpoints,
        shared: published.complete_shared(!lean),
        revision: published.revision,
        node_id: node_id.to_string(),
        secrets: values.secrets,
        configs: values.configs,
        shared_seq: published.shared_seq,
        applied_everywhere,
        followed: followed.into_iter().collect(),
        followed_tasks,
        heads_on_demand: lean,
        answered_names: sent.answered.iter().cloned().collect(),
        ..Default::default()
    };
    (set, sent)
}

impl Sent {
    /// True while the shared part has changes this session has not sent yet
    /// (it sends them in bounded pieces, one message after another).
    pub fn behind(&self, published: &Published) -> bool {
        self.shared_seq < published.shared_seq || self.more_to_follow
    }

    /// The shared sequence of the last message that brought the agent
    /// something to put into its kernel, and the one the session has gone
    /// past (`Sessions::progress`).
    pub fn progress(&self) -> (u64, u64) {
        (self.owed, self.shared_seq)
    }
}

/// The next message for `node_id` (whose agent asked for `interest`), or
/// `None` when nothing it holds changed. A new drain watermark alone is news
/// only to a node that has a task to stop.
pub fn next(
    published: &Published,
    node_id: &str,
    interest: &Interest,
    applied_everywhere: u64,
    sent: &mut Sent,
    source: &dyn PayloadSource,
) -> Option<Message> {
    let Some(shared) = published.shared_since(
        sent.shared_seq,
        SHARED_ITEMS_PER_MESSAGE,
        &mut sent.followed,
        !interest.heads_on_demand,
    ) else {
        // Too far behind for the log: start over with the complete set.
        let (set, fresh) = complete(published, node_id, interest, applied_everywhere, source);
        *sent = fresh;
        return Some(Message::Assignments(set));
    };
    let (through, items) = (shared.through, shared.items);
    let news = !shared.changes.is_empty();
    let mut delta = AssignmentsDelta {
        revision: published.revision,
        shared_changes: shared.changes,
        shared_seq: through,
        applied_everywhere,
        heads_on_demand: interest.heads_on_demand,
        ..Default::default()
    };
    sent.shared_seq = through;
    let drain_news =
        applied_everywhere != sent.applied_everywhere && published.stopping.contains(node_id);

    let current = published.assigned.get(node_id);
    // A service followed from now on comes with its tasks as they are at the
    // newest change, so only once this message brings the node there: older
    // changes applied after them would take it back.
    // They count against the message's items as the shared changes do.
    sent.more_to_follow = false;
    if through == published.shared_seq {
        // Usually none: no set is built for every wake of every session.
        let mut new: Vec<&String> = wanted(published, current, interest)
            .filter(|id| !sent.followed.contains(*id))
            .collect();
        new.sort_unstable();
        new.dedup();
        let mut items = items;
        for id in new {
            let start = Start::of(published, id, interest.heads_on_demand);
            let size = start.as_ref().map_or(1, Start::items);
            if items > 0 && items + size > SHARED_ITEMS_PER_MESSAGE {
                sent.more_to_follow = true;
                break;
            }
            items += size;
            match start {
                Some(Start::Tasks(change)) => delta.endpoint_tasks.push(change),
                Some(Start::Whole(endpoint)) => delta.endpoints.push(endpoint),
                None => {}
            }
            sent.followed.insert(id.clone());
            delta.followed.push(id.clone());
        }
        // Every service of a name asked for is followed now: the name is
        // answered (those of a service created later follow when it comes).
        if interest.heads_on_demand && !sent.more_to_follow {
            let new = interest.names.difference(&sent.answered).cloned();
            delta.answered_names = new.collect();
            sent.answered.extend(delta.answered_names.iter().cloned());
        }
    }
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
        && delta.followed.is_empty()
        && delta.answered_names.is_empty()
        && delta.secrets.is_empty()
        && delta.removed_secrets.is_empty()
        && delta.configs.is_empty()
        && delta.removed_configs.is_empty()
        && !drain_news;
    if news || !delta.followed.is_empty() {
        sent.owed = through;
    }
    if empty {
        return None;
    }
    sent.applied_everywhere = applied_everywhere;
    Some(Message::Delta(delta))
}
