//! The cluster's data key, which seals secret values at rest.
//!
//! `berth-controller --init` makes the key (32 random bytes); a controller that
//! joins gets it in the `JoinResponse`. Each controller keeps it in
//! `<data-dir>/keys/secrets.key` (directory 0700, file 0600, written
//! atomically). A secret is sealed (ChaCha20-Poly1305, ring) by the controller
//! that takes `secret create`, before it is proposed, so the Raft log,
//! snapshots and the state machine's files only ever hold the sealed form;
//! only the leader's dispatcher opens it, for the nodes whose tasks use it.
//!
//! Sealed form: `1 || nonce (12 bytes) || ciphertext || tag (16 bytes)`; the
//! secret's id is the associated data, so a sealed value cannot be moved to
//! another secret.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_proto::Redacted;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const KEYS_DIR: &str = "keys";
const KEY_FILE: &str = "secrets.key";
const KEY_LEN: usize = 32;
/// First byte of the sealed form: the scheme (ChaCha20-Poly1305, id as AAD).
const SEALED_V1: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("secrets key {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "secrets key {path} is missing: this data dir was made before secrets existed or \
         lost the file; copy keys/secrets.key from another controller of the cluster"
    )]
    Missing { path: PathBuf },
    #[error("secrets key {path} is {found} bytes, not {KEY_LEN}")]
    BadLength { path: PathBuf, found: usize },
    #[error("the cluster sent a secrets key of {found} bytes, not {KEY_LEN}")]
    BadJoinKey { found: usize },
    #[error("no random bytes from the system")]
    Random,
    #[error("secret {secret}: sealing failed")]
    Seal { secret: String },
    #[error(
        "secret {secret}: cannot open its sealed value (another cluster's key, or the stored value is damaged)"
    )]
    Open { secret: String },
}

/// The data key, shared by the API (which seals) and the dispatcher (which
/// opens). Its Debug prints no key.
#[derive(Clone)]
pub struct Keyring {
    raw: Arc<[u8; KEY_LEN]>,
    key: Arc<LessSafeKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keyring(<redacted>)")
    }
}

fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEYS_DIR).join(KEY_FILE)
}

impl Keyring {
    fn from_raw(raw: [u8; KEY_LEN]) -> Keyring {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &raw)
            .unwrap_or_else(|_| unreachable!("a 32-byte key fits ChaCha20-Poly1305"));
        Keyring {
            raw: Arc::new(raw),
            key: Arc::new(LessSafeKey::new(unbound)),
        }
    }

    /// A new random key, written to `data_dir` (at `--init`).
    pub fn create(data_dir: &Path) -> Result<Keyring, KeyringError> {
        let mut raw = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut raw)
            .map_err(|_| KeyringError::Random)?;
        write_key(data_dir, &raw)?;
        Ok(Keyring::from_raw(raw))
    }

    /// Writes the key a joining controller got from the cluster.
    pub fn store_joined(data_dir: &Path, key: &[u8]) -> Result<Keyring, KeyringError> {
        let raw: [u8; KEY_LEN] = key
            .try_into()
            .map_err(|_| KeyringError::BadJoinKey { found: key.len() })?;
        write_key(data_dir, &raw)?;
        Ok(Keyring::from_raw(raw))
    }

    /// The key of an existing data dir.
    pub fn load(data_dir: &Path) -> Result<Keyring, KeyringError> {
        let path = key_path(data_dir);
        let bytes = std::fs::read(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                KeyringError::Missing { path: path.clone() }
            } else {
                KeyringError::Io {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        let raw: [u8; KEY_LEN] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| KeyringError::BadLength {
                    path,
                    found: bytes.len(),
                })?;
        Ok(Keyring::from_raw(raw))
    }

    /// The key's bytes, for a controller that joins.
    pub fn export(&self) -> Vec<u8> {
        self.raw.to_vec()
    }

    /// `plain` sealed for the secret `secret_id`.
    pub fn seal(&self, secret_id: &str, plain: &[u8]) -> Result<Vec<u8>, KeyringError> {
        let failed = || KeyringError::Seal {
            secret: secret_id.to_string(),
        };
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| failed())?;
        let mut body = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(secret_id.as_bytes()),
                &mut body,
            )
            .map_err(|_| failed())?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + body.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The value `seal` sealed for `secret_id`.
    pub fn open(&self, secret_id: &str, sealed: &[u8]) -> Result<Redacted, KeyringError> {
        let failed = || KeyringError::Open {
            secret: secret_id.to_string(),
        };
        let (&scheme, rest) = sealed.split_first().ok_or_else(failed)?;
        if scheme != SEALED_V1 || rest.len() < NONCE_LEN {
            return Err(failed());
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| failed())?;
        let mut body = body.to_vec();
        let plain_len = self
            .key
            .open_in_place(nonce, Aad::from(secret_id.as_bytes()), &mut body)
            .map_err(|_| failed())?
            .len();
        body.truncate(plain_len);
        Ok(Redacted(body))
    }
}

/// Writes the key file: a temporary file of mode 0600 in a 0700 directory,
/// synced, renamed over the final name, the directory synced.
fn write_key(data_dir: &Path, raw: &[u8; KEY_LEN]) -> Result<(), KeyringError> {
    let dir = data_dir.join(KEYS_DIR);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyringError::Io { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io(&dir))?;
    // An existing directory keeps its mode: make it ours.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io(&dir))?;
    let tmp = dir.join(format!("{KEY_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(raw).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    let path = key_path(data_dir);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(&dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = Keyring::create(dir.path()).expect("create");
        let sealed = keys.seal("s1", b"hunter2").expect("seal");
        assert!(
            !sealed.windows(7).any(|w| w == b"hunter2"),
            "the sealed form holds no clear text"
        );
        assert_eq!(
            keys.open("s1", &sealed).expect("open").as_bytes(),
            b"hunter2"
        );
        assert!(matches!(
            keys.open("s2", &sealed),
            Err(KeyringError::Open { .. })
        ));
        let mut damaged = sealed.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(keys.open("s1", &damaged).is_err());
        assert!(keys.open("s1", &[]).is_err());

        let other = tempfile::tempdir().expect("tempdir");
        let foreign = Keyring::create(other.path()).expect("create");
        assert!(foreign.open("s1", &sealed).is_err());
        // A joining controller gets the same key.
        let joined = Keyring::store_joined(other.path(), &keys.export()).expect("store");
        assert_eq!(
            joined.open("s1", &sealed).expect("open").as_bytes(),
            b"hunter2"
        );
        assert!(!format!("{joined:?}").contains(&format!("{:?}", &keys.export()[..4])));
    }

    #[test]
    fn the_key_file_is_private_and_reloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = Keyring::create(dir.path()).expect("create");
        let meta = std::fs::metadata(key_path(dir.path())).expect("file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let meta = std::fs::metadata(dir.path().join(KEYS_DIR)).expect("dir");
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        let again = Keyring::load(dir.path()).expect("load");
        assert_eq!(again.export(), keys.export());

        let empty = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            Keyring::load(empty.path()),
            Err(KeyringError::Missing { .. })
        ));
        assert!(matches!(
            Keyring::store_joined(empty.path(), b"short"),
            Err(KeyringError::BadJoinKey { found: 5 })
        ));
    }
}
