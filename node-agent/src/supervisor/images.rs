//! The worker's second seam: the images it runs and the root filesystems it
//! makes from them. `StoreImages` is the agent's image store; tests use a
//! fake (`fake.rs`) that needs neither a registry nor overlay mounts.

use std::path::PathBuf;

use async_trait::async_trait;
use berth_proto::v1::ServiceSpec;

use crate::image::{Image, ImageConfig, ImageError, ImageStore, PullOptions, RegistryCredentials};

/// What a task with `spec` pulls and runs: its image pinned to the digest
/// the controller resolved the tag to (`repo@sha256:…`, which the pull
/// verifies), else the image as written (its tag is then resolved here, by
/// the pull).
pub fn pull_reference(spec: &ServiceSpec) -> Result<String, String> {
    if spec.image_digest.is_empty() {
        return Ok(spec.image.clone());
    }
    let pin = |e: String| format!("image {}@{}: {e}", spec.image, spec.image_digest);
    let digest =
        berth_registry::Digest::parse(&spec.image_digest).map_err(|e| pin(e.to_string()))?;
    berth_registry::pinned(&spec.image, &digest).map_err(|e| pin(e.to_string()))
}

#[async_trait]
pub trait TaskImages: Send + Sync + 'static {
    /// The image `name` (pulled unless stored, with `credentials` if given)
    /// and its config.
    async fn get(
        &self,
        name: &str,
        credentials: Option<RegistryCredentials>,
    ) -> Result<(Image, ImageConfig), ImageError>;

    /// Makes (or finds, after an agent restart) the container's root
    /// filesystem from `image`; returns its path.
    async fn prepare_rootfs(
        &self,
        image: &Image,
        container_id: &str,
    ) -> Result<PathBuf, ImageError>;

    /// Removes the container's root filesystem; fine if there is none.
    async fn release_rootfs(&self, container_id: &str) -> Result<(), ImageError>;
}

/// The agent's image store, pulling with `pull`'s options (and a task's own
/// credentials, which take precedence over the agent's file).
pub struct StoreImages {
    pub store: ImageStore,
    pub pull: PullOptions,
    /// Where pulls are counted.
    pub metrics: crate::metrics::AgentMetrics,
}

#[async_trait]
impl TaskImages for StoreImages {
    async fn get(
        &self,
        name: &str,
        credentials: Option<RegistryCredentials>,
    ) -> Result<(Image, ImageConfig), ImageError> {
        let image = match self.store.get(name) {
            Ok(image) => {
                // Already here: a use now, so garbage collection leaves it
                // until the rootfs mount holds it (a fresh pull is recent by
                // its name's time).
                self.store.note_use(&image)?;
                image
            }
            Err(ImageError::UnknownImage { .. }) => {
                // A task's own credentials take precedence over the agent's.
                let pull = PullOptions {
                    credentials: credentials.or_else(|| self.pull.credentials.clone()),
                    ..self.pull.clone()
                };
                self.metrics.pull(&self.store, name, &pull).await?
            }
            Err(e) => return Err(e),
        };
        let config = self.store.image_config(&image)?;
        Ok((image, config))
    }

    async fn prepare_rootfs(
        &self,
        image: &Image,
        container_id: &str,
    ) -> Result<PathBuf, ImageError> {
        Ok(self.store.prepare_rootfs(image, container_id).await?.path)
    }

    async fn release_rootfs(&self, container_id: &str) -> Result<(), ImageError> {
        self.store.release_rootfs(container_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_spec_pulls_the_repository_at_its_digest() {
        let digest = berth_registry::Digest::of(b"manifest");
        let mut spec = ServiceSpec {
            image: "127.0.0.1:5000/web:1".into(),
            ..Default::default()
        };
        assert_eq!(pull_reference(&spec).unwrap(), "127.0.0.1:5000/web:1");
        spec.image_digest = digest.to_string();
        assert_eq!(
            pull_reference(&spec).unwrap(),
            format!("127.0.0.1:5000/web@{digest}")
        );
        spec.image_digest = "sha256:nothex".into();
        let err = pull_reference(&spec).unwrap_err();
        assert!(
            err.starts_with("image 127.0.0.1:5000/web:1@sha256:nothex: invalid digest"),
            "{err}"
        );
    }
}
