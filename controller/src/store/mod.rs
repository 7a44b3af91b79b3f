//! The state machine: typed tables with versions, compare-and-set transactions and
//! a watch stream, held in memory and checkpointed to sled; and what the rest
//! of the controller uses to read it (typed views) and to write it (operation
//! builders, commit through Raft).

pub mod commit;
pub mod keys;
pub mod machine;
pub mod mirror;
pub mod object;
pub mod ops;
pub mod pending;
pub mod table;
pub mod task_ref;
pub mod view;
pub mod watch;

pub use commit::{CommitError, Refusal, commit};
pub use machine::StateMachine;
pub use object::ObjectExt;
pub use ops::{delete, put, put_kind};
pub use pending::Pending;
pub use table::Table;
pub use task_ref::TaskRef;
pub use view::{ClusterView, read_networks, read_view};
pub use watch::WatchHub;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store i/o failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("state store is corrupt: {what}")]
    Corrupt { what: String },
    #[error("state store member list is corrupt: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "watch from revision {requested} is no longer possible: history starts after revision {oldest}"
    )]
    Compacted { requested: u64, oldest: u64 },
}

#[cfg(test)]
mod tests;
