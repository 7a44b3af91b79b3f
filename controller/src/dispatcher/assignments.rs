//! What each node is told, kept current from the store's watch stream and
//! computed once per store revision for all sessions together.
//!
//! [`Tracker`] mirrors the tables the dispatcher needs (nodes, networks,
//! services, tasks, with indexes by node and by service) and records which
//! parts a batch of changes touched. [`Published`] is what sessions read: each
//! node's assigned tasks, and the parts every agent gets the same (nodes,
//! networks, endpoints) with a short log of their changes, so a session sends
//! only what changed since its last message. Both are plain data; the loop that
//! feeds them lives in `publisher.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use berth_proto::net::Ipv4Prefix;
use berth_proto::v1::{
    Assignments, AssignmentsDelta, Endpoint, EndpointTask, EndpointTasksChange, Network, Node,
    Service, Task, TaskState, WatchAction, WatchEvent, watch_event,
};

use prost::Message;
use prost::bytes::Bytes;

use super::endpoints;
use crate::store::{ClusterView, TaskRef};

/// Shared-part changes kept for sessions that are behind; one further behind
/// gets the complete set again.
const SHARED_LOG: usize = 1024;

/// About how many items (nodes, networks, endpoint tasks) one message carries
/// of the shared part; a session that is further behind catches up over
/// several messages. Without a bound every session of a 1,000-node cluster held
/// the endpoints of all new services at once (~1.5 MB each, ~1.5 GB on the
/// leader); at ~70 bytes an item this keeps a message near 70 KB.
pub const SHARED_ITEMS_PER_MESSAGE: usize = 1024;

/// The dispatcher's copy of the tables it serves from.
#[derive(Debug, Default)]
pub struct Tracker {
    /// The latest revision applied.
    pub revision: u64,
    /// The revision the tables were read at: changes up to it are in them.
    read_at: u64,
    nodes: BTreeMap<String, Node>,
    networks: BTreeMap<String, Network>,
    services: HashMap<String, Service>,
    /// Shared with [`Published::assigned`]: a task is held once however many
    /// revisions of assignments name it. A task that came through the watch
    /// stream is its event's, so the planner's view holds the same one.
    tasks: HashMap<String, TaskRef>,
    by_node: HashMap<String, BTreeSet<String>>,
    by_service: HashMap<String, BTreeSet<String>>,
}

/// What a batch of changes may have changed.
#[derive(Debug, Default)]
pub struct Dirty {
    /// Nodes whose assigned tasks may differ.
    pub assigned: HashSet<String>,
    /// Services whose endpoint may differ.
    pub services: HashSet<String>,
    pub nodes: HashSet<String>,
    pub networks: HashSet<String>,
}

impl Tracker {
    /// The tables at `revision`; returns it with everything marked dirty.
    pub fn new(revision: u64, view: ClusterView, networks: Vec<Network>) -> (Tracker, Dirty) {
        let mut tracker = Tracker {
            revision,
            read_at: revision,
            ..Default::default()
        };
        let mut dirty = Dirty::default();
        for network in networks {
            dirty.networks.insert(network.id.clone());
            tracker.networks.insert(network.id.clone(), network);
        }
        for node in view.nodes {
            dirty.nodes.insert(node.id.clone());
            dirty.assigned.insert(node.id.clone());
            tracker.nodes.insert(node.id.clone(), node);
        }
        for service in view.services {
            dirty.services.insert(service.id.clone());
            tracker.services.insert(service.id.clone(), service);
        }
        for task in view.tasks {
            tracker.put_task(TaskRef::new(task), &mut dirty);
        }
        (tracker, dirty)
    }

    /// Applies one committed change. Changes at or before the revision the
    /// tables were read at are in them already and are skipped; one
    /// transaction's changes share a revision, so the filter is that read, not
    /// the last change applied.
    pub fn apply(&mut self, event: &Arc<WatchEvent>, dirty: &mut Dirty) {
        if event.revision <= self.read_at {
            return;
        }
        let removed = event.action == WatchAction::Removed as i32;
        match &event.object {
            Some(watch_event::Object::Node(node)) => {
                dirty.nodes.insert(node.id.clone());
                // Whether a node is down decides whether its tasks serve.
                if let Some(ids) = self.by_node.get(&node.id) {
                    for id in ids {
                        if let Some(task) = self.tasks.get(id) {
                            dirty.services.insert(task.service_id.clone());
                        }
                    }
                }
                if removed {
                    self.nodes.remove(&node.id);
                } else {
                    self.nodes.insert(node.id.clone(), node.clone());
                }
            }
            Some(watch_event::Object::Network(network)) => {
                dirty.networks.insert(network.id.clone());
                if removed {
                    self.networks.remove(&network.id);
                } else {
                    self.networks.insert(network.id.clone(), network.clone());
                }
            }
            Some(watch_event::Object::Service(service)) => {
                dirty.services.insert(service.id.clone());
                if removed {
                    self.services.remove(&service.id);
                } else {
                    self.services
                        .insert(service.id.clone(), (**service).clone());
                }
            }
            Some(watch_event::Object::Task(task)) => {
                if removed {
                    self.remove_task(&task.id, dirty);
                } else if let Some(task) = TaskRef::from_event(event) {
                    // The event's own task: shared with the planner's view.
                    self.put_task(task, dirty);
                }
            }
            Some(watch_event::Object::Secret(_)) | Some(watch_event::Object::Config(_)) | None => {}
        }
        self.revision = self.revision.max(event.revision);
    }

    fn put_task(&mut self, task: TaskRef, dirty: &mut Dirty) {
        self.remove_task(&task.id, dirty);
        dirty.assigned.insert(task.node_id.clone());
        dirty.services.insert(task.service_id.clone());
        self.by_node
            .entry(task.node_id.clone())
            .or_default()
            .insert(task.id.clone());
        self.by_service
            .entry(task.service_id.clone())
            .or_default()
            .insert(task.id.clone());
        self.tasks.insert(task.id.clone(), task);
    }

    fn remove_task(&mut self, id: &str, dirty: &mut Dirty) {
        let Some(old) = self.tasks.remove(id) else {
            return;
        };
        dirty.assigned.insert(old.node_id.clone());
        dirty.services.insert(old.service_id.clone());
        unindex(&mut self.by_node, &old.node_id, id);
        unindex(&mut self.by_service, &old.service_id, id);
    }

    /// The tasks a node must know about: those that should run there, those
    /// it must still stop, and those that ended but the store still keeps as
    /// history: the agent keeps their final status and logs until the task is
    /// deleted (the task history limit, docs/design/events.md), as Swarm's
    /// agents keep a task's container until its record is gone.
    fn assigned_to(&self, node_id: &str) -> BTreeMap<String, TaskRef> {
        self.by_node
            .get(node_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.tasks.get(id))
            .filter(|task| !task.node_id.is_empty())
            .map(|task| (task.id.clone(), task.clone()))
            .collect()
    }

    fn endpoint(&self, service_id: &str, down: &HashSet<&str>) -> Option<Endpoint> {
        let service = self.services.get(service_id)?;
        let tasks = self
            .by_service
            .get(service_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.tasks.get(id).map(|task| &**task));
        endpoints::endpoint(service, tasks, down)
    }

    fn down_nodes(&self) -> HashSet<&str> {
        endpoints::down_nodes(self.nodes.values())
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }
}

fn unindex(index: &mut HashMap<String, BTreeSet<String>>, key: &str, id: &str) {
    if let Some(ids) = index.get_mut(key) {
        ids.remove(id);
        if ids.is_empty() {
            index.remove(key);
        }
    }
}

/// Told to stop and not yet ended.
fn being_stopped(task: &Task) -> bool {
    let status = task.status.as_ref();
    let observed = status.map_or(0, |s| s.state);
    // Told to stop, or unhealthy: its agent stops it once every node let it go.
    let stopping = task.desired_state > TaskState::Running as i32
        || status.is_some_and(|s| s.health == berth_proto::v1::TaskHealth::Unhealthy as i32);
    stopping && TaskState::try_from(observed).is_ok_and(|s| !s.is_terminal())
}

/// What about a task the agent acts on: a task is sent again only when this
/// changes (its own status reports do not echo back).
pub type TaskKey = (i32, u64, Vec<(String, Ipv4Prefix)>);

pub fn task_key(task: &Task) -> TaskKey {
    let mut addresses: Vec<(String, Ipv4Prefix)> = task
        .addresses
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    addresses.sort_by(|a, b| a.0.cmp(&b.0));
    (task.desired_state, task.spec_version, addresses)
}

/// A node's assigned tasks by id (the tracker's copies, shared).
pub type NodeTasks = Arc<BTreeMap<String, TaskRef>>;

/// A change of one endpoint.
#[derive(Clone, Debug, PartialEq)]
pub enum EndpointEdit {
    /// New, or its service changed (name, VIPs, ports), or gone (`None`).
    Whole(Option<Endpoint>),
    /// Only its serving tasks changed: those that joined (or changed) and the
    /// ids of those that left.
    Tasks {
        joined: BTreeMap<String, EndpointTask>,
        left: BTreeSet<String>,
    },
}

impl EndpointEdit {
    /// The edit from `before` to `now`: task changes when only tasks differ.
    fn between(before: Option<&Endpoint>, now: Option<&Endpoint>) -> EndpointEdit {
        let (Some(b), Some(n)) = (before, now) else {
            return EndpointEdit::Whole(now.cloned());
        };
        let same_service = b.service_id == n.service_id
            && b.service_name == n.service_name
            && b.ports == n.ports
            && b.virtual_ips == n.virtual_ips
            && b.aliases == n.aliases;
        if !same_service {
            return EndpointEdit::Whole(Some(n.clone()));
        }
        let old: BTreeMap<&str, &EndpointTask> =
            b.tasks.iter().map(|t| (t.task_id.as_str(), t)).collect();
        let joined = n
            .tasks
            .iter()
            .filter(|t| old.get(t.task_id.as_str()) != Some(t))
            .map(|t| (t.task_id.clone(), t.clone()))
            .collect();
        let kept: BTreeSet<&str> = n.tasks.iter().map(|t| t.task_id.as_str()).collect();
        let left = old
            .keys()
            .filter(|id| !kept.contains(*id))
            .map(|id| id.to_string())
            .collect();
        EndpointEdit::Tasks { joined, left }
    }
}

/// A change of the shared part: `None` is a removal.
#[derive(Clone, Debug, Default)]
pub struct SharedDelta {
    pub nodes: BTreeMap<String, Option<Node>>,
    pub networks: BTreeMap<String, Option<Network>>,
    /// By service id.
    pub endpoints: BTreeMap<String, EndpointEdit>,
    /// Services every node followed before this change and only some follow
    /// after it (their ports went): a node that does not follow one must not
    /// keep the old endpoint with its tasks and VIPs. An agent that gets every
    /// head gets the new one; one that gets endpoints on demand, a removal.
    pub heads_for_all: BTreeSet<String>,
}

impl SharedDelta {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.networks.is_empty() && self.endpoints.is_empty()
    }

    /// Into the wire form, encoded: the part every node gets (nodes,
    /// networks, removals, the endpoints every node follows), the heads of
    /// the other new or changed endpoints (for agents that get every
    /// endpoint's head), and per such service its piece for the nodes that
    /// follow it: the whole endpoint when it is new or its service changed,
    /// else its task changes. `current` is the endpoints after the change
    /// (whether one publishes ports).
    fn encode(self, seq: u64, current: &BTreeMap<String, Endpoint>) -> SharedChange {
        let mut all = AssignmentsDelta::default();
        let mut heads = AssignmentsDelta::default();
        let mut items = self.nodes.len() + self.networks.len();
        for (id, node) in self.nodes {
            match node {
                Some(n) => all.nodes.push(n),
                None => all.removed_nodes.push(id),
            }
        }
        for (id, network) in self.networks {
            match network {
                Some(n) => all.networks.push(n),
                None => all.removed_networks.push(id),
            }
        }
        let mut tasks = BTreeMap::new();
        let mut dropped = BTreeMap::new();
        let mut gone = Vec::new();
        for (id, edit) in self.endpoints {
            let everyone = current.get(&id).is_some_and(endpoints::followed_by_all);
            let (piece_items, piece) = match edit {
                EndpointEdit::Whole(Some(e)) if everyone => {
                    items += 1 + e.tasks.len();
                    all.endpoints.push(e);
                    continue;
                }
                EndpointEdit::Whole(Some(e)) => {
                    heads.endpoints.push(head(&e));
                    if self.heads_for_all.contains(&id) {
                        let removal = AssignmentsDelta {
                            removed_endpoints: vec![id.clone()],
                            ..Default::default()
                        };
                        let piece = Piece {
                            items: 1,
                            wire: removal.encode_to_vec().into(),
                        };
                        dropped.insert(id.clone(), piece);
                    }
                    let size = 1 + e.tasks.len();
                    let piece = AssignmentsDelta {
                        endpoints: vec![e],
                        ..Default::default()
                    };
                    (size, piece)
                }
                EndpointEdit::Whole(None) => {
                    items += 1;
                    all.removed_endpoints.push(id.clone());
                    gone.push(id);
                    continue;
                }
                EndpointEdit::Tasks { joined, left } => {
                    if joined.is_empty() && left.is_empty() {
                        continue;
                    }
                    let change = EndpointTasksChange {
                        service_id: id.clone(),
                        tasks: joined.into_values().collect(),
                        removed_tasks: left.into_iter().collect(),
                    };
                    if everyone {
                        items += items_of(&change);
                        all.endpoint_tasks.push(change);
                        continue;
                    }
                    let size = items_of(&change);
                    let piece = AssignmentsDelta {
                        endpoint_tasks: vec![change],
                        ..Default::default()
                    };
                    (size, piece)
                }
            };
            let piece = Piece {
                items: piece_items,
                wire: piece.encode_to_vec().into(),
            };
            tasks.insert(id, piece);
        }
        SharedChange {
            seq,
            items,
            wire: all.encode_to_vec().into(),
            heads: Piece {
                items: heads.endpoints.len(),
                wire: heads.encode_to_vec().into(),
            },
            dropped,
            tasks,
            gone,
        }
    }
}

/// What sessions read: computed once per store revision.
#[derive(Debug, Default)]
pub struct Published {
    /// False until the first computation of this leadership.
    pub ready: bool,
    pub revision: u64,
    pub nodes: BTreeMap<String, Node>,
    pub networks: BTreeMap<String, Network>,
    /// By service id.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// The endpoints by their DNS names (service name and aliases): the
    /// services a name an agent asks for stands for.
    names: HashMap<String, BTreeSet<String>>,
    pub assigned: HashMap<String, NodeTasks>,
    /// Nodes with a task to stop (desired beyond RUNNING, not yet ended): the
    /// sessions that care when the drain watermark moves (drain.rs).
    pub stopping: BTreeSet<String>,
    /// Bumped by every change of the shared part. A leadership starts it at
    /// its store revision, above any sequence an earlier leader sent, so an
    /// agent's acknowledgement from before a failover never reads as a newer one.
    pub shared_seq: u64,
    /// The last [`SHARED_LOG`] changes, oldest first.
    pub log: VecDeque<SharedChange>,
    /// The complete set's shared part, encoded at the shared sequence it
    /// names, with every endpoint's head and with only the endpoints every
    /// node follows; filled by the first session that needs it at that sequence.
    complete_shared: Mutex<Option<(u64, Bytes)>>,
    complete_shared_lean: Mutex<Option<(u64, Bytes)>>,
}

/// One change of the shared part as sessions send it: encoded once, by the
/// publisher, and handed to each session's message by reference. At 1,000
/// nodes each session building and encoding its own copy of the same changes
/// was half the leader's CPU while a cluster converged.
#[derive(Debug)]
pub struct SharedChange {
    pub seq: u64,
    /// About how many items `wire` puts on the wire: each node, network,
    /// endpoint, endpoint task and removal counts one.
    pub items: usize,
    /// What every node gets, as an encoded `AssignmentsDelta`
    /// (`AssignmentsDelta.shared_changes`): nodes, networks, removals, and
    /// the endpoints every node follows with their task changes.
    pub wire: Bytes,
    /// The heads (no tasks) of the other new or changed endpoints, for the
    /// agents that get every endpoint (not `heads_on_demand`).
    pub heads: Piece,
    /// By service id: the removal of an endpoint every node followed until
    /// this change, for the agents that get endpoints on demand and do not
    /// follow it (`SharedDelta::heads_for_all`).
    pub dropped: BTreeMap<String, Piece>,
    /// By service id: what of an endpoint only its followers get
    /// (dispatcher.md, "Endpoints by interest"), each its own encoded delta:
    /// the whole endpoint when it is new or its service changed, else the
    /// changes of its tasks.
    pub tasks: BTreeMap<String, Piece>,
    /// Services whose endpoint this change removed: nobody follows them after it.
    pub gone: Vec<String>,
}

/// What a session sends of the shared part ([`Published::shared_since`]).
#[derive(Debug)]
pub struct SharedSince {
    /// Encoded changes and pieces, in order.
    pub changes: Vec<Bytes>,
    /// The shared sequence they bring the agent to.
    pub through: u64,
    /// About how many items they carry.
    pub items: usize,
}

/// One encoded piece of a shared change.
#[derive(Debug)]
pub struct Piece {
    pub items: usize,
    pub wire: Bytes,
}

/// What an update of [`Published`] changed.
#[derive(Debug, Default, PartialEq)]
pub struct Wake {
    /// Nodes whose assigned tasks changed.
    pub nodes: Vec<String>,
    /// The shared part changed (every session is concerned).
    pub shared: bool,
}

impl Published {
    /// Brings the published state to the tracker's, looking only at what
    /// `dirty` names.
    pub fn update(&mut self, tracker: &Tracker, dirty: Dirty) -> Wake {
        let mut wake = Wake::default();
        for node_id in dirty.assigned {
            let now = tracker.assigned_to(&node_id);
            // A task's end changes no key, but takes its node out of `stopping`.
            if now.values().any(|task| being_stopped(task)) {
                self.stopping.insert(node_id.clone());
            } else {
                self.stopping.remove(&node_id);
            }
            let before = self.assigned.get(&node_id);
            let same = before.is_some_and(|b| {
                b.len() == now.len()
                    && b.iter().zip(&now).all(|((i, a), (j, b))| {
                        i == j && (a.ptr_eq(b) || task_key(a) == task_key(b))
                    })
            }) || (before.is_none() && now.is_empty());
            if same {
                // Nobody is woken, but the map takes the tracker's current
                // copies: the old ones (status reports) are freed, not held
                // beside the tracker's.
                if !now.is_empty() {
                    self.assigned.insert(node_id, Arc::new(now));
                }
                continue;
            }
            if now.is_empty() {
                self.assigned.remove(&node_id);
            } else {
                self.assigned.insert(node_id.clone(), Arc::new(now));
            }
            wake.nodes.push(node_id);
        }
        wake.nodes.sort();

        let mut delta = SharedDelta::default();
        for id in dirty.nodes {
            let now = tracker.nodes.get(&id);
            let before = self.nodes.get(&id);
            if before == now {
                continue;
            }
            // Agents get a node only as far as the overlay reads it: its
            // status, certificate or timestamps changing is no news to them.
            let seen = |node: Option<&Node>| node.map(overlay_node);
            if seen(before) != seen(now) {
                delta.nodes.insert(id.clone(), seen(now));
            }
            match now {
                Some(n) => self.nodes.insert(id, n.clone()),
                None => self.nodes.remove(&id),
            };
        }
        for id in dirty.networks {
            let now = tracker.networks.get(&id);
            if self.networks.get(&id) != now {
                match now {
                    Some(n) => self.networks.insert(id.clone(), n.clone()),
                    None => self.networks.remove(&id),
                };
                delta.networks.insert(id, now.cloned());
            }
        }
        let down = tracker.down_nodes();
        for id in dirty.services {
            let now = tracker.endpoint(&id, &down);
            let before = self.endpoints.get(&id);
            if before != now.as_ref() {
                let edit = EndpointEdit::between(before, now.as_ref());
                if let EndpointEdit::Whole(_) = edit {
                    if before.is_some_and(endpoints::followed_by_all)
                        && now.as_ref().is_some_and(|e| !endpoints::followed_by_all(e))
                    {
                        delta.heads_for_all.insert(id.clone());
                    }
                    index_names(&mut self.names, &id, before, now.as_ref());
                }
                match now {
                    Some(e) => self.endpoints.insert(id.clone(), e),
                    None => self.endpoints.remove(&id),
                };
                delta.endpoints.insert(id, edit);
            }
        }
        self.revision = tracker.revision;
        if !self.ready {
            self.shared_seq = self.shared_seq.max(tracker.revision);
        }
        if !delta.is_empty() || !self.ready {
            self.shared_seq += 1;
            self.log
                .push_back(delta.encode(self.shared_seq, &self.endpoints));
            while self.log.len() > SHARED_LOG {
                self.log.pop_front();
            }
            wake.shared = true;
        }
        self.ready = true;
        wake
    }

    /// The shared changes after `seq` for a node that follows `followed`,
    /// encoded, oldest first, up to about `max_items` (always at least one
    /// change: a change is never split), with the sequence they bring the
    /// reader to and their items; `None` when the log no longer reaches back
    /// that far. A service whose endpoint a change removes leaves `followed`.
    /// `heads`: the reader gets every endpoint's head (an agent without
    /// `heads_on_demand`).
    pub fn shared_since(
        &self,
        seq: u64,
        max_items: usize,
        followed: &mut BTreeSet<String>,
        heads: bool,
    ) -> Option<SharedSince> {
        let oldest = self.log.front().map(|c| c.seq)?;
        if seq + 1 < oldest {
            return None;
        }
        let skip = self.log.partition_point(|change| change.seq <= seq);
        let mut out = Vec::new();
        let mut through = seq;
        let mut items = 0;
        for change in self.log.iter().skip(skip) {
            let mut mine = followed_pieces(&change.tasks, followed);
            if heads && !change.heads.wire.is_empty() {
                // Before the followed pieces: their whole endpoints win.
                mine.insert(0, &change.heads);
            }
            if !heads {
                let not_followed = change
                    .dropped
                    .iter()
                    .filter(|(id, _)| !followed.contains(*id));
                mine.extend(not_followed.map(|(_, piece)| piece));
            }
            let size = change.items + mine.iter().map(|p| p.items).sum::<usize>();
            if items > 0 && items + size > max_items {
                break;
            }
            if !change.wire.is_empty() {
                out.push(change.wire.clone());
            }
            out.extend(mine.iter().map(|p| p.wire.clone()));
            for id in &change.gone {
                followed.remove(id);
            }
            items += size;
            through = change.seq;
        }
        Some(SharedSince {
            changes: out,
            through,
            items,
        })
    }

    /// The complete set's shared part (networks, nodes, endpoints by service
    /// name, with tasks only where every node follows them) as an encoded
    /// `Assignments` (`Assignments.shared`): encoded once per shared
    /// sequence, however many sessions start at it. `heads`: with every
    /// endpoint's head; else only the endpoints every node follows (the
    /// others' heads go with their tasks to those who follow them).
    pub fn complete_shared(&self, heads: bool) -> Bytes {
        let cache = if heads {
            &self.complete_shared
        } else {
            &self.complete_shared_lean
        };
        let mut cached = cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((seq, bytes)) = cached.as_ref()
            && *seq == self.shared_seq
        {
            return bytes.clone();
        }
        let mut endpoints: Vec<_> = self
            .endpoints
            .values()
            .filter_map(|e| {
                if endpoints::followed_by_all(e) {
                    Some(e.clone())
                } else {
                    heads.then(|| head(e))
                }
            })
            .collect();
        endpoints.sort_by(|a, b| a.service_name.cmp(&b.service_name));
        let shared = Assignments {
            networks: self.networks.values().cloned().collect(),
            nodes: self.nodes.values().map(overlay_node).collect(),
            endpoints,
            ..Default::default()
        };
        let bytes = Bytes::from(shared.encode_to_vec());
        *cached = Some((self.shared_seq, bytes.clone()));
        bytes
    }

    /// Marks everything published as possibly changed: after the tables
    /// are read afresh, what they no longer hold is removed.
    pub fn mark_all(&self, dirty: &mut Dirty) {
        dirty.assigned.extend(self.assigned.keys().cloned());
        dirty.services.extend(self.endpoints.keys().cloned());
        dirty.nodes.extend(self.nodes.keys().cloned());
        dirty.networks.extend(self.networks.keys().cloned());
    }

    /// The services whose endpoint answers `name` (lower-case, no trailing
    /// dot, as `Dispatcher::follow` keeps asked names; `tasks.NAME` stands
    /// for NAME's services too).
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        let exact = self.names.get(name);
        let tasks_of = name
            .strip_prefix("tasks.")
            .and_then(|bare| self.names.get(bare));
        exact.into_iter().chain(tasks_of).flatten()
    }
}

/// The DNS names of an endpoint, lower-case.
fn names_of(endpoint: &Endpoint) -> impl Iterator<Item = String> + '_ {
    std::iter::once(&endpoint.service_name)
        .chain(&endpoint.aliases)
        .filter(|name| !name.is_empty())
        .map(|name| name.to_ascii_lowercase())
}

/// Moves service `id` in the name index from `before`'s names to `now`'s.
fn index_names(
    names: &mut HashMap<String, BTreeSet<String>>,
    id: &str,
    before: Option<&Endpoint>,
    now: Option<&Endpoint>,
) {
    for name in before.into_iter().flat_map(names_of) {
        unindex(names, &name, id);
    }
    for name in now.into_iter().flat_map(names_of) {
        names.entry(name).or_default().insert(id.to_string());
    }
}

/// An endpoint without its serving tasks (those who follow it get them
/// apart), copied without copying them.
fn head(e: &Endpoint) -> Endpoint {
    Endpoint {
        service_id: e.service_id.clone(),
        service_name: e.service_name.clone(),
        ports: e.ports.clone(),
        tasks: Vec::new(),
        virtual_ips: e.virtual_ips.clone(),
        aliases: e.aliases.clone(),
    }
}

/// About how many items a change of an endpoint's tasks puts on the wire:
/// the endpoint, each task that joined and each that left.
pub fn items_of(change: &EndpointTasksChange) -> usize {
    1 + change.tasks.len() + change.removed_tasks.len()
}

/// A node as agents get it: what their overlay reads (its underlay address
/// and its address blocks, `network/view.rs`), and its id and name. The rest
/// (labels, resources, status, certificate, timestamps) is the controllers':
/// sent to every agent it made each complete set about twice as large (a
/// complete set is mostly the node list) and every status or certificate
/// change a message to every agent.
pub fn overlay_node(node: &Node) -> Node {
    Node {
        id: node.id.clone(),
        name: node.name.clone(),
        address: node.address.clone(),
        network_blocks: node.network_blocks.clone(),
        ..Default::default()
    }
}

/// The pieces of `tasks` (a change's, by service id) that a node following
/// `followed` gets, in service id order: looked up from the smaller side.
fn followed_pieces<'a>(
    tasks: &'a BTreeMap<String, Piece>,
    followed: &BTreeSet<String>,
) -> Vec<&'a Piece> {
    if tasks.is_empty() {
        return Vec::new();
    }
    if followed.len() < tasks.len() {
        followed.iter().filter_map(|id| tasks.get(id)).collect()
    } else {
        tasks
            .iter()
            .filter(|(id, _)| followed.contains(*id))
            .map(|(_, piece)| piece)
            .collect()
    }
}

#[cfg(test)]
mod tests;
