//! The store as a planned transaction would leave it: the objects it writes
//! are found (by id and by unique name) before the stored ones. A stack
//! deploy resolves its services' references against the networks, configs
//! and secrets it creates or changes in the same transaction.

use berth_proto::store::Object;

use super::object::ObjectExt;
use super::view::{LookupError, resolve};
use super::{StateMachine, Table};

pub struct Pending<'a> {
    sm: &'a StateMachine,
    /// Objects the transaction writes, newest last.
    writes: Vec<Object>,
}

impl<'a> Pending<'a> {
    /// The store as it is (nothing planned yet).
    pub fn new(sm: &'a StateMachine) -> Pending<'a> {
        Pending {
            sm,
            writes: Vec::new(),
        }
    }

    pub fn state(&self) -> &'a StateMachine {
        self.sm
    }

    /// Adds an object the transaction writes (it shadows the stored one).
    pub fn write(&mut self, object: Object) {
        self.writes.push(object);
    }

    /// As [`resolve`]: by id, then by unique name, planned writes first.
    pub fn resolve(&self, table: Table, key: &str) -> Result<Object, LookupError> {
        if key.is_empty() {
            return Err(LookupError::Empty(table));
        }
        let planned =
            self.writes.iter().rev().find(|o| {
                o.table() == Some(table) && (o.id() == key || o.unique_name() == Some(key))
            });
        match planned {
            Some(object) => Ok(object.clone()),
            None => resolve(self.sm, table, key),
        }
    }
}
