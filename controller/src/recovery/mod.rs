//! Backups and recovery (docs/design/recovery.md): taking a consistent backup
//! (`backup`), its file (`format`), a new cluster from it (`restore`), and a
//! surviving member made a one-member cluster after quorum loss (`force`).
//! Both recoveries rewrite the state for one member (`one_member`).

pub mod backup;
pub mod force;
pub mod format;
pub mod one_member;
pub mod restore;

use std::path::PathBuf;

/// A recovery asked for on the command line.
#[derive(Clone, Debug, Default)]
pub enum Recover {
    #[default]
    None,
    /// `--init --restore FILE [--unlock-key KEY]`: a new cluster from a backup.
    Restore {
        file: PathBuf,
        unlock_key: Option<String>,
    },
    /// `--force-new-cluster`: this surviving member alone, on its data.
    ForceNewCluster,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Format(#[from] format::FormatError),
    #[error("state machine: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("raft log: {0}")]
    Log(#[from] crate::raft::storage::LogError),
    #[error("raft log: {0}")]
    Raft(#[from] raft::Error),
    #[error(transparent)]
    DataDir(#[from] crate::datadir::DataDirError),
    #[error("secrets key: {0}")]
    Keyring(#[from] crate::keyring::KeyringError),
    #[error("certificates: {0}")]
    Renew(#[from] crate::ca::renewer::RenewError),
    #[error("certificates: {0}")]
    Pki(#[from] berth_pki::PkiError),
    #[error(
        "the backup's secrets key is autolocked: give the cluster's unlock key with --unlock-key"
    )]
    NeedsUnlockKey,
    #[error("{0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests;
