//! The backup file: a fixed header, the `ClusterBackup` message and a
//! SHA-256 over both, so a damaged or cut file is refused before anything is
//! restored from it.
//!
//! ```text
//! "BERTHBAK" | version u32 BE | payload length u64 BE | payload | sha256(all before)
//! ```

use std::path::{Path, PathBuf};

use berth_proto::v1::ClusterBackup;
use prost::Message as _;

const MAGIC: &[u8; 8] = b"BERTHBAK";
/// The format this controller writes and reads.
pub const VERSION: u32 = 1;
const HEADER_LEN: usize = MAGIC.len() + 4 + 8;
const CHECKSUM_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "{path} is not a berth backup (it does not start with {:?})",
        String::from_utf8_lossy(MAGIC)
    )]
    NotABackup { path: PathBuf },
    #[error(
        "{path} is a backup of format {found}; this controller reads format {VERSION} \
         (restore it with a berth version that wrote it)"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("{path} is truncated: it holds {found} bytes, its header announces {expected}")]
    Truncated {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{path} is corrupt: its checksum does not match its content")]
    Checksum { path: PathBuf },
    #[error("{path} is corrupt: {why}")]
    Decode { path: PathBuf, why: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn sha256(bytes: &[u8]) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, bytes)
}

/// The bytes of a backup file holding `backup`.
pub fn encode(backup: &ClusterBackup) -> Vec<u8> {
    let payload = backup.encode_to_vec();
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + CHECKSUM_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(&payload);
    let checksum = sha256(&out);
    out.extend_from_slice(checksum.as_ref());
    out
}

/// The backup in `bytes` (read from `path`, which errors name).
pub fn decode(path: &Path, bytes: &[u8]) -> Result<ClusterBackup, FormatError> {
    let path = path.to_path_buf();
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(FormatError::NotABackup { path });
    }
    let truncated = |expected: u64| FormatError::Truncated {
        path: path.clone(),
        expected,
        found: bytes.len() as u64,
    };
    if bytes.len() < HEADER_LEN {
        return Err(truncated(HEADER_LEN as u64));
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&bytes[8..12]);
    let version = u32::from_be_bytes(version);
    if version != VERSION {
        return Err(FormatError::Version {
            path,
            found: version,
        });
    }
    let mut length = [0u8; 8];
    length.copy_from_slice(&bytes[12..HEADER_LEN]);
    let length = u64::from_be_bytes(length);
    let expected = (HEADER_LEN as u64)
        .saturating_add(length)
        .saturating_add(CHECKSUM_LEN as u64);
    if (bytes.len() as u64) < expected {
        return Err(truncated(expected));
    }
    if bytes.len() as u64 > expected {
        return Err(FormatError::Decode {
            path,
            why: format!(
                "{} bytes follow the end its header announces",
                bytes.len() as u64 - expected
            ),
        });
    }
    let body_end = bytes.len() - CHECKSUM_LEN;
    if sha256(&bytes[..body_end]).as_ref() != &bytes[body_end..] {
        return Err(FormatError::Checksum { path });
    }
    ClusterBackup::decode(&bytes[HEADER_LEN..body_end]).map_err(|e| FormatError::Decode {
        path,
        why: e.to_string(),
    })
}

/// Reads and checks the backup file at `path`.
pub fn read(path: &Path) -> Result<ClusterBackup, FormatError> {
    let bytes = std::fs::read(path).map_err(|source| FormatError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode(path, &bytes)
}

#[cfg(test)]
mod tests {
    use berth_proto::store::SnapshotData;

    use super::*;

    fn sample() -> ClusterBackup {
        ClusterBackup {
            cluster_id: "c1".into(),
            revision: 42,
            applied_index: 99,
            applied_term: 3,
            created_ms: 1_700_000_000_000,
            berth_version: "test".into(),
            state: Some(SnapshotData {
                revision: 42,
                members: [(7, "10.0.0.1:7400".to_string())].into(),
                objects: Vec::new(),
                cluster_id: "c1".into(),
            }),
            secrets_key: vec![9; 32],
        }
    }

    fn path() -> &'static Path {
        Path::new("b.bak")
    }

    #[test]
    fn round_trip() {
        let backup = sample();
        assert_eq!(decode(path(), &encode(&backup)).unwrap(), backup);
    }

    #[test]
    fn a_flipped_byte_fails_the_checksum() {
        let mut bytes = encode(&sample());
        let middle = HEADER_LEN + 3;
        bytes[middle] ^= 0x40;
        assert!(matches!(
            decode(path(), &bytes),
            Err(FormatError::Checksum { .. })
        ));
    }

    #[test]
    fn a_cut_file_is_truncated() {
        let bytes = encode(&sample());
        for keep in [HEADER_LEN - 1, HEADER_LEN + 1, bytes.len() - 1] {
            let err = decode(path(), &bytes[..keep]).unwrap_err();
            assert!(
                matches!(err, FormatError::Truncated { .. }),
                "{keep} bytes: {err}"
            );
        }
    }

    #[test]
    fn another_version_is_refused_by_name() {
        let mut bytes = encode(&sample());
        bytes[8..12].copy_from_slice(&2u32.to_be_bytes());
        let err = decode(path(), &bytes).unwrap_err();
        assert!(matches!(err, FormatError::Version { found: 2, .. }));
        assert!(err.to_string().contains("format 2"), "{err}");
    }

    #[test]
    fn other_files_and_trailing_bytes_are_refused() {
        assert!(matches!(
            decode(path(), b"{\"not\": \"a backup\"}"),
            Err(FormatError::NotABackup { .. })
        ));
        let mut bytes = encode(&sample());
        bytes.push(0);
        assert!(matches!(
            decode(path(), &bytes),
            Err(FormatError::Decode { .. })
        ));
    }
}
