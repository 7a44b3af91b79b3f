//! Multi-member behaviour in one process, in milliseconds: elections,
//! failover, partitions, snapshots and membership changes of real members
//! (raft-rs, raft-engine log, sled state machine) over the in-memory transport.

mod cluster;
mod elections;
mod membership;
mod partitions;
mod snapshots;
