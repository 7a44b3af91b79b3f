//! `AgentImages`: this node's image store while the agent runs (`berth
//! images`, `pull`, `rmi`, `image prune`, through a controller). The running
//! agent's own `ImageStore` does the work, so it goes on beside the tasks.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_proto::v1::agent_images_server::AgentImages;
use berth_proto::v1::layer_progress::State as WireState;
use berth_proto::v1::{
    AgentImageList, AgentListImagesRequest, AgentPruneImagesRequest, AgentPullRequest,
    AgentRemoveImageRequest, ImageSummary, LayerList, LayerProgress, PruneImagesResult, PullUpdate,
    RemoveImageResult, pull_update,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::image::{
    Digest, Image, ImageError, ImageStore, LayerState, PruneScope, PullOptions, PullTracker,
    RegistryCredentials,
};

/// How often a pull's layer list goes out while it changes.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

pub(super) struct ImagesApi {
    pub(super) store: ImageStore,
    /// The agent's own pull settings (insecure registries).
    pub(super) pull: PullOptions,
    /// `berth pull` counts in the agent's pull figures like a task's pull.
    pub(super) metrics: crate::metrics::AgentMetrics,
}

type PullStream = ReceiverStream<Result<PullUpdate, Status>>;

#[tonic::async_trait]
impl AgentImages for ImagesApi {
    type PullStream = PullStream;

    async fn list(
        &self,
        _request: Request<AgentListImagesRequest>,
    ) -> Result<Response<AgentImageList>, Status> {
        let users = self.store.users().map_err(status)?;
        let images = self.store.list().map_err(status)?;
        Ok(Response::new(AgentImageList {
            images: images.iter().map(|i| summary(i, &users)).collect(),
        }))
    }

    async fn pull(
        &self,
        request: Request<AgentPullRequest>,
    ) -> Result<Response<PullStream>, Status> {
        let req = request.into_inner();
        // A bad name is refused before anything starts.
        berth_registry::reference::normalize(&req.image)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let opts = PullOptions {
            credentials: req
                .credentials
                .filter(|c| !c.docker_config.is_empty())
                .map(|c| {
                    RegistryCredentials::new("the credentials of berth pull", c.docker_config)
                }),
            progress: false,
            progress_to: Some(events_tx),
            ..self.pull.clone()
        };
        let (tx, rx) = mpsc::channel(16);
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        // The pull runs to its end even if the caller leaves: a pull stopped
        // halfway leaves only what the next prune takes.
        let mut pulling = tokio::spawn(async move {
            metrics
                .pull(&store, &req.image, &opts)
                .await
                .map(|i| (i, store))
        });
        tokio::spawn(async move {
            let mut tracker = PullTracker::default();
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            let mut changed = false;
            let outcome = loop {
                tokio::select! {
                    Some(event) = events.recv() => {
                        tracker.apply(event);
                        changed = true;
                    }
                    _ = tick.tick() => {
                        if changed {
                            changed = false;
                            let _ = tx.send(Ok(layers(&tracker))).await;
                        }
                    }
                    done = &mut pulling => break done,
                }
            };
            while let Ok(event) = events.try_recv() {
                tracker.apply(event);
            }
            let last = match outcome {
                Ok(Ok((image, store))) => {
                    let _ = tx.send(Ok(layers(&tracker))).await;
                    let users = store.users().unwrap_or_default();
                    Ok(PullUpdate {
                        update: Some(pull_update::Update::Done(summary(&image, &users))),
                    })
                }
                Ok(Err(e)) => Err(status(e)),
                Err(e) => Err(Status::internal(format!("the pull stopped: {e}"))),
            };
            let _ = tx.send(last).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn remove(
        &self,
        request: Request<AgentRemoveImageRequest>,
    ) -> Result<Response<RemoveImageResult>, Status> {
        let req = request.into_inner();
        let report = self
            .store
            .remove_image(&req.image, req.force)
            .await
            .map_err(status)?;
        Ok(Response::new(RemoveImageResult {
            untagged: report.untagged,
            deleted: report.deleted.iter().map(Digest::to_string).collect(),
            reclaimed_bytes: report.content.bytes,
        }))
    }

    async fn prune(
        &self,
        request: Request<AgentPruneImagesRequest>,
    ) -> Result<Response<PruneImagesResult>, Status> {
        let scope = if request.into_inner().all {
            PruneScope::Unused
        } else {
            PruneScope::Dangling
        };
        let report = self.store.prune_images(scope).await.map_err(status)?;
        Ok(Response::new(PruneImagesResult {
            untagged: report.untagged,
            deleted: report.deleted.iter().map(Digest::to_string).collect(),
            blobs: report.content.blobs.len() as u64,
            layers: report.content.snapshots.len() as u64,
            reclaimed_bytes: report.content.bytes,
        }))
    }
}

fn layers(tracker: &PullTracker) -> PullUpdate {
    let layers = tracker
        .layers
        .iter()
        .map(|row| LayerProgress {
            digest: row.digest.to_string(),
            done: row.done,
            total: row.total,
            state: match row.state {
                LayerState::Waiting => WireState::Waiting,
                LayerState::Downloading => WireState::Downloading,
                LayerState::Exists => WireState::Exists,
                LayerState::Unpacking => WireState::Unpacking,
                LayerState::Done => WireState::Done,
                LayerState::Failed => WireState::Failed,
            } as i32,
        })
        .collect();
    PullUpdate {
        update: Some(pull_update::Update::Layers(LayerList { layers })),
    }
}

/// One image as `berth images` shows it.
pub(super) fn summary(image: &Image, users: &BTreeMap<Digest, Vec<String>>) -> ImageSummary {
    let (repository, tag) = split_name(&image.name);
    ImageSummary {
        name: image.name.clone(),
        repository,
        tag,
        digest: image
            .index_digest
            .as_ref()
            .unwrap_or(&image.manifest_digest)
            .to_string(),
        id: image.config_digest.to_string(),
        created: i64::try_from(image.created).unwrap_or(i64::MAX),
        size: image.size(),
        used_by: users.get(&image.config_digest).cloned().unwrap_or_default(),
    }
}

/// "host/repo:tag" → ("host/repo", "tag"); "host/repo@sha256:…" → ("host/repo", "").
fn split_name(name: &str) -> (String, String) {
    if let Some((repo, _)) = name.split_once('@') {
        return (repo.to_string(), String::new());
    }
    // A ':' after the last '/' separates the tag (one before it is a port).
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(colon) => (
            name[..slash + colon].to_string(),
            name[slash + colon + 1..].to_string(),
        ),
        None => (name.to_string(), String::new()),
    }
}

/// An image error as the caller should see it: its message, with a code
/// that says whose the problem is.
fn status(e: ImageError) -> Status {
    let message = e.to_string();
    match e {
        ImageError::UnknownImage { .. } => Status::not_found(message),
        ImageError::InUse { .. } | ImageError::SeveralNames { .. } => {
            Status::failed_precondition(message)
        }
        ImageError::AmbiguousId { .. } | ImageError::Reference(_) | ImageError::Digest(_) => {
            Status::invalid_argument(message)
        }
        ImageError::Registry { .. }
        | ImageError::NoPlatform { .. }
        | ImageError::Auth(_)
        | ImageError::DigestMismatch { .. }
        | ImageError::BadManifest { .. }
        | ImageError::UnknownMediaType { .. } => Status::failed_precondition(message),
        _ => Status::internal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_repository_and_tag() {
        let cases = [
            ("127.0.0.1:5000/busybox:1", ("127.0.0.1:5000/busybox", "1")),
            (
                "docker.io/library/busybox:latest",
                ("docker.io/library/busybox", "latest"),
            ),
            ("127.0.0.1:5000/web@sha256:ab12", ("127.0.0.1:5000/web", "")),
            ("127.0.0.1:5000/web", ("127.0.0.1:5000/web", "")),
        ];
        for (name, (repo, tag)) in cases {
            assert_eq!(
                split_name(name),
                (repo.to_string(), tag.to_string()),
                "{name}"
            );
        }
    }
}
