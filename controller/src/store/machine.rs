//! The replicated state machine: typed tables in the sled `state` tree (read and
//! written through its in-memory mirror), a store revision bumped by every applied
//! transaction, a version per object (the revision that last wrote it),
//! compare-and-set, and unique keys per table (names, services' published ports).
//!
//! Applying is deterministic: no clocks, no randomness. Everything that varies
//! (ids, timestamps) is decided by the proposer and travels in the command.

use std::collections::{BTreeMap, HashMap};

use berth_proto::store::{
    Delete, Expect, Object, Put, SnapshotData, Txn, TxnResult, op, txn_result::Failure,
};
use prost::Message;

use super::StoreError;
use super::keys;
use super::mirror::{Mirror, WriteBatch};
use super::object::ObjectExt;
use super::table::Table;
use super::watch::{Change, WatchHub};

/// Reads and writes the state tree. Writes only happen on the Raft loop's thread;
/// reads from anywhere.
#[derive(Clone)]
pub struct StateMachine {
    mirror: Mirror,
    watch: WatchHub,
}

/// Meta values kept next to the tables, written atomically with them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppliedMeta {
    pub index: u64,
    pub term: u64,
}

impl StateMachine {
    /// Loads the tree into memory.
    pub fn new(tree: sled::Tree, watch: WatchHub) -> Result<Self, StoreError> {
        Ok(StateMachine {
            mirror: Mirror::load(tree)?,
            watch,
        })
    }

    /// The same state with another watch hub (one that starts at its revision).
    pub fn with_watch(self, watch: WatchHub) -> Self {
        StateMachine { watch, ..self }
    }

    /// The state as it is now, unchanging (reads only): every table, the
    /// revision and the applied index at one point, for a backup.
    pub fn frozen(&self) -> StateMachine {
        StateMachine {
            mirror: self.mirror.frozen(),
            watch: WatchHub::new(0),
        }
    }

    pub fn watch(&self) -> &WatchHub {
        &self.watch
    }

    /// Current store revision (0 for an empty store).
    pub fn revision(&self) -> Result<u64, StoreError> {
        read_u64(&self.mirror, keys::REVISION)
    }

    pub fn applied(&self) -> Result<AppliedMeta, StoreError> {
        Ok(AppliedMeta {
            index: read_u64(&self.mirror, keys::APPLIED_INDEX)?,
            term: read_u64(&self.mirror, keys::APPLIED_TERM)?,
        })
    }

    pub fn get(&self, table: Table, id: &str) -> Result<Option<Object>, StoreError> {
        let table = table.name();
        match self.mirror.get(&keys::object(table, id)) {
            Some(bytes) => Ok(Some(decode(&bytes, table, id)?)),
            None => Ok(None),
        }
    }

    /// Id of the object named `name` in `table`, for tables with unique names.
    pub fn id_by_name(&self, table: Table, name: &str) -> Result<Option<String>, StoreError> {
        let table = table.name();
        Ok(self
            .mirror
            .get(&keys::name(table, name))
            .map(|v| String::from_utf8_lossy(&v).to_string()))
    }

    /// Every object of a table, ordered by id.
    pub fn list(&self, table: Table) -> Result<Vec<Object>, StoreError> {
        self.list_as(table, Some)
    }

    /// The objects of one table as `pick` takes them (objects it gives
    /// `None` for are left out), decoded one at a time into one vector sized
    /// once: growing a vector of 20,000 decoded tasks copied it again and
    /// again into fresh pages. A decoded `Object` is as large as its largest
    /// kind, so a caller that wants the tasks takes them out here rather than
    /// holding a vector of objects beside them.
    pub fn list_as<T>(
        &self,
        table: Table,
        mut pick: impl FnMut(Object) -> Option<T>,
    ) -> Result<Vec<T>, StoreError> {
        let table = table.name();
        let entries = self.mirror.scan_prefix(&keys::table_prefix(table));
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let object = decode(&value, table, &String::from_utf8_lossy(&key))?;
            out.extend(pick(object));
        }
        Ok(out)
    }

    /// Starts a group of writes (the committed entries of one Ready): nothing is
    /// visible until `commit`, which writes everything, the revision and the
    /// applied index in one atomic batch.
    pub fn begin(&self) -> Result<ApplyBatch, StoreError> {
        let revision = self.revision()?;
        Ok(ApplyBatch {
            batch: WriteBatch::default(),
            objects: HashMap::new(),
            names: HashMap::new(),
            start_revision: revision,
            revision,
            applied: None,
            meta_written: false,
            events: Vec::new(),
        })
    }

    /// Writes a group; returns what changed, for `publish`.
    pub fn commit(&self, group: ApplyBatch) -> Result<Events, StoreError> {
        let ApplyBatch {
            mut batch,
            start_revision,
            revision,
            applied,
            meta_written,
            events,
            ..
        } = group;
        if applied.is_none() && !meta_written && revision == start_revision {
            return Ok(Events(events));
        }
        if revision != start_revision {
            batch.insert(keys::REVISION, &revision.to_be_bytes());
        }
        if let Some((index, term)) = applied {
            write_applied(&mut batch, index, term);
        }
        self.mirror.apply(batch);
        Ok(Events(events))
    }

    /// Tells watchers what a written group changed, in order.
    pub fn publish(&self, events: Events) {
        for (revision, changes) in events.0 {
            self.watch.publish(revision, changes);
        }
    }

    /// Applies one committed transaction at raft `index` on its own (a group of
    /// one): see `apply_in`.
    pub fn apply_txn(&self, txn: &Txn, index: u64, term: u64) -> Result<TxnResult, StoreError> {
        let mut group = self.begin()?;
        let result = self.apply_in(&mut group, txn, index, term);
        let events = self.commit(group)?;
        self.publish(events);
        Ok(result)
    }

    /// Applies one committed transaction at raft `index` to a group: all
    /// operations, or none when a precondition fails (the result says which).
    /// Preconditions see what earlier transactions of the group wrote.
    pub fn apply_in(&self, group: &mut ApplyBatch, txn: &Txn, index: u64, term: u64) -> TxnResult {
        group.applied = Some((index, term));
        let revision = group.revision;
        let mut view = TxnView::default();
        let plan = match self.plan(group, &mut view, txn, revision + 1) {
            Ok(plan) => plan,
            // A refused txn changes nothing but the applied index.
            Err((failure, error)) => {
                return TxnResult {
                    error,
                    failure: failure as i32,
                    revision,
                    objects: Vec::new(),
                };
            }
        };
        let batch = &mut group.batch;
        let mut result = TxnResult {
            revision: revision + 1,
            ..Default::default()
        };
        let mut changes = Vec::with_capacity(plan.len());
        for step in plan {
            match step {
                Planned::Put { object, previous } => {
                    let Some(table) = object.table().map(Table::name) else {
                        continue;
                    };
                    let before = previous
                        .as_ref()
                        .map(|p| p.unique_keys())
                        .unwrap_or_default();
                    let after = object.unique_keys();
                    for gone in before.iter().filter(|k| !after.contains(k)) {
                        batch.remove(keys::name(table, gone));
                    }
                    // A key kept already points at this id.
                    for new in after.iter().filter(|k| !before.contains(k)) {
                        batch.insert(keys::name(table, new), object.id().as_bytes());
                    }
                    batch.insert(keys::object(table, object.id()), object.encode_to_vec());
                    changes.push(Change::put(object.clone(), previous.is_none()));
                    result.objects.push(object);
                }
                Planned::Delete { object } => {
                    let Some(table) = object.table().map(Table::name) else {
                        continue;
                    };
                    for key in object.unique_keys() {
                        batch.remove(keys::name(table, &key));
                    }
                    batch.remove(keys::object(table, object.id()));
                    changes.push(Change::removed(object.clone()));
                    result.objects.push(object);
                }
            }
        }
        group.objects.extend(view.objects);
        group.names.extend(view.names);
        group.revision = revision + 1;
        group.events.push((revision + 1, changes));
        result
    }

    /// Records progress for an entry that changed no table (empty, conf change).
    pub fn set_applied(&self, group: &mut ApplyBatch, index: u64, term: u64) {
        group.applied = Some((index, term));
    }

    /// Checks every precondition against the current state (as the group and
    /// earlier operations of the same txn have left it) and computes what to write.
    fn plan(
        &self,
        group: &ApplyBatch,
        view: &mut TxnView,
        txn: &Txn,
        new_revision: u64,
    ) -> Result<Vec<Planned>, (Failure, String)> {
        let mut plan = Vec::with_capacity(txn.ops.len());
        let invalid = |msg: String| (Failure::Invalid, msg);
        for op in &txn.ops {
            match &op.op {
                Some(op::Op::Put(Put {
                    object: Some(object),
                    expect,
                    version,
                })) => {
                    let table = object
                        .table()
                        .ok_or_else(|| invalid("put of an object of no kind".into()))?;
                    let id = object.id().to_string();
                    if id.is_empty() {
                        return Err(invalid(format!("put of a {table} without an id")));
                    }
                    let current = self.current(group, view, table, &id)?;
                    check_expect(table, &id, *expect, *version, current.as_ref())?;
                    let claimed = object.unique_keys();
                    for key in &claimed {
                        let holder = self.name_holder(group, view, table, key)?;
                        if let Some(holder) = holder.filter(|h| *h != id) {
                            return Err((Failure::Exists, taken(table, key, &holder)));
                        }
                    }
                    for prev in current.iter().flat_map(|c| c.unique_keys()) {
                        view.names.insert((table, prev), None);
                    }
                    for key in claimed {
                        view.names.insert((table, key), Some(id.clone()));
                    }
                    let mut object = object.clone();
                    object.set_version(new_revision);
                    view.objects.insert((table, id), Some(object.clone()));
                    plan.push(Planned::Put {
                        object,
                        previous: current.map(Box::new),
                    });
                }
                Some(op::Op::Put(Put { object: None, .. })) => {
                    return Err(invalid("put without an object".into()));
                }
                Some(op::Op::Delete(Delete {
                    table,
                    id,
                    expect,
                    version,
                })) => {
                    let table = Table::parse(table)
                        .ok_or_else(|| invalid(format!("unknown table {table:?}")))?;
                    let current = self.current(group, view, table, id)?;
                    check_expect(table, id, *expect, *version, current.as_ref())?;
                    if let Some(object) = current {
                        for key in object.unique_keys() {
                            view.names.insert((table, key), None);
                        }
                        view.objects.insert((table, id.clone()), None);
                        plan.push(Planned::Delete { object });
                    }
                }
                None => return Err(invalid("empty operation".into())),
            }
        }
        Ok(plan)
    }

    /// An object as the txn, then the group, then the tree has it.
    fn current(
        &self,
        group: &ApplyBatch,
        view: &mut TxnView,
        table: Table,
        id: &str,
    ) -> Result<Option<Object>, (Failure, String)> {
        let key = (table, id.to_string());
        if let Some(v) = view.objects.get(&key).or_else(|| group.objects.get(&key)) {
            return Ok(v.clone());
        }
        let v = self
            .get(table, id)
            .map_err(|e| (Failure::Invalid, e.to_string()))?;
        view.objects.insert(key, v.clone());
        Ok(v)
    }

    fn name_holder(
        &self,
        group: &ApplyBatch,
        view: &mut TxnView,
        table: Table,
        name: &str,
    ) -> Result<Option<String>, (Failure, String)> {
        let key = (table, name.to_string());
        if let Some(v) = view.names.get(&key).or_else(|| group.names.get(&key)) {
            return Ok(v.clone());
        }
        let v = self
            .id_by_name(table, name)
            .map_err(|e| (Failure::Invalid, e.to_string()))?;
        view.names.insert(key, v.clone());
        Ok(v)
    }

    /// The whole state machine, for a snapshot.
    pub fn dump(&self) -> Result<SnapshotData, StoreError> {
        let mut objects = Vec::new();
        for table in Table::ALL {
            objects.extend(self.list(table)?);
        }
        Ok(SnapshotData {
            revision: self.revision()?,
            members: self.members()?,
            objects,
            cluster_id: self.cluster_id()?.unwrap_or_default(),
        })
    }

    /// Replaces everything with a snapshot's content, applied at `index`/`term`.
    pub fn restore(
        &self,
        data: &SnapshotData,
        index: u64,
        term: u64,
        conf_state: &[u8],
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for key in self.mirror.keys() {
            if keys::is_replicated(&key) {
                batch.remove(key);
            }
        }
        for object in &data.objects {
            let table = object
                .table()
                .ok_or(StoreError::Corrupt {
                    what: "a snapshot object of no kind".into(),
                })?
                .name();
            for key in object.unique_keys() {
                batch.insert(keys::name(table, &key), object.id().as_bytes());
            }
            batch.insert(keys::object(table, object.id()), object.encode_to_vec());
        }
        batch.insert(keys::REVISION, &data.revision.to_be_bytes());
        batch.insert(keys::MEMBERS, serde_json::to_vec(&data.members)?);
        batch.insert(keys::CONF_STATE, conf_state);
        if !data.cluster_id.is_empty() {
            batch.insert(keys::CLUSTER_ID, data.cluster_id.as_bytes());
        }
        write_applied(&mut batch, index, term);
        self.mirror.apply_durably(batch)?;
        self.watch.reset(data.revision);
        Ok(())
    }

    /// Makes everything applied so far durable in sled (until then the raft log
    /// holds it: call before the log drops entries).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.mirror.checkpoint()
    }

    /// How many keys changed since the last checkpoint.
    pub fn dirty_keys(&self) -> usize {
        self.mirror.dirty_keys()
    }

    /// Member id -> peer address.
    pub fn members(&self) -> Result<BTreeMap<u64, String>, StoreError> {
        match self.mirror.get(keys::MEMBERS) {
            Some(bytes) => Ok(serde_json::from_slice(&bytes)?),
            None => Ok(BTreeMap::new()),
        }
    }

    pub fn cluster_id(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .mirror
            .get(keys::CLUSTER_ID)
            .map(|v| String::from_utf8_lossy(&v).to_string()))
    }

    /// The ConfState at the applied index (raft-rs protobuf bytes).
    pub fn conf_state_bytes(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.mirror.get(keys::CONF_STATE).map(|v| v.to_vec()))
    }

    /// Records an applied membership change in a group: the new ConfState and
    /// address book, written with the applied index.
    pub fn apply_membership(
        &self,
        group: &mut ApplyBatch,
        members: &BTreeMap<u64, String>,
        conf_state: &[u8],
        index: u64,
        term: u64,
    ) -> Result<(), StoreError> {
        group
            .batch
            .insert(keys::MEMBERS, serde_json::to_vec(members)?);
        group.batch.insert(keys::CONF_STATE, conf_state);
        group.meta_written = true;
        group.applied = Some((index, term));
        Ok(())
    }
}

type TableKey = (Table, String);

/// Writes of applied entries not yet in the tree: one batch per group, with
/// what it has done so far so that later entries see earlier ones.
pub struct ApplyBatch {
    batch: WriteBatch,
    /// (table, id) -> the object as the group left it (None: removed).
    objects: HashMap<TableKey, Option<Object>>,
    /// (table, unique name) -> the id holding it.
    names: HashMap<TableKey, Option<String>>,
    start_revision: u64,
    revision: u64,
    applied: Option<(u64, u64)>,
    /// Meta keys other than revision and applied index were written.
    meta_written: bool,
    /// Changes per revision, published to watchers once written.
    events: Vec<(u64, Vec<Change>)>,
}

/// Changes per revision of a written group, not yet told to watchers.
#[must_use = "watchers learn of a written group only through publish"]
pub struct Events(Vec<(u64, Vec<Change>)>);

/// What one transaction has read and would write, merged into its group only
/// when every precondition holds.
#[derive(Default)]
struct TxnView {
    objects: HashMap<TableKey, Option<Object>>,
    names: HashMap<TableKey, Option<String>>,
}

enum Planned {
    Put {
        object: Object,
        previous: Option<Box<Object>>,
    },
    Delete {
        object: Object,
    },
}

/// Why a put is refused: one of its unique keys belongs to `holder`.
fn taken(table: Table, key: &str, holder: &str) -> String {
    match key.strip_prefix("port:") {
        Some(port) => format!("port {port} is already published by {table} {holder}"),
        None => format!("{table} name {key:?} is already used by {holder}"),
    }
}

fn check_expect(
    table: Table,
    id: &str,
    expect: i32,
    version: u64,
    current: Option<&Object>,
) -> Result<(), (Failure, String)> {
    let expect = Expect::try_from(expect).map_err(|_| {
        (
            Failure::Invalid,
            format!("unknown precondition {expect} on {table} {id}"),
        )
    })?;
    match (expect, current) {
        (Expect::Any, _) => Ok(()),
        (Expect::Absent, None) => Ok(()),
        (Expect::Absent, Some(_)) => Err((Failure::Exists, format!("{table} {id} already exists"))),
        (Expect::Present | Expect::Version, None) => {
            Err((Failure::NotFound, format!("{table} {id} not found")))
        }
        (Expect::Present, Some(_)) => Ok(()),
        (Expect::Version, Some(obj)) if obj.version() == version => Ok(()),
        (Expect::Version, Some(obj)) => Err((
            Failure::Conflict,
            format!(
                "{table} {id} is at version {}, not {version}: it changed since it was read",
                obj.version()
            ),
        )),
    }
}

fn write_applied(batch: &mut WriteBatch, index: u64, term: u64) {
    batch.insert(keys::APPLIED_INDEX, &index.to_be_bytes());
    batch.insert(keys::APPLIED_TERM, &term.to_be_bytes());
}

fn read_u64(mirror: &Mirror, key: &[u8]) -> Result<u64, StoreError> {
    match mirror.get(key) {
        Some(v) => {
            let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                what: format!("value of {} is not 8 bytes", String::from_utf8_lossy(key)),
            })?;
            Ok(u64::from_be_bytes(bytes))
        }
        None => Ok(0),
    }
}

fn decode(bytes: &[u8], table: &str, id: &str) -> Result<Object, StoreError> {
    Object::decode(bytes).map_err(|err| StoreError::Corrupt {
        what: format!("{table} {id}: {err}"),
    })
}
