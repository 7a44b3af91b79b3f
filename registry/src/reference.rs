//! Image references: parsed and normalized with oci-spec's `Reference`
//! (`busybox` → `docker.io/library/busybox:latest`), and the pinned form a
//! task runs (`127.0.0.1:5000/web@sha256:…`).

use oci_client::Reference;

use crate::digest::Digest;

/// Why a string is not an image reference.
#[derive(Debug, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: String,
}

/// Parses `name` as an image reference.
pub fn parse(name: &str) -> Result<Reference, ReferenceError> {
    name.parse::<Reference>().map_err(|e| ReferenceError {
        reference: name.to_string(),
        reason: e.to_string(),
    })
}

/// The canonical name an image is stored under.
pub fn normalize(name: &str) -> Result<String, ReferenceError> {
    Ok(parse(name)?.whole())
}

/// The registry of image reference `name` as credentials name it
/// (`127.0.0.1:5000/app:1` → `127.0.0.1:5000`, `busybox` → `docker.io`).
pub fn registry_of(name: &str) -> Result<String, ReferenceError> {
    Ok(parse(name)?.registry().to_string())
}

/// The digest written in `name` (`web@sha256:…`, `web:1@sha256:…`), if any;
/// an error if it is not a sha256 digest (the only kind berth pulls).
pub fn digest_of(name: &str) -> Result<Option<Digest>, ReferenceError> {
    let parsed = parse(name)?;
    parsed
        .digest()
        .map(|d| {
            Digest::parse(d).map_err(|e| ReferenceError {
                reference: name.to_string(),
                reason: e.to_string(),
            })
        })
        .transpose()
}

/// `name` pinned to `digest`: its repository `@digest`, without the tag (a
/// digest names the content whatever tag led to it, so tasks of two tags of
/// one image share one stored image).
pub fn pinned(name: &str, digest: &Digest) -> Result<String, ReferenceError> {
    Ok(parse(name)?.clone_with_digest(digest.to_string()).whole())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_full_names_normalize() {
        assert_eq!(
            normalize("busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize("127.0.0.1:5000/team/app:1.2").unwrap(),
            "127.0.0.1:5000/team/app:1.2"
        );
        assert!(normalize("Bad Name").is_err());
        assert_eq!(registry_of("busybox").unwrap(), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/a:1").unwrap(), "127.0.0.1:5000");
    }

    #[test]
    fn a_pinned_name_is_the_repository_at_the_digest() {
        let d = Digest::of(b"manifest");
        assert_eq!(
            pinned("127.0.0.1:5000/web:1", &d).unwrap(),
            format!("127.0.0.1:5000/web@{d}")
        );
        assert_eq!(
            pinned("busybox", &d).unwrap(),
            format!("docker.io/library/busybox@{d}")
        );
        // Pinning a pinned name replaces its digest.
        let other = Digest::of(b"other");
        assert_eq!(
            pinned(&format!("127.0.0.1:5000/web:1@{other}"), &d).unwrap(),
            format!("127.0.0.1:5000/web@{d}")
        );
        assert!(pinned("Bad Name", &d).is_err());
    }

    #[test]
    fn digests_written_in_a_reference_are_found_and_checked() {
        let d = Digest::of(b"m");
        assert_eq!(digest_of("127.0.0.1:5000/web:1").unwrap(), None);
        assert_eq!(
            digest_of(&format!("127.0.0.1:5000/web@{d}")).unwrap(),
            Some(d.clone())
        );
        assert_eq!(digest_of(&format!("web:1@{d}")).unwrap(), Some(d));
        let sha512 = format!("web@sha512:{}", "ab".repeat(64));
        let err = digest_of(&sha512).unwrap_err().to_string();
        assert!(err.contains("only sha256"), "{err}");
    }
}
