//! The image service's error type.

use std::path::PathBuf;

use super::unpack::UnpackError;
use berth_registry::{AuthError, Digest, DigestError, ReferenceError};

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

/// Everything that can go wrong in the image service, with the image, digest or
/// file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("size mismatch for {what} {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("image index {}: {source}", path.display())]
    Index {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error(
        "image garbage collection marks: the low mark {low} % must be below the high mark {high} %, which is 1 to 100"
    )]
    BadMarks { high: u8, low: u8 },
    #[error("corrupt record in the image index ({what}): {reason}")]
    CorruptRecord { what: String, reason: String },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("pull of {reference}: {what}: {reason}")]
    Registry {
        reference: String,
        what: String,
        reason: String,
    },
    #[error("pull of {reference}: no manifest for platform {wanted} (the image has: {available})")]
    NoPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("{what}: unknown media type {media_type:?}")]
    UnknownMediaType { what: String, media_type: String },
    #[error("{what}: invalid manifest: {reason}")]
    BadManifest { what: String, reason: String },
    #[error("no such image: {name}")]
    UnknownImage { name: String },
    #[error("layer {digest}: {source}")]
    Unpack {
        digest: Digest,
        #[source]
        source: UnpackError,
    },
    #[error("layer {digest}: uncompressed content is {actual}, the image config says {expected}")]
    DiffIdMismatch {
        digest: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("rootfs of container {container}: {reason}")]
    Rootfs { container: String, reason: String },
    #[error("import of {}: {reason}", path.display())]
    Import { path: PathBuf, reason: String },
    #[error(
        "the image store in {} is in use by another process (a running agent holds it: \
         use `berth images`, `berth pull`, `berth rmi` and `berth image prune`, which the \
         running agent serves)",
        path.display()
    )]
    Locked { path: PathBuf },
    #[error(
        "conflict: unable to remove image {image} (cannot be forced): task {task} is using it \
         (image {id}); stop or remove the task first"
    )]
    InUse {
        image: String,
        task: String,
        id: String,
    },
    #[error(
        "conflict: unable to delete {id} (must be forced): the image has several names ({names}); \
         remove them one by one or use -f"
    )]
    SeveralNames { id: String, names: String },
    #[error("image id prefix {prefix} is ambiguous: it matches {ids}")]
    AmbiguousId { prefix: String, ids: String },
    #[error("background task for {what} failed: {reason}")]
    Task { what: String, reason: String },
}

impl ImageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Runs `f` on a blocking thread and flattens a panic or cancellation into an error.
pub(crate) async fn blocking<T, F>(what: impl Into<String>, f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    let what = what.into();
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(ImageError::Task {
            what,
            reason: e.to_string(),
        }),
    }
}
