//! The `Events` service (`berth events`): the event stream of
//! `crate::events`, replayed from a time and then followed live.

use std::pin::Pin;
use std::time::Duration;

use berth_proto::v1::events_server::Events;
use berth_proto::v1::{EventType, EventsRequest, EventsResponse, events_response::Item};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::events::{Filter, Opened, open};
use crate::raft::RaftHandle;

pub type EventStream = Pin<Box<dyn Stream<Item = Result<EventsResponse, Status>> + Send>>;

pub struct EventsApi {
    raft: RaftHandle,
}

impl EventsApi {
    pub fn new(raft: RaftHandle) -> EventsApi {
        EventsApi { raft }
    }
}

fn filter_of(req: &EventsRequest) -> Result<Filter, Status> {
    let mut types = Vec::new();
    for &t in &req.types {
        match EventType::try_from(t) {
            Ok(EventType::Unspecified) | Err(_) => {
                return Err(Status::invalid_argument(format!("unknown event type {t}")));
            }
            Ok(kind) => types.push(kind),
        }
    }
    Ok(Filter::new(types, req.services.clone()))
}

#[tonic::async_trait]
impl Events for EventsApi {
    type EventsStream = EventStream;

    async fn events(
        &self,
        request: Request<EventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let req = request.into_inner();
        let filter = filter_of(&req)?;
        let Opened {
            gap,
            replay,
            mut deriver,
            mut live,
        } = open(self.raft.state(), req.since_ms, &filter)?;
        let until_ms = req.until_ms;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let send = |item| {
                let tx = tx.clone();
                async move {
                    tx.send(Ok(EventsResponse { item: Some(item) }))
                        .await
                        .is_ok()
                }
            };
            if let Some(gap) = gap
                && !send(Item::Gap(gap)).await
            {
                return;
            }
            for event in replay {
                if until_ms > 0 && event.time_ms > until_ms {
                    return;
                }
                if !send(Item::Event(event)).await {
                    return;
                }
            }
            let deadline = until_deadline(until_ms);
            tokio::pin!(deadline);
            loop {
                let change = tokio::select! {
                    _ = &mut deadline => return,
                    _ = tx.closed() => return,
                    change = live.recv() => change,
                };
                match change {
                    Ok(change) => {
                        for event in deriver.next(&change) {
                            if until_ms > 0 && event.time_ms > until_ms {
                                return;
                            }
                            if filter.matches(&event) && !send(Item::Event(event)).await {
                                return;
                            }
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::resource_exhausted(format!(
                                "the event stream fell {n} changes behind; start it again"
                            ))))
                            .await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Resolves when `until_ms` (ms since the epoch) has come; never for 0.
async fn until_deadline(until_ms: i64) {
    if until_ms <= 0 {
        return std::future::pending().await;
    }
    let left = until_ms.saturating_sub(crate::clock::now_ms());
    tokio::time::sleep(Duration::from_millis(u64::try_from(left).unwrap_or(0))).await;
}
