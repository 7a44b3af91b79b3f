//! `berth-controller --init --restore FILE`: a new one-member cluster from a
//! backup, in an empty data dir. It keeps the cluster id, the CA (so agents'
//! certificates stay valid and they re-register as the nodes they were) and
//! the secrets key (so sealed secrets open); the member is new, and every old
//! member goes on the removed list.

use std::path::{Path, PathBuf};

use berth_pki::{Identity, Role};
use berth_proto::store::object::Kind;
use tracing::{info, warn};

use super::one_member::{self, OneMember};
use super::{RecoveryError, format};
use crate::datadir::{self, Marker};
use crate::keyring::{KeyFile, Keyring};

/// What a restore starts from.
pub struct RestoreFrom<'a> {
    pub file: &'a Path,
    /// Opens the backup's key when the cluster was autolocked.
    pub unlock_key: Option<&'a str>,
    pub data_dir: &'a Path,
    /// This member's address (other members and agents reach it there).
    pub advertise: &'a str,
    /// No certificates to issue (a cluster run with --insecure-plaintext).
    pub plaintext: bool,
}

/// A restored member's data dir, opened.
pub struct Restored {
    pub marker: Marker,
    pub db: sled::Db,
    pub keys: Keyring,
}

/// Writes a new member's data dir from the backup; on any error the
/// directory is emptied again (it was empty before).
pub fn restore(from: &RestoreFrom<'_>) -> Result<Restored, RecoveryError> {
    // Everything that can be refused is checked before a byte is written.
    let backup = format::read(from.file)?;
    let keys = open_key(from.file, &backup.secrets_key, from.unlock_key)?;
    let mut state = backup
        .state
        .ok_or_else(|| RecoveryError::Invalid(format!("{} holds no state", from.file.display())))?;
    if state.cluster_id.is_empty() || state.cluster_id != backup.cluster_id {
        return Err(RecoveryError::Invalid(format!(
            "{}: the state's cluster id {:?} is not the backup's {:?}",
            from.file.display(),
            state.cluster_id,
            backup.cluster_id
        )));
    }
    let record = state
        .objects
        .iter()
        .find_map(|o| match &o.kind {
            Some(Kind::Pki(p)) => Some(p.clone()),
            _ => None,
        })
        .ok_or_else(|| {
            RecoveryError::Invalid(format!("{} holds no CA record", from.file.display()))
        })?;
    let marker = Marker::new(state.cluster_id.clone(), datadir::new_member_id());
    let rewritten = one_member::rewrite(
        &mut state,
        &OneMember {
            member_id: marker.member_id,
            address: from.advertise.to_string(),
            rotate_controller_token: false,
            now_ms: crate::clock::now_ms(),
        },
    )?;
    let written = (|| {
        if !from.plaintext {
            write_credentials(from.data_dir, &record, &marker)?;
        }
        Keyring::store_joined(from.data_dir, &backup.secrets_key)?;
        Ok::<_, RecoveryError>(datadir::create_from(
            from.data_dir,
            &marker,
            &state,
            &[marker.member_id],
        )?)
    })();
    let db = match written {
        Ok(db) => db,
        Err(err) => {
            empty_dir(from.data_dir);
            return Err(err);
        }
    };
    info!(
        cluster = %marker.cluster_id,
        member = marker.member_id,
        revision = state.revision,
        removed_members = ?rewritten.removed,
        "restored the cluster from {}",
        from.file.display()
    );
    Ok(Restored { marker, db, keys })
}

/// The backup's secrets key, opened (with the unlock key when it is wrapped).
fn open_key(file: &Path, bytes: &[u8], unlock_key: Option<&str>) -> Result<Keyring, RecoveryError> {
    match Keyring::from_file(file, bytes.to_vec())? {
        KeyFile::Open(keys) => {
            if unlock_key.is_some() {
                warn!("the backup's secrets key is not autolocked; --unlock-key is not needed");
            }
            Ok(keys)
        }
        KeyFile::Locked(locked) => {
            let key = unlock_key.ok_or(RecoveryError::NeedsUnlockKey)?;
            Ok(locked.unlock(key)?)
        }
    }
}

/// This member's certificate and a new admin bundle, signed by the backup's CA.
fn write_credentials(
    data_dir: &Path,
    record: &berth_proto::store::ClusterPki,
    marker: &Marker,
) -> Result<(), RecoveryError> {
    let identity = |node_id: String, role| Identity {
        node_id,
        role,
        cluster_id: marker.cluster_id.clone(),
    };
    let member = crate::ca::renewer::issue_locally(
        record,
        &identity(marker.member_id.to_string(), Role::Controller),
        crate::ca::record::lifetime(record),
    )?;
    member.save(&datadir::tls_dir(data_dir))?;
    let admin = crate::ca::renewer::issue_locally(
        record,
        &identity(format!("admin-{}", crate::ids::new_id()), Role::Admin),
        berth_pki::ca::ADMIN_LIFETIME,
    )?;
    admin.save(&datadir::admin_dir(data_dir))?;
    Ok(())
}

/// Removes what a failed restore wrote.
fn empty_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path: PathBuf = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(err) = removed {
            warn!(path = %path.display(), %err, "could not remove what the failed restore wrote");
        }
    }
}
