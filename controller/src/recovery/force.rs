//! `berth-controller --force-new-cluster`: one surviving member of a cluster
//! that lost its quorum becomes a one-member cluster, on its own data.
//!
//! Done offline, before the member starts: every entry of its log is applied
//! (also those it never learnt were committed — a write the lost leader
//! acknowledged may be among them, as etcd's --force-new-cluster does), then
//! the state is rewritten ([`one_member::rewrite`]: the address book holds this
//! member only, the others go on the CA's removed list, the controller join
//! token is new) and installed as a snapshot whose conf state has this member
//! as its only voter. Its log restarts after the snapshot, so no conf change
//! of the old cluster is replayed. Raft then elects it at once.

use std::path::Path;

use berth_pki::JoinToken;
use berth_proto::store::Txn;
use prost::Message as _;
use raft::eraftpb::{EntryType, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, Storage as _};
use tracing::{info, warn};

use super::RecoveryError;
use super::one_member::{self, OneMember};
use crate::datadir::{self, Marker};
use crate::raft::storage::LogStorage;
use crate::store::StateMachine;

/// What the rewrite left.
#[derive(Debug)]
pub struct Forced {
    /// Members that were dropped (now on the removed list).
    pub removed: Vec<u64>,
    /// The new controller join token (None in plain text).
    pub controller_token: Option<JoinToken>,
    /// The raft index the new cluster starts at.
    pub index: u64,
}

/// Rewrites the data dir of `marker`'s member (its database `db`) into a
/// one-member cluster reached at `advertise`. Returns the database again.
pub fn force_new_cluster(
    data_dir: &Path,
    marker: &Marker,
    db: sled::Db,
    advertise: &str,
) -> Result<(sled::Db, Forced), RecoveryError> {
    let (db, sm) = datadir::load(data_dir, db, marker)?;
    let mut log = LogStorage::open(&datadir::log_dir(data_dir), sm.clone())?;
    let (index, term) = apply_whole_log(&sm, &log)?;
    let mut state = sm.dump()?;
    // The address it had, unless told another.
    let address = if advertise.is_empty() {
        state
            .members
            .get(&marker.member_id)
            .cloned()
            .unwrap_or_default()
    } else {
        advertise.to_string()
    };
    let rewritten = one_member::rewrite(
        &mut state,
        &OneMember {
            member_id: marker.member_id,
            address,
            rotate_controller_token: true,
            now_ms: crate::clock::now_ms(),
        },
    )?;
    let mut meta = SnapshotMetadata {
        index,
        term,
        ..Default::default()
    };
    meta.set_conf_state(one_member::conf_state(marker.member_id));
    let mut snapshot = Snapshot::default();
    snapshot.set_data(state.encode_to_vec().into());
    snapshot.set_metadata(meta);
    // The state machine (durably), then the log restarting at `index`.
    log.install_snapshot(&snapshot)?;
    drop(log);
    info!(
        member = marker.member_id,
        index,
        removed = ?rewritten.removed,
        "forced a new one-member cluster from this member's data"
    );
    Ok((
        db,
        Forced {
            removed: rewritten.removed,
            controller_token: rewritten.controller_token,
            index,
        },
    ))
}

/// Applies every entry the log holds beyond the state machine's applied
/// index; returns the index and term of the last.
fn apply_whole_log(sm: &StateMachine, log: &LogStorage) -> Result<(u64, u64), RecoveryError> {
    let applied = sm.applied()?;
    let last = log.last_index()?;
    if last <= applied.index {
        return Ok((applied.index, applied.term));
    }
    let entries = log.entries(
        applied.index + 1,
        last + 1,
        None,
        GetEntriesContext::empty(false),
    )?;
    let mut group = sm.begin()?;
    let mut last_term = applied.term;
    for entry in &entries {
        last_term = entry.term;
        match entry.get_entry_type() {
            EntryType::EntryNormal if !entry.get_data().is_empty() => {
                match Txn::decode(entry.get_data()) {
                    Ok(txn) => {
                        sm.apply_in(&mut group, &txn, entry.index, entry.term);
                    }
                    Err(err) => {
                        // As the raft loop does: every member skips it alike.
                        warn!(index = entry.index, %err, "undecodable entry skipped");
                        sm.set_applied(&mut group, entry.index, entry.term);
                    }
                }
            }
            // Empty entries and the old cluster's membership changes: the
            // rewrite replaces the membership anyway.
            _ => sm.set_applied(&mut group, entry.index, entry.term),
        }
    }
    // Nobody watches yet.
    drop(sm.commit(group)?);
    Ok((last, last_term))
}
