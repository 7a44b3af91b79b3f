//! Typed reads of the state machine: the cluster view the leader's loops plan
//! from, the network table, and finding an object by what a user typed.

use berth_proto::store::Object;
use berth_proto::store::object::Kind;
use berth_proto::v1::{Network, Node, Service, Task};

use super::object::ObjectExt;
use super::{StateMachine, StoreError, Table};

/// What the orchestrator, scheduler and dispatcher read: the three tables.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub nodes: Vec<Node>,
    pub services: Vec<Service>,
    pub tasks: Vec<Task>,
}

impl ClusterView {
    /// Sorts stored objects into the view (other kinds are ignored).
    pub fn from_objects(objects: impl IntoIterator<Item = Object>) -> Self {
        let mut view = ClusterView::default();
        for object in objects {
            match object.kind {
                Some(Kind::Node(n)) => view.nodes.push(n),
                Some(Kind::Service(s)) => view.services.push(s),
                Some(Kind::Task(t)) => view.tasks.push(t),
                _ => {}
            }
        }
        view
    }
}

/// Nodes, services and tasks as the state machine has them.
pub fn read_view(sm: &StateMachine) -> Result<ClusterView, StoreError> {
    let mut objects = sm.list(Table::Node)?;
    objects.extend(sm.list(Table::Service)?);
    objects.extend(sm.list(Table::Task)?);
    Ok(ClusterView::from_objects(objects))
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
        Some(Kind::Task(t)) => Some(t),
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
