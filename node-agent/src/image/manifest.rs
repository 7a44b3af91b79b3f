//! Manifests and indexes (OCI and Docker v2), media types, platform choice.

use oci_spec::image::{ImageIndex, ImageManifest};

use super::digest::Digest;
use super::error::{ImageError, Result};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Media types a manifest request accepts.
pub const ACCEPTED_MANIFESTS: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// A parsed manifest-like document.
#[derive(Debug)]
pub enum Document {
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
}

/// A layer descriptor from a manifest.
#[derive(Clone, Debug)]
pub struct LayerDesc {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// What an image manifest points at, checked.
#[derive(Clone, Debug)]
pub struct ManifestParts {
    pub config: Digest,
    pub config_size: u64,
    pub layers: Vec<LayerDesc>,
}

/// Parses an index or manifest; the media type comes from the document itself
/// (OCI allows it to be absent: then the shape decides).
pub fn parse_document(data: &[u8], what: &str) -> Result<Document> {
    let bad = |reason: String| ImageError::BadManifest {
        what: what.to_string(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| bad(format!("not JSON: {e}")))?;
    let media_type = value.get("mediaType").and_then(|m| m.as_str());
    let is_index = match media_type {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => {
            return Err(ImageError::UnknownMediaType {
                what: what.to_string(),
                media_type: other.to_string(),
            });
        }
        None if value.get("manifests").is_some() => true,
        None if value.get("layers").is_some() => false,
        None => return Err(bad("neither an image manifest nor an index".into())),
    };
    if value.get("schemaVersion").and_then(|v| v.as_u64()) != Some(2) {
        return Err(bad(
            "schemaVersion is not 2 (Docker schema 1 is not supported)".into(),
        ));
    }
    if is_index {
        serde_json::from_value(value)
            .map(|i| Document::Index(Box::new(i)))
            .map_err(|e| bad(format!("image index: {e}")))
    } else {
        serde_json::from_value(value)
            .map(|m| Document::Manifest(Box::new(m)))
            .map_err(|e| bad(format!("image manifest: {e}")))
    }
}

/// This host's platform as OCI names it (`linux/amd64`).
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

/// Picks the manifest for `(os, arch)` from an index.
pub fn choose_platform(
    index: &ImageIndex,
    reference: &str,
    want: (&str, &str),
) -> Result<(Digest, u64)> {
    let mut available = Vec::new();
    for m in index.manifests() {
        let Some(p) = m.platform() else {
            available.push("unknown".to_string());
            continue;
        };
        let (os, arch) = (p.os().to_string(), p.architecture().to_string());
        if os == want.0 && arch == want.1 {
            let digest = Digest::parse(m.digest().as_ref())?;
            return Ok((digest, m.size()));
        }
        available.push(format!("{os}/{arch}"));
    }
    Err(ImageError::NoPlatform {
        reference: reference.to_string(),
        wanted: format!("{}/{}", want.0, want.1),
        available: if available.is_empty() {
            "nothing".into()
        } else {
            available.join(", ")
        },
    })
}

/// Checks a manifest's config and layer media types and digests.
pub fn manifest_parts(m: &ImageManifest, what: &str) -> Result<ManifestParts> {
    let config_type = m.config().media_type().to_string();
    if config_type != OCI_CONFIG && config_type != DOCKER_CONFIG {
        return Err(ImageError::UnknownMediaType {
            what: format!("config of {what}"),
            media_type: config_type,
        });
    }
    let mut layers = Vec::with_capacity(m.layers().len());
    for l in m.layers() {
        let media_type = l.media_type().to_string();
        if !LAYER_TYPES.contains(&media_type.as_str()) {
            return Err(ImageError::UnknownMediaType {
                what: format!("layer {} of {what}", l.digest()),
                media_type,
            });
        }
        layers.push(LayerDesc {
            digest: Digest::parse(l.digest().as_ref())?,
            media_type,
            size: l.size(),
        });
    }
    Ok(ManifestParts {
        config: Digest::parse(m.config().digest().as_ref())?,
        config_size: m.config().size(),
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> String {
        Digest::of(s.as_bytes()).to_string()
    }

    #[test]
    fn picks_the_host_platform_or_says_what_there_is() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[
            {{"mediaType":"{DOCKER_MANIFEST}","digest":"{}","size":10,"platform":{{"os":"linux","architecture":"arm64"}}}},
            {{"mediaType":"{DOCKER_MANIFEST}","digest":"{}","size":11,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            d("arm"),
            d("amd")
        );
        let Document::Index(index) = parse_document(json.as_bytes(), "x").unwrap() else {
            panic!("not an index")
        };
        let (got, size) = choose_platform(&index, "x", ("linux", "amd64")).unwrap();
        assert_eq!((got.to_string(), size), (d("amd"), 11));
        let err = choose_platform(&index, "r:1", ("linux", "s390x")).unwrap_err();
        assert!(
            err.to_string().contains("linux/arm64, linux/amd64"),
            "{err}"
        );
    }

    #[test]
    fn unknown_media_types_are_refused() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
            "config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":1}},
            "layers":[{{"mediaType":"application/vnd.example.weird","digest":"{}","size":2}}]}}"#,
            d("c"),
            d("l")
        );
        let Document::Manifest(m) = parse_document(json.as_bytes(), "x").unwrap() else {
            panic!("not a manifest")
        };
        let err = manifest_parts(&m, "img").unwrap_err();
        assert!(
            err.to_string().contains("application/vnd.example.weird"),
            "{err}"
        );
        let err =
            parse_document(br#"{"schemaVersion":2,"mediaType":"text/html"}"#, "y").unwrap_err();
        assert!(err.to_string().contains("unknown media type"), "{err}");
    }
}
