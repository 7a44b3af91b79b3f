//! Import of an OCI image layout (a directory or a tar of one) and of a
//! `docker save` archive. Every blob is verified against its digest on the way
//! into the content store; then the layers are unpacked as for a pull.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use oci_spec::image::ImageIndex;
use serde::Deserialize;
use tracing::info;

use super::ImageStore;
use super::config::ImageConfig;
use super::digest::Digest;
use super::error::{ImageError, Result, blocking};
use super::index::Image;
use super::manifest::{self, Document, OCI_CONFIG, OCI_MANIFEST};
use super::reference;
use super::store::{ContentStore, Expected, MAX_METADATA_BLOB};

/// How to name imported images.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// The name to give the image (only for an archive holding one image).
    pub name: Option<String>,
}

const NAME_ANNOTATION: &str = "io.containerd.image.name";
const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// A manifest found in an archive, with the name to give it.
struct Found {
    name: String,
    index_digest: Option<Digest>,
    manifest_digest: Digest,
}

impl ImageStore {
    /// Imports an OCI layout directory, an OCI layout tar or a `docker save` tar.
    pub async fn import(&self, path: &Path, opts: &ImportOptions) -> Result<Vec<Image>> {
        let _gc = self.gc.read().await;
        let content = self.content.clone();
        let (p, o) = (path.to_path_buf(), opts.clone());
        let found = blocking(format!("import of {}", path.display()), move || {
            if p.is_dir() {
                import_layout_dir(&content, &p, &o)
            } else {
                import_tar(&content, &p, &o)
            }
        })
        .await?;
        let mut images = Vec::new();
        for f in found {
            images.push(self.install(f, path).await?);
        }
        Ok(images)
    }

    /// Unpacks and names a manifest whose blobs are all in the store.
    async fn install(&self, f: Found, source: &Path) -> Result<Image> {
        let what = format!("{} (from {})", f.name, source.display());
        let data = self.content.read(&f.manifest_digest)?;
        let Document::Manifest(m) = manifest::parse_document(&data, &what)? else {
            return Err(import_err(source, "an image index points to another index"));
        };
        let parts = manifest::manifest_parts(&m, &what)?;
        let config = ImageConfig::parse(&self.content.read(&parts.config)?, &what)?;
        let layers = super::layers_of(&parts, &config, &what)?;
        for l in &layers {
            if !self.content.contains(&l.digest) {
                return Err(import_err(source, format!("layer {} is missing", l.digest)));
            }
        }
        self.ensure_snapshots(&layers).await?;
        let image = Image {
            name: f.name,
            index_digest: f.index_digest,
            manifest_digest: f.manifest_digest,
            config_digest: parts.config,
            layers,
            created: super::now(),
        };
        self.index.put_image(&image)?;
        info!(image = %image.name, source = %source.display(), "image imported");
        Ok(image)
    }
}

fn import_err(path: &Path, reason: impl Into<String>) -> ImageError {
    ImageError::Import {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// `./a/b` and `a/b` are the same archive member.
fn member_name(path: &Path) -> String {
    let s = path.to_string_lossy();
    s.trim_start_matches("./").to_string()
}

fn import_layout_dir(store: &ContentStore, dir: &Path, opts: &ImportOptions) -> Result<Vec<Found>> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read(&p).map_err(|e| ImageError::io("read", p, e))
    };
    check_layout_marker(&read("oci-layout")?, dir)?;
    let index = read("index.json")?;
    // Blobs are copied (verified) when a manifest needs them.
    let copy = |digest: &Digest, what: &str| -> Result<()> {
        if store.contains(digest) {
            return Ok(());
        }
        let p = dir.join("blobs/sha256").join(digest.hex());
        let mut f = File::open(&p).map_err(|e| ImageError::io("open", &p, e))?;
        store.copy_from(
            &mut f,
            &Expected {
                digest: digest.clone(),
                size: None,
                what: format!("{what} in {}", dir.display()),
            },
        )
    };
    resolve_layout(store, &index, dir, opts, &copy)
}

fn check_layout_marker(data: &[u8], path: &Path) -> Result<()> {
    #[derive(Deserialize)]
    struct Marker {
        #[serde(rename = "imageLayoutVersion")]
        version: String,
    }
    let m: Marker =
        serde_json::from_slice(data).map_err(|e| import_err(path, format!("oci-layout: {e}")))?;
    if m.version != "1.0.0" {
        return Err(import_err(
            path,
            format!("unsupported OCI layout version {}", m.version),
        ));
    }
    Ok(())
}

/// Walks index.json: the images it names, with their blobs brought in by `copy`.
fn resolve_layout(
    store: &ContentStore,
    index_json: &[u8],
    path: &Path,
    opts: &ImportOptions,
    copy: &dyn Fn(&Digest, &str) -> Result<()>,
) -> Result<Vec<Found>> {
    let index: ImageIndex = serde_json::from_slice(index_json)
        .map_err(|e| import_err(path, format!("index.json: {e}")))?;
    let entries = index.manifests();
    if entries.is_empty() {
        return Err(import_err(path, "index.json lists no image"));
    }
    if opts.name.is_some() && entries.len() > 1 {
        return Err(import_err(
            path,
            format!(
                "the layout holds {} images: a name fits only one",
                entries.len()
            ),
        ));
    }
    let mut found = Vec::new();
    for e in entries {
        let digest = Digest::parse(e.digest().as_ref())?;
        let annotations = e.annotations().clone().unwrap_or_default();
        let name = match (
            &opts.name,
            annotations.get(NAME_ANNOTATION),
            annotations.get(REF_ANNOTATION),
        ) {
            (Some(n), _, _) => reference::normalize(n)?,
            (None, Some(n), _) => reference::normalize(n)?,
            (None, None, Some(r)) => name_from_ref(r, path)?,
            (None, None, None) => {
                return Err(import_err(
                    path,
                    format!("manifest {digest} has no name: give one"),
                ));
            }
        };
        copy(&digest, "manifest")?;
        let (index_digest, manifest_digest) =
            match manifest::parse_document(&store.read(&digest)?, &name)? {
                Document::Index(idx) => {
                    let (child, _) =
                        manifest::choose_platform(&idx, &name, manifest::host_platform())?;
                    copy(&child, "manifest")?;
                    (Some(digest), child)
                }
                Document::Manifest(_) => (None, digest),
            };
        let Document::Manifest(m) =
            manifest::parse_document(&store.read(&manifest_digest)?, &name)?
        else {
            return Err(import_err(path, "an image index points to another index"));
        };
        let parts = manifest::manifest_parts(&m, &name)?;
        copy(&parts.config, "config")?;
        for l in &parts.layers {
            copy(&l.digest, "layer")?;
        }
        found.push(Found {
            name,
            index_digest,
            manifest_digest,
        });
    }
    Ok(found)
}

/// `org.opencontainers.image.ref.name` is often only a tag (`base`, `1.0`): then
/// the image is `localhost/<archive name>:<tag>`.
fn name_from_ref(r: &str, path: &Path) -> Result<String> {
    if r.contains('/') {
        return Ok(reference::normalize(r)?);
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let repo: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let repo = repo.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let repo = if repo.is_empty() { "image" } else { repo };
    Ok(reference::normalize(&format!("localhost/{repo}:{r}"))?)
}

fn open_tar(path: &Path) -> Result<tar::Archive<BufReader<File>>> {
    let f = File::open(path).map_err(|e| ImageError::io("open", path, e))?;
    Ok(tar::Archive::new(BufReader::with_capacity(256 << 10, f)))
}

/// Reads the small JSON members named in `wanted` from a tar.
fn read_members(path: &Path, wanted: &[&str]) -> Result<HashMap<String, Vec<u8>>> {
    let mut out = HashMap::new();
    let mut archive = open_tar(path)?;
    let tar_err = |e: std::io::Error| import_err(path, format!("reading the tar: {e}"));
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let name = member_name(&entry.path().map_err(tar_err)?);
        if wanted.contains(&name.as_str()) {
            let mut data = Vec::new();
            (&mut entry)
                .take(MAX_METADATA_BLOB + 1)
                .read_to_end(&mut data)
                .map_err(tar_err)?;
            if data.len() as u64 > MAX_METADATA_BLOB {
                return Err(import_err(path, format!("{name} is too large")));
            }
            out.insert(name, data);
        }
    }
    Ok(out)
}

fn import_tar(store: &ContentStore, path: &Path, opts: &ImportOptions) -> Result<Vec<Found>> {
    let meta = read_members(path, &["oci-layout", "index.json", "manifest.json"])?;
    if let (Some(marker), Some(index)) = (meta.get("oci-layout"), meta.get("index.json")) {
        check_layout_marker(marker, path)?;
        // Every blob of the layout goes into the store, verified by its name.
        copy_tar_members(store, path, |name| {
            name.strip_prefix("blobs/sha256/")
                .and_then(|h| Digest::parse(&format!("sha256:{h}")).ok())
                .map(Some)
        })?;
        let missing = |d: &Digest, what: &str| {
            if store.contains(d) {
                Ok(())
            } else {
                Err(import_err(
                    path,
                    format!("{what} {d} is not in the archive"),
                ))
            }
        };
        return resolve_layout(store, index, path, opts, &missing);
    }
    let Some(manifest) = meta.get("manifest.json") else {
        return Err(import_err(
            path,
            "neither an OCI layout nor a docker save archive",
        ));
    };
    import_docker_archive(store, path, manifest, opts)
}

/// Copies the tar members `pick` selects: `Some(Some(d))` verified as `d`,
/// `Some(None)` hashed as they come. Returns member name → digest.
fn copy_tar_members(
    store: &ContentStore,
    path: &Path,
    pick: impl Fn(&str) -> Option<Option<Digest>>,
) -> Result<HashMap<String, Digest>> {
    let mut out = HashMap::new();
    let mut archive = open_tar(path)?;
    let tar_err = |e: std::io::Error| import_err(path, format!("reading the tar: {e}"));
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = member_name(&entry.path().map_err(tar_err)?);
        let Some(expected) = pick(&name) else {
            continue;
        };
        let digest = match expected {
            Some(d) => {
                if !store.contains(&d) {
                    store.copy_from(
                        &mut entry,
                        &Expected {
                            digest: d.clone(),
                            size: None,
                            what: format!("{name} in {}", path.display()),
                        },
                    )?;
                }
                d
            }
            None => {
                let mut w = store.writer()?;
                let mut buf = vec![0u8; 256 << 10];
                loop {
                    let n = entry.read(&mut buf).map_err(tar_err)?;
                    if n == 0 {
                        break;
                    }
                    w.write(&buf[..n])?;
                }
                w.commit(store, None)?
            }
        };
        out.insert(name, digest);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn import_docker_archive(
    store: &ContentStore,
    path: &Path,
    manifest_json: &[u8],
    opts: &ImportOptions,
) -> Result<Vec<Found>> {
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(manifest_json)
        .map_err(|e| import_err(path, format!("manifest.json: {e}")))?;
    if entries.is_empty() {
        return Err(import_err(path, "manifest.json lists no image"));
    }
    if opts.name.is_some() && entries.len() > 1 {
        return Err(import_err(
            path,
            format!(
                "the archive holds {} images: a name fits only one",
                entries.len()
            ),
        ));
    }
    let wanted: HashSet<String> = entries
        .iter()
        .flat_map(|e| std::iter::once(&e.config).chain(&e.layers))
        .map(|m| member_name(Path::new(m)))
        .collect();
    let stored = copy_tar_members(store, path, |name| wanted.contains(name).then_some(None))?;
    let mut found = Vec::new();
    for e in entries {
        let get = |member: &str| {
            stored
                .get(&member_name(Path::new(member)))
                .cloned()
                .ok_or_else(|| import_err(path, format!("{member} is not in the archive")))
        };
        let config = get(&e.config)?;
        let config_size = store.size(&config).unwrap_or_default();
        let mut layers = Vec::new();
        for l in &e.layers {
            let digest = get(l)?;
            let mut magic = [0u8; 4];
            let n = store.open_blob(&digest)?.read(&mut magic).unwrap_or(0);
            let media_type = match &magic[..n] {
                [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
                [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
                _ => manifest::OCI_LAYER_TAR,
            };
            layers.push(serde_json::json!({
                "mediaType": media_type,
                "digest": digest.to_string(),
                "size": store.size(&digest).unwrap_or_default(),
            }));
        }
        // The archive has no manifest of its own: write the OCI one it implies.
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.to_string(), "size": config_size},
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest).map_err(|e| import_err(path, e.to_string()))?;
        let manifest_digest = Digest::of(&bytes);
        store.write_all(
            &bytes,
            &Expected {
                digest: manifest_digest.clone(),
                size: None,
                what: format!("manifest made for {}", path.display()),
            },
        )?;
        let names: Vec<String> = match (&opts.name, &e.repo_tags) {
            (Some(n), _) => vec![reference::normalize(n)?],
            (None, Some(tags)) if !tags.is_empty() => tags
                .iter()
                .map(|t| reference::normalize(t).map_err(ImageError::from))
                .collect::<Result<_>>()?,
            _ => {
                return Err(import_err(
                    path,
                    format!("image {config} has no tag: give a name"),
                ));
            }
        };
        for name in names {
            found.push(Found {
                name,
                index_digest: None,
                manifest_digest: manifest_digest.clone(),
            });
        }
    }
    Ok(found)
}
