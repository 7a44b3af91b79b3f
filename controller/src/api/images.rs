//! The `Images` service (`berth images`, `pull`, `rmi`, `image prune`): each
//! call goes to the agents of the chosen ready nodes at once
//! (`crate::agents`), and each node's answer or failure comes back on its own.

use std::time::Duration;

use berth_pki::Security;
use berth_proto::v1::agent_images_client::AgentImagesClient;
use berth_proto::v1::images_server::Images;
use berth_proto::v1::{
    AgentListImagesRequest, ListImagesRequest, ListImagesResponse, NodeImages, NodePruneResult,
    NodePullUpdate, NodeRemoveResult, PruneImagesRequest, PruneImagesResponse, PullImageRequest,
    RemoveImageRequest, RemoveImageResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use crate::agents::{self, ByDefault, SelectError, Target};
use crate::raft::RaftHandle;

/// How long a listing may take a node.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a removal or a prune may take a node (it deletes files).
const REMOVE_TIMEOUT: Duration = Duration::from_secs(300);

pub struct ImagesApi {
    raft: RaftHandle,
    security: Security,
}

impl ImagesApi {
    pub fn new(raft: RaftHandle, security: Security) -> ImagesApi {
        ImagesApi { raft, security }
    }

    fn targets(
        &self,
        selector: Option<&berth_proto::v1::NodeSelector>,
        by_default: ByDefault,
    ) -> Result<agents::Selected, Status> {
        agents::select(self.raft.state(), selector, by_default).map_err(|e| match e {
            SelectError::Lookup(e) => e.into(),
            other => Status::failed_precondition(other.to_string()),
        })
    }
}

fn with_timeout<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

fn client(channel: tonic::transport::Channel) -> AgentImagesClient<tonic::transport::Channel> {
    AgentImagesClient::new(channel).max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES)
}

type PullStream = ReceiverStream<Result<NodePullUpdate, Status>>;

#[tonic::async_trait]
impl Images for ImagesApi {
    type PullStream = PullStream;

    async fn list(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let req = request.into_inner();
        let selected = self.targets(req.nodes.as_ref(), ByDefault::AllNodes)?;
        let answers = agents::each(&self.security, &selected.targets, |channel| async move {
            client(channel)
                .list(with_timeout(AgentListImagesRequest {}, LIST_TIMEOUT))
                .await
                .map(Response::into_inner)
        })
        .await;
        let mut nodes: Vec<NodeImages> = answers
            .into_iter()
            .map(|(node, answer)| match answer {
                Ok(list) => NodeImages {
                    node: Some(node),
                    images: list.images,
                    error: String::new(),
                },
                Err(error) => NodeImages {
                    node: Some(node),
                    images: Vec::new(),
                    error,
                },
            })
            .collect();
        nodes.extend(
            selected
                .skipped
                .into_iter()
                .map(|(node, error)| NodeImages {
                    node: Some(node),
                    images: Vec::new(),
                    error,
                }),
        );
        Ok(Response::new(ListImagesResponse { nodes }))
    }

    async fn pull(
        &self,
        request: Request<PullImageRequest>,
    ) -> Result<Response<PullStream>, Status> {
        let req = request.into_inner();
        let pull = req
            .pull
            .filter(|p| !p.image.is_empty())
            .ok_or_else(|| Status::invalid_argument("no image to pull"))?;
        berth_registry::reference::normalize(&pull.image)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let selected = self.targets(req.nodes.as_ref(), ByDefault::OnlyNode)?;
        let (tx, rx) = mpsc::channel(64);
        for target in selected.targets {
            let (tx, pull, security) = (tx.clone(), pull.clone(), self.security.clone());
            tokio::spawn(async move { pull_on(security, target, pull, tx).await });
        }
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn remove(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        let req = request.into_inner();
        let remove = req
            .remove
            .filter(|r| !r.image.is_empty())
            .ok_or_else(|| Status::invalid_argument("no image to remove"))?;
        let selected = self.targets(req.nodes.as_ref(), ByDefault::OnlyNode)?;
        let answers = agents::each(&self.security, &selected.targets, |channel| {
            let remove = remove.clone();
            async move {
                match client(channel)
                    .remove(with_timeout(remove, REMOVE_TIMEOUT))
                    .await
                {
                    Ok(r) => Ok(Some(r.into_inner())),
                    Err(s) if s.code() == Code::NotFound => Ok(None),
                    Err(s) => Err(s),
                }
            }
        })
        .await;
        let nodes = answers
            .into_iter()
            .map(|(node, answer)| match answer {
                Ok(Some(result)) => NodeRemoveResult {
                    node: Some(node),
                    result: Some(result),
                    ..Default::default()
                },
                Ok(None) => NodeRemoveResult {
                    node: Some(node),
                    not_found: true,
                    ..Default::default()
                },
                Err(error) => NodeRemoveResult {
                    node: Some(node),
                    error,
                    ..Default::default()
                },
            })
            .collect();
        Ok(Response::new(RemoveImageResponse { nodes }))
    }

    async fn prune(
        &self,
        request: Request<PruneImagesRequest>,
    ) -> Result<Response<PruneImagesResponse>, Status> {
        let req = request.into_inner();
        let prune = req.prune.unwrap_or_default();
        let selected = self.targets(req.nodes.as_ref(), ByDefault::OnlyNode)?;
        let answers = agents::each(&self.security, &selected.targets, |channel| async move {
            client(channel)
                .prune(with_timeout(prune, REMOVE_TIMEOUT))
                .await
                .map(Response::into_inner)
        })
        .await;
        let nodes = answers
            .into_iter()
            .map(|(node, answer)| match answer {
                Ok(result) => NodePruneResult {
                    node: Some(node),
                    result: Some(result),
                    error: String::new(),
                },
                Err(error) => NodePruneResult {
                    node: Some(node),
                    result: None,
                    error,
                },
            })
            .collect();
        Ok(Response::new(PruneImagesResponse { nodes }))
    }
}

/// One node's pull: a first update naming the node, the agent's updates as
/// they come, and its failure as the last one.
async fn pull_on(
    security: Security,
    target: Target,
    pull: berth_proto::v1::AgentPullRequest,
    tx: mpsc::Sender<Result<NodePullUpdate, Status>>,
) {
    let node = target.node.clone();
    let say = |update, error: String| {
        Ok(NodePullUpdate {
            node: Some(node.clone()),
            update,
            error,
        })
    };
    if tx.send(say(None, String::new())).await.is_err() {
        return;
    }
    let failed = |e: String| say(None, e);
    let channel = match agents::channel(&security, &target).await {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send(failed(e)).await;
            return;
        }
    };
    let mut stream = match client(channel).pull(pull).await {
        Ok(s) => s.into_inner(),
        Err(s) => {
            let _ = tx.send(failed(s.message().to_string())).await;
            return;
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(update)) => {
                if tx.send(say(Some(update), String::new())).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(s) => {
                let _ = tx.send(failed(s.message().to_string())).await;
                return;
            }
        }
    }
}
