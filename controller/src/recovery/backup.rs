//! Taking a backup: the state machine at one applied index (a frozen copy, so
//! the raft loop goes on), with the secrets' key file as it is on disk, and
//! what it holds, counted.

use std::collections::BTreeSet;

use berth_proto::store::object::Kind;
use berth_proto::v1::{BackupSummary, ClusterBackup};

use super::RecoveryError;
use crate::keyring::Keyring;
use crate::store::{StateMachine, Table};

/// A backup of `sm` as it is now. Secrets stay sealed in the state; `keys`
/// travels as its file (wrapped under autolock).
pub fn take(sm: &StateMachine, keys: &Keyring) -> Result<ClusterBackup, RecoveryError> {
    let frozen = sm.frozen();
    let applied = frozen.applied()?;
    let state = frozen.dump()?;
    if state.cluster_id.is_empty() {
        return Err(RecoveryError::Invalid(
            "the state holds no cluster id yet (nothing applied)".into(),
        ));
    }
    Ok(ClusterBackup {
        cluster_id: state.cluster_id.clone(),
        revision: state.revision,
        applied_index: applied.index,
        applied_term: applied.term,
        created_ms: crate::clock::now_ms(),
        berth_version: berth_proto::VERSION.to_string(),
        state: Some(state),
        secrets_key: keys.export(),
    })
}

/// What `backup` holds: objects per table, stacks, the revision; `bytes` is
/// the size of its file.
pub fn summary(backup: &ClusterBackup, bytes: usize) -> BackupSummary {
    let mut counts = std::collections::BTreeMap::new();
    for table in Table::ALL {
        counts.insert(table.name().to_string(), 0u64);
    }
    let mut stacks = BTreeSet::new();
    for object in backup.state.iter().flat_map(|s| &s.objects) {
        if let Some(table) = crate::store::ObjectExt::table(object) {
            *counts.entry(table.name().to_string()).or_default() += 1;
        }
        if let Some(Kind::Service(service)) = &object.kind
            && let Some(stack) = service
                .spec
                .as_ref()
                .and_then(|s| berth_proto::stacks::stack_of(&s.labels))
        {
            stacks.insert(stack.to_string());
        }
    }
    BackupSummary {
        cluster_id: backup.cluster_id.clone(),
        revision: backup.revision,
        applied_index: backup.applied_index,
        counts,
        secrets_key_locked: crate::keyring::is_wrapped(&backup.secrets_key),
        bytes: bytes as u64,
        stacks: stacks.len() as u64,
    }
}
