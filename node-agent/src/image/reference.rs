//! Image references: parsed and normalized with oci-spec's `Reference`
//! (`busybox` → `docker.io/library/busybox:latest`).

use oci_client::Reference;

use super::error::{ImageError, Result};

/// Parses `name` as an image reference.
pub fn parse(name: &str) -> Result<Reference> {
    name.parse::<Reference>()
        .map_err(|e| ImageError::Reference {
            reference: name.to_string(),
            reason: e.to_string(),
        })
}

/// The canonical name the index stores an image under.
pub fn normalize(name: &str) -> Result<String> {
    Ok(parse(name)?.whole())
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
    }
}
