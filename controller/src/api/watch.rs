//! The watch stream: committed changes from a revision on.

use std::pin::Pin;

use berth_proto::v1::{ObjectKind, WatchEvent, WatchRequest, watch_event};
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::Status;

use crate::raft::RaftHandle;
use crate::store::StoreError;

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

fn kind_of(event: &WatchEvent) -> ObjectKind {
    match event.object {
        Some(watch_event::Object::Node(_)) => ObjectKind::Node,
        Some(watch_event::Object::Service(_)) => ObjectKind::Service,
        Some(watch_event::Object::Task(_)) => ObjectKind::Task,
        Some(watch_event::Object::Network(_)) => ObjectKind::Network,
        Some(watch_event::Object::Secret(_)) => ObjectKind::Secret,
        Some(watch_event::Object::Config(_)) => ObjectKind::Config,
        None => ObjectKind::Unspecified,
    }
}

pub fn watch(raft: &RaftHandle, req: WatchRequest) -> Result<WatchStream, Status> {
    let kinds: Vec<i32> = req.kinds.clone();
    let wanted =
        move |event: &WatchEvent| kinds.is_empty() || kinds.contains(&(kind_of(event) as i32));
    let (backlog, mut live) =
        raft.state()
            .watch()
            .subscribe(req.from_revision)
            .map_err(|e| match e {
                StoreError::Compacted { .. } => Status::out_of_range(e.to_string()),
                other => Status::internal(other.to_string()),
            })?;
    let stream = async_stream(move |tx| async move {
        let mut last = req.from_revision;
        for event in backlog {
            last = event.revision;
            if wanted(&event) && tx.send(Ok((*event).clone())).await.is_err() {
                return;
            }
        }
        loop {
            match live.recv().await {
                Ok(event) => {
                    // The backlog may already have carried it.
                    if event.revision <= last && req.from_revision != 0 {
                        continue;
                    }
                    if wanted(&event) && tx.send(Ok((*event).clone())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    let _ = tx
                        .send(Err(Status::resource_exhausted(format!(
                            "the watcher fell {n} events behind; watch again from revision {last}"
                        ))))
                        .await;
                    return;
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    Ok(stream)
}

/// A stream fed by a spawned task through a small channel.
fn async_stream<F, Fut>(body: F) -> WatchStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<WatchEvent, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
