//! Pull from an OCI distribution registry with oci-client: resolve the host's
//! platform, fetch only the blobs the store lacks (layers in parallel), unpack
//! each layer as soon as it is there.

use std::io::IsTerminal;
use std::path::PathBuf;

use berth_registry::client::{ClientSettings, client, describe};
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tracing::{debug, info};

use super::ImageStore;
use super::auth;
use super::config::ImageConfig;
use super::digest::Digest;
use super::error::{ImageError, Result, blocking};
use super::index::{Image, Layer};
use super::manifest::{self, ACCEPTED_MANIFESTS, Document, ManifestParts};
use super::progress::{LayerReport, LayerState, PullEvent, PullProgress};
use super::reference;
use super::store::{Expected, MAX_METADATA_BLOB};

/// How to pull.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Registries (`HOST:PORT`) reached over plain HTTP; all others over HTTPS.
    pub insecure_registries: Vec<String>,
    /// A Docker `config.json`-style credentials file.
    pub credentials_file: Option<PathBuf>,
    /// Credentials in memory (a service's registry-auth secret); they take
    /// precedence over `credentials_file`.
    pub credentials: Option<auth::RegistryCredentials>,
    /// Show a progress display (only when stderr is a terminal).
    pub progress: bool,
    /// Layers downloaded at once.
    pub max_concurrent_downloads: usize,
    /// `(os, architecture)`; the host's when `None`.
    pub platform: Option<(String, String)>,
    /// Where to send progress events (the agent API's `Pull` stream).
    pub progress_to: Option<PullProgress>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            insecure_registries: Vec::new(),
            credentials_file: None,
            credentials: None,
            progress: false,
            max_concurrent_downloads: 3,
            platform: None,
            progress_to: None,
        }
    }
}

/// The manifest a reference resolved to.
struct Resolved {
    data: Vec<u8>,
    digest: Digest,
    index_digest: Option<Digest>,
    manifest: Box<oci_spec::image::ImageManifest>,
}

impl Resolved {
    fn new(
        data: Vec<u8>,
        digest: Digest,
        index_digest: Option<Digest>,
        name: &str,
    ) -> Result<Resolved> {
        match manifest::parse_document(&data, name)? {
            Document::Manifest(manifest) => Ok(Resolved {
                data,
                digest,
                index_digest,
                manifest,
            }),
            Document::Index(_) => Err(ImageError::BadManifest {
                what: name.to_string(),
                reason: "an image index points to another index".into(),
            }),
        }
    }
}

struct Session {
    client: Client,
    reference: Reference,
    name: String,
    auth: RegistryAuth,
}

impl Session {
    /// A client for the reference's registry, authenticated for pulling (a
    /// bearer token if the registry asks for one, anonymously or with the
    /// user of the credentials in memory or in the file).
    async fn open(reference: Reference, opts: &PullOptions) -> Result<Session> {
        let name = reference.whole();
        let settings = ClientSettings {
            insecure_registries: opts.insecure_registries.clone(),
            max_concurrent_download: opts.max_concurrent_downloads,
            ..ClientSettings::default()
        };
        let client = client(&settings).map_err(|e| ImageError::Registry {
            reference: name.clone(),
            what: "creating the HTTP client".into(),
            reason: describe(&e),
        })?;
        let auth = auth::credentials(
            opts.credentials.as_ref(),
            opts.credentials_file.as_deref(),
            reference.registry(),
        )?;
        let s = Session {
            client,
            reference,
            name,
            auth,
        };
        s.client
            .auth(&s.reference, &s.auth, RegistryOperation::Pull)
            .await
            .map_err(s.err("authenticating"))?;
        Ok(s)
    }

    fn err(&self, what: impl Into<String>) -> impl FnOnce(OciDistributionError) -> ImageError + '_ {
        let what = what.into();
        move |e| ImageError::Registry {
            reference: self.name.clone(),
            what,
            reason: describe(&e),
        }
    }

    async fn manifest(&self, reference: &Reference, what: &str) -> Result<(Vec<u8>, Digest)> {
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(reference, &self.auth, ACCEPTED_MANIFESTS)
            .await
            .map_err(self.err(format!("fetching the {what}")))?;
        let actual = Digest::of(&bytes);
        let claimed = Digest::parse(&digest)?;
        if actual != claimed {
            return Err(ImageError::DigestMismatch {
                what: format!("{what} of {}", self.name),
                expected: claimed,
                actual,
            });
        }
        Ok((bytes.to_vec(), actual))
    }
}

impl ImageStore {
    /// Pulls `name` from its registry, stores and unpacks it, and names it.
    pub async fn pull(&self, name: &str, opts: &PullOptions) -> Result<Image> {
        let _gc = self.gc.read().await;
        let parsed = reference::parse(name)?;
        let name = parsed.whole();
        let s = Session::open(parsed, opts).await?;

        let want = match &opts.platform {
            Some((os, arch)) => (os.as_str(), arch.as_str()),
            None => manifest::host_platform(),
        };
        let resolved = self.resolve(&s, want).await?;
        let parts = manifest::manifest_parts(&resolved.manifest, &name)?;
        let config = self.fetch_config(&s, &parts, want).await?;
        let layers = super::layers_of(&parts, &config, &name)?;
        self.fetch_and_unpack(&s, &layers, opts).await?;
        self.inherit_parent_dirs(&layers).await?;

        // Only now is the manifest stored and the name set: a failed pull names nothing.
        self.store_small(
            resolved.data,
            Expected {
                digest: resolved.digest.clone(),
                size: None,
                what: format!("manifest of {name}"),
            },
        )
        .await?;
        let image = Image {
            name,
            index_digest: resolved.index_digest,
            manifest_digest: resolved.digest,
            config_digest: parts.config.clone(),
            layers,
            created: super::now(),
        };
        self.index.put_image(&image)?;
        info!(image = %image.name, manifest = %image.manifest_digest, layers = image.layers.len(), "image pulled");
        // The disk filled: garbage collection looks now, not at its next round.
        self.grew.notify_one();
        Ok(image)
    }

    /// Fetches the manifest for the reference, through an image index if it is
    /// one (the index is stored; the manifest only once the pull succeeded).
    async fn resolve(&self, s: &Session, want: (&str, &str)) -> Result<Resolved> {
        let (data, digest) = s.manifest(&s.reference, "manifest").await?;
        // A pinned reference (a task's `repo@digest`) gets exactly what it
        // names, whatever the registry says (oci-client checks it as well).
        if let Some(pinned) = s.reference.digest() {
            let expected = Digest::parse(pinned)?;
            if digest != expected {
                return Err(ImageError::DigestMismatch {
                    what: format!("manifest of {}", s.name),
                    expected,
                    actual: digest,
                });
            }
        }
        let Document::Index(index) = manifest::parse_document(&data, &s.name)? else {
            return Resolved::new(data, digest, None, &s.name);
        };
        let (child, _) = manifest::choose_platform(&index, &s.name, want)?;
        let what = format!("image index of {}", s.name);
        self.store_small(
            data,
            Expected {
                digest: digest.clone(),
                size: None,
                what,
            },
        )
        .await?;
        let by_digest = s.reference.clone_with_digest(child.to_string());
        let (data, actual) = s.manifest(&by_digest, "platform manifest").await?;
        if actual != child {
            return Err(ImageError::DigestMismatch {
                what: format!("platform manifest of {}", s.name),
                expected: child,
                actual,
            });
        }
        Resolved::new(data, actual, Some(digest), &s.name)
    }

    /// Fetches (unless stored) and parses the image config; checks its platform.
    async fn fetch_config(
        &self,
        s: &Session,
        parts: &ManifestParts,
        want: (&str, &str),
    ) -> Result<ImageConfig> {
        let what = format!("config of {}", s.name);
        if !self.content.contains(&parts.config) {
            if parts.config_size > MAX_METADATA_BLOB {
                return Err(ImageError::BadManifest {
                    what,
                    reason: format!("{} bytes is too large", parts.config_size),
                });
            }
            let mut buf = Vec::new();
            let desc = descriptor(&parts.config, parts.config_size, manifest::OCI_CONFIG);
            s.client
                .pull_blob(&s.reference, &desc, &mut buf)
                .await
                .map_err(s.err(format!("fetching config {}", parts.config)))?;
            let expected = Expected {
                digest: parts.config.clone(),
                size: Some(parts.config_size),
                what: what.clone(),
            };
            self.store_small(buf, expected).await?;
        }
        let config = ImageConfig::parse(&self.content.read(&parts.config)?, &what)?;
        if (!config.os.is_empty() && config.os != want.0)
            || (!config.architecture.is_empty() && config.architecture != want.1)
        {
            return Err(ImageError::NoPlatform {
                reference: s.name.clone(),
                wanted: format!("{}/{}", want.0, want.1),
                available: format!("{}/{}", config.os, config.architecture),
            });
        }
        Ok(config)
    }

    /// Stores a small verified blob (manifest, index, config) off the async threads.
    async fn store_small(&self, data: Vec<u8>, expected: Expected) -> Result<()> {
        let content = self.content.clone();
        blocking(format!("storing {}", expected.what), move || {
            content.write_all(&data, &expected)
        })
        .await
    }

    async fn fetch_and_unpack(
        &self,
        s: &Session,
        layers: &[Layer],
        opts: &PullOptions,
    ) -> Result<()> {
        let bars =
            MultiProgress::with_draw_target(if opts.progress && std::io::stderr().is_terminal() {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            });
        let style = ProgressStyle::with_template("{prefix} {bar:30} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        if let Some(sink) = &opts.progress_to {
            let list = layers.iter().map(|l| (l.digest.clone(), l.size)).collect();
            let _ = sink.send(PullEvent::Layers(list));
        }
        let jobs = layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                let parent = i.checked_sub(1).map(|p| layers[p].chain_id.clone());
                let bar = bars.add(ProgressBar::new(layer.size));
                bar.set_style(style.clone());
                bar.set_prefix(layer.digest.short().to_string());
                let report = LayerReport::new(bar, opts.progress_to.clone(), i);
                async move {
                    let busy = self.busy.lock(&layer.digest).await;
                    if self.content.contains(&layer.digest) {
                        debug!(layer = %layer.digest, "layer already in the store");
                        report.state(LayerState::Exists);
                    } else {
                        let downloaded = self.download(s, layer, &report).await;
                        if downloaded.is_err() {
                            report.state(LayerState::Failed);
                        }
                        downloaded?;
                        report.state(LayerState::Unpacking);
                    }
                    drop(busy);
                    let unpacked = self.unpack_once(layer, parent).await;
                    report.state(if unpacked.is_ok() {
                        LayerState::Done
                    } else {
                        LayerState::Failed
                    });
                    unpacked
                }
            })
            .collect();
        super::run_all(jobs, opts.max_concurrent_downloads).await
    }

    /// Streams one blob into the content store, verified on a blocking thread.
    async fn download(&self, s: &Session, layer: &Layer, report: &LayerReport) -> Result<()> {
        let desc = descriptor(&layer.digest, layer.size, &layer.media_type);
        let mut stream = s
            .client
            .pull_blob_stream(&s.reference, &desc)
            .await
            .map_err(s.err(format!("fetching layer {}", layer.digest)))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(32);
        let content = self.content.clone();
        let expected = Expected {
            digest: layer.digest.clone(),
            size: Some(layer.size),
            what: format!("layer of {}", s.name),
        };
        let writer = tokio::task::spawn_blocking(move || -> Result<()> {
            let mut w = content.writer()?;
            while let Some(chunk) = rx.blocking_recv() {
                w.write(&chunk)?;
                if w.written() > expected.size.unwrap_or(u64::MAX) {
                    return Err(ImageError::SizeMismatch {
                        what: expected.what.clone(),
                        digest: expected.digest.clone(),
                        expected: expected.size.unwrap_or_default(),
                        actual: w.written(),
                    });
                }
            }
            w.commit(&content, Some(&expected)).map(drop)
        });
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    report.inc(bytes.len() as u64);
                    if tx.send(bytes.into()).await.is_err() {
                        break; // the writer failed: its error is the one to report
                    }
                }
                Err(e) => {
                    failure = Some(ImageError::Registry {
                        reference: s.name.clone(),
                        what: format!("downloading layer {}", layer.digest),
                        reason: e.to_string(),
                    });
                    break;
                }
            }
        }
        drop(tx);
        if let Some(e) = failure {
            // The writer sees a short blob and drops its temporary file.
            let _ = writer.await;
            return Err(e);
        }
        match writer.await {
            Ok(r) => r,
            Err(e) => Err(ImageError::Task {
                what: format!("writing layer {}", layer.digest),
                reason: e.to_string(),
            }),
        }
    }
}

fn descriptor(digest: &Digest, size: u64, media_type: &str) -> OciDescriptor {
    OciDescriptor {
        media_type: media_type.to_string(),
        digest: digest.to_string(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        ..Default::default()
    }
}
