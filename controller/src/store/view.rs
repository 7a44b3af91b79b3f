//! Typed reads of the state machine: the cluster view the leader's loops plan
//! from, the network table, and finding an object by what a user typed.

use berth_proto::store::Object;
use berth_proto::store::object::Kind;
use berth_proto::v1::{Network, Node, Service, Task, Volume};

use super::object::ObjectExt;
use super::{StateMachine, StoreError, Table};

/// What the orchestrator, scheduler and dispatcher read: the three tables,
/// and the volumes (the scheduler keeps a task that mounts one on its node).
/// The tasks are owned (`Task`, as read from the store) or borrowed from a
/// view kept elsewhere (`&Task`: the planner's [`crate::planner::live`]).
#[derive(Clone, Debug)]
pub struct ClusterView<T = Task> {
    pub nodes: Vec<Node>,
    pub services: Vec<Service>,
    pub tasks: Vec<T>,
    pub volumes: Vec<Volume>,
    /// Cluster-wide settings (#17); the default record when none is stored.
    pub settings: berth_proto::v1::ClusterSettings,
}

impl<T> Default for ClusterView<T> {
    fn default() -> Self {
        ClusterView {
            nodes: Vec::new(),
            services: Vec::new(),
            tasks: Vec::new(),
            volumes: Vec::new(),
            settings: Default::default(),
        }
    }
}

impl ClusterView {
    /// Sorts stored objects into the view (other kinds are ignored).
    pub fn from_objects(objects: impl IntoIterator<Item = Object>) -> Self {
        let mut view = ClusterView::default();
        for object in objects {
            match object.kind {
                Some(Kind::Node(n)) => view.nodes.push(n),
                Some(Kind::Service(s)) => view.services.push(*s),
                Some(Kind::Task(t)) => view.tasks.push(*t),
                Some(Kind::Volume(v)) => view.volumes.push(v),
                Some(Kind::ClusterSettings(c)) => view.settings = c,
                _ => {}
            }
        }
        view
    }
}

/// Nodes, services, tasks, volumes and the cluster settings as the state machine has them.
pub fn read_view(sm: &StateMachine) -> Result<ClusterView, StoreError> {
    let mut view = ClusterView::from_objects(
        sm.list(Table::Node)?
            .into_iter()
            .chain(sm.list(Table::Service)?)
            .chain(sm.list(Table::Volume)?)
            .chain(sm.list(Table::ClusterSettings)?),
    );
    // The task table is most of the state: decoded straight into one vector
    // of the right size.
    view.tasks = sm.list_as(Table::Task, |object| match object.kind {
        Some(Kind::Task(t)) => Some(*t),
        _ => None,
    })?;
    Ok(view)
}

/// The volume table and the cluster settings (the default record when none
/// is stored): what a view kept from the watch stream reads per round.
pub fn read_volumes_and_settings(
    sm: &StateMachine,
) -> Result<(Vec<Volume>, berth_proto::v1::ClusterSettings), StoreError> {
    let view = ClusterView::from_objects(
        sm.list(Table::Volume)?
            .into_iter()
            .chain(sm.list(Table::ClusterSettings)?),
    );
    Ok((view.volumes, view.settings))
}

/// The network table.
pub fn read_networks(sm: &StateMachine) -> Result<Vec<Network>, StoreError> {
    Ok(sm
        .list(Table::Network)?
        .into_iter()
        .filter_map(|o| match o.kind {
            Some(Kind::Network(n)) => Some(n),
            _ => None,
        })
        .collect())
}

/// The node table.
pub fn read_nodes(sm: &StateMachine) -> Result<Vec<Node>, StoreError> {
    Ok(sm
        .list(Table::Node)?
        .into_iter()
        .filter_map(|o| match o.kind {
            Some(Kind::Node(n)) => Some(n),
            _ => None,
        })
        .collect())
}

/// One stored node.
pub fn read_node(sm: &StateMachine, id: &str) -> Result<Option<Node>, StoreError> {
    Ok(sm.get(Table::Node, id)?.and_then(|o| match o.kind {
        Some(Kind::Node(n)) => Some(n),
        _ => None,
    }))
}

/// One stored task.
pub fn read_task(sm: &StateMachine, id: &str) -> Result<Option<Task>, StoreError> {
    Ok(sm.get(Table::Task, id)?.and_then(|o| match o.kind {
        Some(Kind::Task(t)) => Some(*t),
        _ => None,
    }))
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("no {0} named")]
    Empty(Table),
    #[error("{table} {key:?} not found")]
    NotFound { table: Table, key: String },
    #[error("{table} id prefix {key:?} is ambiguous: {matches} match")]
    Ambiguous {
        table: Table,
        key: String,
        matches: usize,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Finds an object by id, or by unique name, or by a unique id prefix (what a
/// user may type for any object, as in Docker).
pub fn resolve(sm: &StateMachine, table: Table, key: &str) -> Result<Object, LookupError> {
    if key.is_empty() {
        return Err(LookupError::Empty(table));
    }
    if let Some(obj) = sm.get(table, key)? {
        return Ok(obj);
    }
    if let Some(id) = sm.id_by_name(table, key)?
        && let Some(obj) = sm.get(table, &id)?
    {
        return Ok(obj);
    }
    let mut matches: Vec<Object> = sm
        .list(table)?
        .into_iter()
        .filter(|o| o.id().starts_with(key))
        .collect();
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => Err(LookupError::NotFound {
            table,
            key: key.to_string(),
        }),
        n => Err(LookupError::Ambiguous {
            table,
            key: key.to_string(),
            matches: n,
        }),
    }
}

/// Finds the task a user means by `key`, as the Docker-style verbs take it
/// (`berth exec`, `logs`, `stop`, `kill`, `rm`):
/// - a task id, or a unique task id prefix;
/// - `SERVICE.SLOT` (a service name or id, then a replica slot): the slot's
///   current task (the newest one the orchestrator still wants running, else
///   the newest one);
/// - `SERVICE` alone (so `berth run --name N` names its task `N`): its current
///   task of the lowest slot, running ones first.
pub fn resolve_task(sm: &StateMachine, key: &str) -> Result<Task, LookupError> {
    if key.is_empty() {
        return Err(LookupError::Empty(Table::Task));
    }
    match resolve(sm, Table::Task, key) {
        Ok(object) => {
            if let Some(Kind::Task(task)) = object.kind {
                return Ok(*task);
            }
        }
        Err(LookupError::NotFound { .. }) => {}
        Err(other) => return Err(other),
    }
    let not_found = || LookupError::NotFound {
        table: Table::Task,
        key: key.to_string(),
    };
    let (service_key, slot) = match key.rsplit_once('.') {
        Some((service, slot)) => match slot.parse::<u64>() {
            Ok(slot) => (service, Some(slot)),
            Err(_) => (key, None),
        },
        None => (key, None),
    };
    let service = match resolve(sm, Table::Service, service_key) {
        Ok(object) => object,
        Err(LookupError::NotFound { .. }) => return Err(not_found()),
        Err(other) => return Err(other),
    };
    let service_id = service.id().to_string();
    let tasks: Vec<Task> = sm
        .list(Table::Task)?
        .into_iter()
        .filter_map(|o| match o.kind {
            Some(Kind::Task(t)) if t.service_id == service_id => Some(*t),
            _ => None,
        })
        .filter(|t| slot.is_none_or(|s| t.slot == s))
        .collect();
    current_task(tasks).ok_or_else(not_found)
}

/// Of one service's tasks (or one slot's), the one a user means: the lowest
/// slot, then those the orchestrator wants running, then those that run, then
/// the newest.
fn current_task(tasks: Vec<Task>) -> Option<Task> {
    use berth_proto::v1::TaskState;
    let wanted = |t: &Task| t.desired_state <= TaskState::Running as i32;
    let running = |t: &Task| {
        t.status
            .as_ref()
            .is_some_and(|s| s.state == TaskState::Running as i32)
    };
    let created = |t: &Task| t.timestamps.as_ref().map_or(0, |ts| ts.created_ms);
    tasks.into_iter().min_by_key(|t| {
        (
            t.slot,
            !wanted(t),
            !running(t),
            std::cmp::Reverse(created(t)),
        )
    })
}
