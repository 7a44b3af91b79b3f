//! The content store: blobs by sha256 digest under `blobs/sha256/<hex>`.
//!
//! A blob is written to a temporary file in `ingest/`, hashed and counted while it
//! streams in, checked against the expected digest and size, fsynced and renamed
//! into place. A reader never sees a partial blob; a failed write leaves nothing.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use super::digest::Digest;
use super::error::{ImageError, Result};

/// Largest manifest or config the store reads into memory.
pub const MAX_METADATA_BLOB: u64 = 8 << 20;

#[derive(Clone, Debug)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

/// What a blob must turn out to be.
#[derive(Clone, Debug)]
pub struct Expected {
    pub digest: Digest,
    pub size: Option<u64>,
    /// Used in error messages ("layer", "config of NAME", ...).
    pub what: String,
}

impl ContentStore {
    /// Opens (creating) the store under `root` and removes abandoned ingest files.
    pub fn open(root: &Path) -> Result<ContentStore> {
        let blobs = root.join("blobs").join("sha256");
        let ingest = root.join("ingest");
        for dir in [&blobs, &ingest] {
            std::fs::create_dir_all(dir).map_err(|e| ImageError::io("create", dir, e))?;
        }
        // Ingest files belong to writes of an earlier process that did not finish.
        let entries = std::fs::read_dir(&ingest).map_err(|e| ImageError::io("read", &ingest, e))?;
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(ContentStore { blobs, ingest })
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Size on disk of a blob, if present.
    pub fn size(&self, digest: &Digest) -> Option<u64> {
        std::fs::metadata(self.blob_path(digest))
            .ok()
            .map(|m| m.len())
    }

    /// Reads a small blob (manifest, config, index) whole.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|e| ImageError::io("open blob", &path, e))?;
        let mut data = Vec::new();
        file.take(MAX_METADATA_BLOB + 1)
            .read_to_end(&mut data)
            .map_err(|e| ImageError::io("read blob", &path, e))?;
        if data.len() as u64 > MAX_METADATA_BLOB {
            return Err(ImageError::BadManifest {
                what: digest.to_string(),
                reason: format!("larger than {MAX_METADATA_BLOB} bytes"),
            });
        }
        Ok(data)
    }

    /// Opens a blob for streaming reads.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| ImageError::io("open blob", &path, e))
    }

    /// Starts writing a blob whose digest is known in advance or learnt at the end.
    pub fn writer(&self) -> Result<BlobWriter> {
        let file = NamedTempFile::new_in(&self.ingest)
            .map_err(|e| ImageError::io("create ingest file in", &self.ingest, e))?;
        Ok(BlobWriter {
            out: BufWriter::with_capacity(256 << 10, file),
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// Stores `data`, checked against `expected`.
    pub fn write_all(&self, data: &[u8], expected: &Expected) -> Result<()> {
        if self.contains(&expected.digest) {
            return Ok(());
        }
        let mut w = self.writer()?;
        w.write(data)?;
        w.commit(self, Some(expected))?;
        Ok(())
    }

    /// Copies a blob from a reader, checked against `expected` while streaming.
    pub fn copy_from(&self, reader: &mut dyn Read, expected: &Expected) -> Result<()> {
        let mut w = self.writer()?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = reader.read(&mut buf).map_err(|e| ImageError::Registry {
                reference: expected.what.clone(),
                what: format!("reading {}", expected.digest),
                reason: e.to_string(),
            })?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n])?;
            if let Some(size) = expected.size
                && w.written > size
            {
                return Err(ImageError::SizeMismatch {
                    what: expected.what.clone(),
                    digest: expected.digest.clone(),
                    expected: size,
                    actual: w.written,
                });
            }
        }
        w.commit(self, Some(expected))?;
        Ok(())
    }

    /// Every blob in the store.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let entries =
            std::fs::read_dir(&self.blobs).map_err(|e| ImageError::io("read", &self.blobs, e))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some(d) = name
                .to_str()
                .and_then(|h| Digest::parse(&format!("sha256:{h}")).ok())
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    pub fn delete(&self, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io("remove blob", path, e)),
        }
    }
}

/// A blob being written; dropped without `commit`, it leaves nothing behind.
pub struct BlobWriter {
    out: BufWriter<NamedTempFile>,
    hasher: Sha256,
    written: u64,
}

impl BlobWriter {
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.hasher.update(data);
        self.written += data.len() as u64;
        self.out
            .write_all(data)
            .map_err(|e| ImageError::io("write", self.out.get_ref().path().to_path_buf(), e))
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verifies, fsyncs and renames the blob into place; returns its digest.
    pub fn commit(self, store: &ContentStore, expected: Option<&Expected>) -> Result<Digest> {
        let actual = Digest::from_hasher(self.hasher);
        if let Some(exp) = expected {
            if let Some(size) = exp.size
                && size != self.written
            {
                return Err(ImageError::SizeMismatch {
                    what: exp.what.clone(),
                    digest: exp.digest.clone(),
                    expected: size,
                    actual: self.written,
                });
            }
            if exp.digest != actual {
                return Err(ImageError::DigestMismatch {
                    what: exp.what.clone(),
                    expected: exp.digest.clone(),
                    actual,
                });
            }
        }
        let tmp = self.out.into_inner().map_err(|e| {
            let (err, w) = e.into_parts();
            ImageError::io("flush", w.get_ref().path().to_path_buf(), err)
        })?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| ImageError::io("fsync", tmp.path().to_path_buf(), e))?;
        let dest = store.blob_path(&actual);
        tmp.persist(&dest)
            .map_err(|e| ImageError::io("rename into", &dest, e.error))?;
        if let Ok(dir) = File::open(&store.blobs) {
            let _ = dir.sync_all();
        }
        Ok(actual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        (dir, store)
    }

    fn ingest_is_empty(dir: &Path) -> bool {
        std::fs::read_dir(dir.join("ingest"))
            .unwrap()
            .next()
            .is_none()
    }

    #[test]
    fn opening_clears_what_an_interrupted_write_left() {
        let (dir, store) = store();
        let mut w = store.writer().unwrap();
        w.write(b"half a blob").unwrap();
        // A crash: the temporary file stays behind.
        std::mem::forget(w);
        assert!(!ingest_is_empty(dir.path()));
        ContentStore::open(dir.path()).unwrap();
        assert!(ingest_is_empty(dir.path()));
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn a_verified_blob_lands_and_a_bad_one_leaves_nothing() {
        let (dir, store) = store();
        let data = b"hello blob";
        let good = Expected {
            digest: Digest::of(data),
            size: Some(data.len() as u64),
            what: "test blob".into(),
        };
        store.copy_from(&mut &data[..], &good).unwrap();
        assert!(store.contains(&good.digest));
        assert_eq!(store.read(&good.digest).unwrap(), data);

        let wrong = Expected {
            digest: Digest::of(b"something else"),
            size: None,
            what: "test blob".into(),
        };
        let err = store.copy_from(&mut &data[..], &wrong).unwrap_err();
        assert!(
            err.to_string().contains("digest mismatch for test blob"),
            "{err}"
        );
        assert!(!store.contains(&wrong.digest));

        let truncated = Expected {
            digest: Digest::of(b"hello blob and more"),
            size: Some(19),
            what: "layer".into(),
        };
        let err = store.copy_from(&mut &data[..], &truncated).unwrap_err();
        assert!(
            err.to_string().contains("expected 19 bytes, got 10"),
            "{err}"
        );
        assert!(ingest_is_empty(dir.path()));
        assert_eq!(store.list().unwrap(), vec![good.digest.clone()]);
        store.delete(&good.digest).unwrap();
        assert!(store.list().unwrap().is_empty());
    }
}
