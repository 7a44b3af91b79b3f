//! A node's or user's credentials on disk: `ca.pem` (the roots it trusts),
//! `cert.pem` and `key.pem` — the names Docker's `DOCKER_CERT_PATH` uses.
//! The directory is 0700 and the key 0600; every file is replaced atomically.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::Digest;

use crate::{CertInfo, PkiError};

pub const CA_FILE: &str = "ca.pem";
pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";

#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("cert", &self.info().map(|i| i.identity))
            .field("key", &"<redacted>")
            .finish()
    }
}

/// SHA-256 over a CA bundle's PEM text, in hex: what a join token pins.
pub fn ca_digest(ca_pem: &str) -> String {
    hex::encode(sha2::Sha256::digest(ca_pem.as_bytes()))
}

/// The certificates of a PEM text, leaf or roots first as written.
pub fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::BadCertificate(format!("PEM: {e}")))?;
    if certs.is_empty() {
        return Err(PkiError::BadCertificate(
            "no certificate in the PEM text".into(),
        ));
    }
    Ok(certs)
}

impl Bundle {
    /// What the leaf certificate says.
    pub fn info(&self) -> Result<CertInfo, PkiError> {
        CertInfo::from_der(&certificates(&self.cert_pem)?[0])
    }

    pub fn ca_digest(&self) -> String {
        ca_digest(&self.ca_pem)
    }

    /// Reads the three files of `dir`.
    pub fn load(dir: &Path) -> Result<Bundle, PkiError> {
        let read = |name: &'static str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    PkiError::NoCredentials {
                        dir: dir.to_path_buf(),
                        missing: name,
                    }
                } else {
                    PkiError::Io {
                        action: "read",
                        path,
                        source,
                    }
                }
            })
        };
        Ok(Bundle {
            ca_pem: read(CA_FILE)?,
            cert_pem: read(CERT_FILE)?,
            key_pem: read(KEY_FILE)?,
        })
    }

    /// Whether `dir` holds a bundle (all three files).
    pub fn exists(dir: &Path) -> bool {
        [CA_FILE, CERT_FILE, KEY_FILE]
            .iter()
            .all(|name| dir.join(name).is_file())
    }

    /// Writes the bundle into `dir` (created 0700), each file atomically; the
    /// key is written first and last replaced, so a crash never pairs a new
    /// certificate with an old key for longer than one rename.
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        private_dir(dir)?;
        write_atomic(&dir.join(KEY_FILE), self.key_pem.as_bytes(), 0o600)?;
        write_atomic(&dir.join(CA_FILE), self.ca_pem.as_bytes(), 0o644)?;
        write_atomic(&dir.join(CERT_FILE), self.cert_pem.as_bytes(), 0o644)?;
        Ok(())
    }
}

/// Creates `dir` (and its parents) if needed and makes it mode 0700: an
/// existing directory keeps its mode otherwise.
pub fn private_dir(dir: &Path) -> Result<(), PkiError> {
    let io = |action| {
        move |source| PkiError::Io {
            action,
            path: dir.to_path_buf(),
            source,
        }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("create"))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io("set the mode of"))
}

/// Writes `bytes` to `path` through a temporary file of mode `mode`, synced,
/// renamed over it, and the directory synced (the rename survives a crash).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| PkiError::Io {
            action,
            path,
            source,
        }
    };
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    file.write_all(bytes).map_err(io("write", &tmp))?;
    file.sync_all().map_err(io("sync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("replace", path))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Authority, Identity, Role, Validity};

    #[test]
    fn a_saved_bundle_loads_back_with_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::create("c", crate::now_ms()).unwrap();
        let identity = Identity {
            node_id: "admin-1".into(),
            role: Role::Admin,
            cluster_id: "c".into(),
        };
        let bundle = ca
            .issue_bundle(
                &identity,
                Validity::starting_at(crate::now_ms(), crate::ca::DEFAULT_LIFETIME),
            )
            .unwrap();
        let target = dir.path().join("admin");
        bundle.save(&target).unwrap();
        assert_eq!(Bundle::load(&target).unwrap(), bundle);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&target.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&target), 0o700);
        assert!(!format!("{bundle:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn a_missing_file_names_itself_and_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("ca.pem is missing"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }
}
