//! Stacks (#15): a Compose file's networks, volumes, configs, secrets and
//! services, deployed as one declarative change (docs/design/stacks.md).
//!
//! What lives here is the engine's domain logic, with no gRPC in it: which
//! objects a stack owns (its label), what a spec may name, the plan for the
//! non-service objects, field diffs, what prune and `stack rm` remove, and
//! `stack ls`. `api/stacks.rs` resolves the services the way `service create`
//! and `update` do, assembles the plan and commits it in one transaction.

pub mod current;
pub mod diff;
pub mod error;
pub mod objects;
pub mod ownership;
pub mod removal;

pub use current::Current;
pub use error::StackError;

use berth_proto::v1::{FieldChange, StackAction, StackChange, StackObjectKind};

/// A line of the plan.
pub fn change(
    kind: StackObjectKind,
    name: &str,
    action: StackAction,
    fields: Vec<FieldChange>,
) -> StackChange {
    StackChange {
        kind: kind as i32,
        name: name.to_string(),
        action: action as i32,
        fields,
    }
}

/// What users call a kind of object in messages.
pub fn kind_name(kind: StackObjectKind) -> &'static str {
    match kind {
        StackObjectKind::Service => "service",
        StackObjectKind::Network => "network",
        StackObjectKind::Volume => "volume",
        StackObjectKind::Config => "config",
        StackObjectKind::Secret => "secret",
    }
}
