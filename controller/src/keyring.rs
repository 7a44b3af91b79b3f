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
//!
//! Autolock (`--init --autolock`): the key file holds the data key wrapped
//! (ChaCha20-Poly1305) by a key derived (HKDF-SHA256, a random salt) from an
//! unlock key that init prints once and no controller keeps:
//! `BKW1 || salt (16) || nonce (12) || wrapped key (32) || tag (16)`. A
//! controller that starts with such a file waits for `berth cluster unlock`
//! (unlock.rs). Controllers that join get the file as it is, wrapped.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_proto::Redacted;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Salt};
use ring::rand::{SecureRandom, SystemRandom};

const KEYS_DIR: &str = "keys";
const KEY_FILE: &str = "secrets.key";
const KEY_LEN: usize = 32;
/// First byte of the sealed form: the scheme (ChaCha20-Poly1305, id as AAD).
const SEALED_V1: u8 = 1;
/// First bytes of a wrapped (autolocked) key file.
const WRAPPED_MAGIC: &[u8; 4] = b"BKW1";
const SALT_LEN: usize = 16;
const TAG_LEN: usize = 16;
const WRAPPED_LEN: usize = WRAPPED_MAGIC.len() + SALT_LEN + NONCE_LEN + KEY_LEN + TAG_LEN;
/// HKDF info and AEAD associated data of the wrapping.
const WRAP_CONTEXT: &[u8] = b"berth secrets key v1";
/// How an unlock key is written.
const UNLOCK_PREFIX: &str = "BERTH-UNLOCK-";

/// Largest secret value (Swarm's limit).
pub const MAX_SECRET_BYTES: usize = 500 * 1024;

/// What a secret value may be (`secret create`, a stack's secrets): not
/// empty, at most 500 KiB. `Err` names the secret and what is wrong.
pub fn check_value(name: &str, data: &[u8]) -> Result<(), String> {
    if data.is_empty() {
        return Err(format!("secret {name}: the value is empty"));
    }
    if data.len() > MAX_SECRET_BYTES {
        return Err(format!(
            "secret {name}: the value is {} bytes, more than the limit of {MAX_SECRET_BYTES} (500 KiB)",
            data.len()
        ));
    }
    Ok(())
}

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
    #[error(
        "secrets key {path} is {found} bytes: neither a key ({KEY_LEN}) nor a locked key ({WRAPPED_LEN})"
    )]
    BadLength { path: PathBuf, found: usize },
    #[error(
        "the cluster sent a secrets key of {found} bytes: neither a key ({KEY_LEN}) nor a locked key ({WRAPPED_LEN})"
    )]
    BadJoinKey { found: usize },
    #[error("that is not an unlock key (it looks like {UNLOCK_PREFIX}<64 hex digits>)")]
    NotAnUnlockKey,
    #[error("wrong unlock key: it does not open this cluster's secrets key")]
    WrongUnlockKey,
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
    /// The key file as it is on disk (the key, or the key wrapped): what a
    /// controller that joins gets.
    file: Arc<Vec<u8>>,
    key: Arc<LessSafeKey>,
}

/// A key file as found at start.
pub enum KeyFile {
    Open(Keyring),
    /// Autolocked: the unlock key opens it.
    Locked(LockedKey),
}

/// A wrapped data key, waiting for its unlock key.
pub struct LockedKey {
    file: Vec<u8>,
}

/// The key that unwraps an autolocked data key: shown once, at init.
pub struct UnlockKey(String);

impl UnlockKey {
    /// `BERTH-UNLOCK-<hex>`, to give to `berth cluster unlock`.
    pub fn text(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnlockKey(<redacted>)")
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keyring(<redacted>)")
    }
}

fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEYS_DIR).join(KEY_FILE)
}

fn random<const N: usize>() -> Result<[u8; N], KeyringError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| KeyringError::Random)?;
    Ok(out)
}

/// The key that wraps the data key: HKDF-SHA256 of the unlock key.
fn wrapping_key(unlock: &[u8; KEY_LEN], salt: &[u8]) -> LessSafeKey {
    let prk = Salt::new(HKDF_SHA256, salt).extract(unlock);
    let okm = prk
        .expand(&[WRAP_CONTEXT], &CHACHA20_POLY1305)
        .unwrap_or_else(|_| unreachable!("32 bytes are within HKDF-SHA256's output"));
    LessSafeKey::new(UnboundKey::from(okm))
}

/// Whether a key file's content is the key wrapped by an unlock key (autolock).
pub fn is_wrapped(file: &[u8]) -> bool {
    classify(file) == Some(true)
}

/// The file form of a key: raw (false), or wrapped (true).
fn classify(bytes: &[u8]) -> Option<bool> {
    match bytes.len() {
        KEY_LEN => Some(false),
        WRAPPED_LEN if bytes.starts_with(WRAPPED_MAGIC) => Some(true),
        _ => None,
    }
}

impl Keyring {
    fn from_raw(raw: [u8; KEY_LEN], file: Vec<u8>) -> Keyring {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &raw)
            .unwrap_or_else(|_| unreachable!("a 32-byte key fits ChaCha20-Poly1305"));
        Keyring {
            file: Arc::new(file),
            key: Arc::new(LessSafeKey::new(unbound)),
        }
    }

    /// A new random key, written to `data_dir` (at `--init`).
    pub fn create(data_dir: &Path) -> Result<Keyring, KeyringError> {
        let raw = random::<KEY_LEN>()?;
        write_key(data_dir, &raw)?;
        Ok(Keyring::from_raw(raw, raw.to_vec()))
    }

    /// A new random key, written wrapped by a new unlock key (at `--init
    /// --autolock`); the unlock key is returned to be shown once.
    pub fn create_locked(data_dir: &Path) -> Result<(Keyring, UnlockKey), KeyringError> {
        let raw = random::<KEY_LEN>()?;
        let unlock = random::<KEY_LEN>()?;
        let salt = random::<SALT_LEN>()?;
        let nonce = random::<NONCE_LEN>()?;
        let mut wrapped = raw.to_vec();
        wrapping_key(&unlock, &salt)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(WRAP_CONTEXT),
                &mut wrapped,
            )
            .map_err(|_| KeyringError::Random)?;
        let mut file = Vec::with_capacity(WRAPPED_LEN);
        file.extend_from_slice(WRAPPED_MAGIC);
        file.extend_from_slice(&salt);
        file.extend_from_slice(&nonce);
        file.extend_from_slice(&wrapped);
        write_key(data_dir, &file)?;
        let text = format!("{UNLOCK_PREFIX}{}", hex::encode(unlock));
        Ok((Keyring::from_raw(raw, file), UnlockKey(text)))
    }

    /// Writes the key file a joining controller got from the cluster, as it
    /// came (wrapped when the cluster is autolocked).
    pub fn store_joined(data_dir: &Path, file: &[u8]) -> Result<(), KeyringError> {
        if classify(file).is_none() {
            return Err(KeyringError::BadJoinKey { found: file.len() });
        }
        write_key(data_dir, file)
    }

    /// The key file of an existing data dir: the key, or the key locked.
    pub fn load(data_dir: &Path) -> Result<KeyFile, KeyringError> {
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
        Self::from_file(&path, bytes)
    }

    /// A key file's content (read from `path`, which errors name): the key,
    /// or the key locked.
    pub fn from_file(path: &Path, bytes: Vec<u8>) -> Result<KeyFile, KeyringError> {
        match classify(&bytes) {
            Some(false) => {
                let mut raw = [0u8; KEY_LEN];
                raw.copy_from_slice(&bytes);
                Ok(KeyFile::Open(Keyring::from_raw(raw, bytes)))
            }
            Some(true) => Ok(KeyFile::Locked(LockedKey { file: bytes })),
            None => Err(KeyringError::BadLength {
                path: path.to_path_buf(),
                found: bytes.len(),
            }),
        }
    }

    /// The key file as on disk, for a controller that joins.
    pub fn export(&self) -> Vec<u8> {
        self.file.to_vec()
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

impl LockedKey {
    /// The data key, unwrapped with `unlock` (as `create_locked` wrote it).
    pub fn unlock(&self, unlock: &str) -> Result<Keyring, KeyringError> {
        let digits = unlock
            .trim()
            .strip_prefix(UNLOCK_PREFIX)
            .ok_or(KeyringError::NotAnUnlockKey)?;
        let unlock: [u8; KEY_LEN] = hex::decode(digits)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(KeyringError::NotAnUnlockKey)?;
        let rest = &self.file[WRAPPED_MAGIC.len()..];
        let (salt, rest) = rest.split_at(SALT_LEN);
        let (nonce, wrapped) = rest.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyringError::WrongUnlockKey)?;
        let mut body = wrapped.to_vec();
        let raw = wrapping_key(&unlock, salt)
            .open_in_place(nonce, Aad::from(WRAP_CONTEXT), &mut body)
            .map_err(|_| KeyringError::WrongUnlockKey)?;
        let raw: [u8; KEY_LEN] = (&*raw)
            .try_into()
            .map_err(|_| KeyringError::WrongUnlockKey)?;
        Ok(Keyring::from_raw(raw, self.file.clone()))
    }
}

/// Writes the key file: a temporary file of mode 0600 in a 0700 directory,
/// synced, renamed over the final name, the directory synced.
fn write_key(data_dir: &Path, raw: &[u8]) -> Result<(), KeyringError> {
    let io = |err: berth_pki::PkiError| match err {
        berth_pki::PkiError::Io { path, source, .. } => KeyringError::Io { path, source },
        other => KeyringError::Io {
            path: key_path(data_dir),
            source: std::io::Error::other(other.to_string()),
        },
    };
    berth_pki::bundle::private_dir(&data_dir.join(KEYS_DIR)).map_err(io)?;
    berth_pki::bundle::write_atomic(&key_path(data_dir), raw, 0o600).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn open(dir: &Path) -> Keyring {
        match Keyring::load(dir).expect("load") {
            KeyFile::Open(k) => k,
            KeyFile::Locked(_) => panic!("the key is locked"),
        }
    }

    #[test]
    fn an_autolocked_key_opens_only_with_its_unlock_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (keys, unlock) = Keyring::create_locked(dir.path()).expect("create");
        let sealed = keys.seal("s1", b"hunter2").expect("seal");
        let file = std::fs::read(key_path(dir.path())).expect("file");
        assert!(file.starts_with(WRAPPED_MAGIC));
        assert_eq!(format!("{unlock:?}"), "UnlockKey(<redacted>)");
        let KeyFile::Locked(locked) = Keyring::load(dir.path()).expect("load") else {
            panic!("an autolocked key loads locked");
        };
        assert!(matches!(
            locked.unlock("BERTH-UNLOCK-00"),
            Err(KeyringError::NotAnUnlockKey)
        ));
        let (_, other) =
            Keyring::create_locked(tempfile::tempdir().expect("t").path()).expect("another");
        assert!(matches!(
            locked.unlock(other.text()),
            Err(KeyringError::WrongUnlockKey)
        ));
        let opened = locked
            .unlock(&format!("{}\n", unlock.text()))
            .expect("unlock");
        assert_eq!(
            opened.open("s1", &sealed).expect("open").as_bytes(),
            b"hunter2"
        );
        // Joiners get it wrapped, and are locked too.
        let joiner = tempfile::tempdir().expect("tempdir");
        Keyring::store_joined(joiner.path(), &opened.export()).expect("store");
        assert!(matches!(
            Keyring::load(joiner.path()).expect("load"),
            KeyFile::Locked(_)
        ));
    }

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
        let joiner = tempfile::tempdir().expect("tempdir");
        Keyring::store_joined(joiner.path(), &keys.export()).expect("store");
        let joined = open(joiner.path());
        assert_eq!(
            joined.open("s1", &sealed).expect("open").as_bytes(),
            b"hunter2"
        );
        assert_eq!(format!("{joined:?}"), "Keyring(<redacted>)");
    }

    #[test]
    fn the_key_file_is_private_and_reloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = Keyring::create(dir.path()).expect("create");
        let meta = std::fs::metadata(key_path(dir.path())).expect("file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let meta = std::fs::metadata(dir.path().join(KEYS_DIR)).expect("dir");
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        let again = open(dir.path());
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
