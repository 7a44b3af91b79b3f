//! Debug for the backup messages (recovery.proto): a backup carries the
//! secrets' data key (and, in its state, the CA key), so no `{:?}` prints
//! more than their sizes.

use std::fmt;

use crate::v1::{BackupChunk, ClusterBackup};

impl fmt::Debug for ClusterBackup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterBackup")
            .field("cluster_id", &self.cluster_id)
            .field("revision", &self.revision)
            .field("applied_index", &self.applied_index)
            .field("applied_term", &self.applied_term)
            .field("created_ms", &self.created_ms)
            .field("berth_version", &self.berth_version)
            .field(
                "objects",
                &self.state.as_ref().map_or(0, |s| s.objects.len()),
            )
            .field(
                "secrets_key",
                &format!("<redacted {} bytes>", self.secrets_key.len()),
            )
            .finish()
    }
}

impl fmt::Debug for BackupChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupChunk")
            .field("data", &format!("<redacted {} bytes>", self.data.len()))
            .field("summary", &self.summary)
            .finish()
    }
}
