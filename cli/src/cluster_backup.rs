//! `berth cluster backup FILE`: a consistent backup of the cluster's state,
//! written atomically (a temporary file beside FILE, synced, renamed) with
//! mode 0600 — it holds the CA's key and the secrets' data key.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use berth_proto::v1::recovery_client::RecoveryClient;
use berth_proto::v1::{BackupRequest, BackupSummary};
use serde_json::json;

use crate::client::{Access, explain};
use crate::output::{self, Format};

pub async fn run(access: &Access, file: &Path, format: Format) -> Result<()> {
    let channel = crate::client::channel(access).await?;
    let mut stream = RecoveryClient::new(channel)
        .max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES)
        .backup(BackupRequest {})
        .await
        .map_err(explain)?
        .into_inner();
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Created 0600 by tempfile; removed if anything below fails.
    let mut tmp = tempfile::Builder::new()
        .prefix(".berth-backup")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write a backup in {}", dir.display()))?;
    let mut summary: Option<BackupSummary> = None;
    let mut written = 0u64;
    while let Some(chunk) = stream.message().await.map_err(explain)? {
        if summary.is_none() {
            summary = chunk.summary;
        }
        written += chunk.data.len() as u64;
        tmp.write_all(&chunk.data)
            .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    }
    let Some(summary) = summary else {
        bail!("the controller sent no backup");
    };
    if written != summary.bytes {
        bail!(
            "the backup stream ended after {written} of {} bytes; nothing was written",
            summary.bytes
        );
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot sync {}", tmp.path().display()))?;
    tmp.persist(file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    print_summary(file, &summary, format)
}

fn print_summary(file: &Path, s: &BackupSummary, format: Format) -> Result<()> {
    match format {
        Format::Json => output::json(&json!({
            "file": file,
            "cluster_id": s.cluster_id,
            "revision": s.revision,
            "applied_index": s.applied_index,
            "bytes": s.bytes,
            "counts": s.counts,
            "stacks": s.stacks,
            "secrets_key_locked": s.secrets_key_locked,
        })),
        Format::Table => {
            println!(
                "Backup of cluster {} at revision {} (raft index {}) written to {} ({} bytes).",
                s.cluster_id,
                s.revision,
                s.applied_index,
                file.display(),
                s.bytes
            );
            let mut rows: Vec<Vec<String>> = s
                .counts
                .iter()
                .filter(|(table, _)| table.as_str() != "pki")
                .map(|(table, n)| vec![plural(table), n.to_string()])
                .collect();
            rows.push(vec!["stacks".into(), s.stacks.to_string()]);
            output::table(&["WHAT", "COUNT"], &rows);
            println!(
                "It holds the root CA (certificate and key), the cluster id and the secrets' data key{}.",
                if s.secrets_key_locked {
                    " wrapped by the unlock key: a restore needs --unlock-key"
                } else {
                    " (not autolocked): keep the file as safe as the cluster's secrets"
                }
            );
            Ok(())
        }
    }
}

/// A table's name as a row label: "services", "cluster settings".
fn plural(table: &str) -> String {
    let words = table.replace('_', " ");
    if words.ends_with('s') {
        words
    } else {
        format!("{words}s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_names_read_as_plurals() {
        assert_eq!(super::plural("service"), "services");
        assert_eq!(super::plural("cluster_settings"), "cluster settings");
    }
}
