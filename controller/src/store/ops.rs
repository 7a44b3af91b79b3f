//! Builders of the operations a transaction is made of: puts and deletes with
//! their compare-and-set precondition.

use berth_proto::store::object::Kind;
use berth_proto::store::{Delete, Expect, Object, Op, Put, op};

use super::Table;
use super::object::ObjectExt;

/// Writes `object`, if the stored one meets `expect` (`version` for
/// `Expect::Version`).
pub fn put(object: Object, expect: Expect, version: u64) -> Op {
    Op {
        op: Some(op::Op::Put(Put {
            object: Some(object),
            expect: expect as i32,
            version,
        })),
    }
}

/// Writes a typed object (a node, service, task …) under the same rule.
pub fn put_kind(kind: Kind, expect: Expect, version: u64) -> Op {
    put(Object { kind: Some(kind) }, expect, version)
}

/// Removes `table`/`id`, if the stored one meets `expect`.
pub fn delete(table: Table, id: &str, expect: Expect, version: u64) -> Op {
    Op {
        op: Some(op::Op::Delete(Delete {
            table: table.name().to_string(),
            id: id.to_string(),
            expect: expect as i32,
            version,
        })),
    }
}

/// The table and id an operation writes.
pub fn target(op: &Op) -> Option<(Table, &str)> {
    match op.op.as_ref()? {
        op::Op::Put(p) => {
            let object = p.object.as_ref()?;
            Some((object.table()?, object.id()))
        }
        op::Op::Delete(d) => Some((Table::parse(&d.table)?, d.id.as_str())),
    }
}

/// The task a put writes.
pub fn put_task(op: &Op) -> Option<&berth_proto::v1::Task> {
    match op.op.as_ref()? {
        op::Op::Put(p) => match p.object.as_ref()?.kind.as_ref()? {
            Kind::Task(t) => Some(t),
            _ => None,
        },
        _ => None,
    }
}

/// The task a put writes, to change before it is committed.
pub fn put_task_mut(op: &mut Op) -> Option<&mut berth_proto::v1::Task> {
    match op.op.as_mut()? {
        op::Op::Put(p) => match p.object.as_mut()?.kind.as_mut()? {
            Kind::Task(t) => Some(t),
            _ => None,
        },
        _ => None,
    }
}
