//! The peer transport between controller processes: one long-lived gRPC
//! stream per peer behind a bounded queue. A full queue or a broken stream
//! drops messages and tells raft the peer is unreachable (raft retransmits);
//! snapshots go in chunks over their own call.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use berth_pki::Security;
use berth_proto::v1::raft_peer_client::RaftPeerClient;
use berth_proto::v1::{RaftEnvelope, SnapshotChunk};
use protobuf::Message as _;
use raft::SnapshotStatus;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, warn};

use super::Transport;
use crate::raft::mailbox::Msg;

/// Messages queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 4096;
/// Snapshot data per gRPC message.
const SNAPSHOT_CHUNK: usize = 1024 * 1024;

#[derive(Clone)]
pub struct GrpcTransport {
    inner: Arc<Inner>,
}

struct Inner {
    self_id: u64,
    cluster_id: String,
    security: Security,
    mailbox: SyncSender<Msg>,
    runtime: tokio::runtime::Handle,
    peers: Mutex<HashMap<u64, Peer>>,
}

struct Peer {
    address: String,
    queue: mpsc::Sender<Message>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gRPC channel to a peer's address with the settings every controller link
/// uses: fast connect, keepalive that notices a dead peer within ~2 s.
/// Mutual TLS with this controller's certificate unless the operator opted out.
pub fn peer_channel(
    address: &str,
    security: &Security,
) -> Result<Channel, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(1))
        .keep_alive_while_idle(true);
    Ok(berth_pki::tls::connect_lazy(
        endpoint,
        security,
        berth_pki::Role::Controller,
    ))
}

pub fn peer_client(channel: Channel) -> RaftPeerClient<Channel> {
    RaftPeerClient::new(channel)
        .max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(berth_proto::MAX_MESSAGE_BYTES)
}

impl GrpcTransport {
    pub fn new(
        self_id: u64,
        cluster_id: String,
        security: Security,
        mailbox: SyncSender<Msg>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        GrpcTransport {
            inner: Arc::new(Inner {
                self_id,
                cluster_id,
                security,
                mailbox,
                runtime,
                peers: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl Transport for GrpcTransport {
    fn send(&self, messages: Vec<Message>) {
        let peers = self.inner.peers.lock().unwrap_or_else(|e| e.into_inner());
        for msg in messages {
            let to = msg.to;
            let Some(peer) = peers.get(&to) else {
                debug!(to, "no address for raft peer");
                let _ = self.inner.mailbox.try_send(Msg::Unreachable(to));
                continue;
            };
            if msg.get_msg_type() == MessageType::MsgSnapshot {
                let inner = self.inner.clone();
                let address = peer.address.clone();
                self.inner
                    .runtime
                    .spawn(async move { send_snapshot(inner, address, msg).await });
                continue;
            }
            if peer.queue.try_send(msg).is_err() {
                let _ = self.inner.mailbox.try_send(Msg::Unreachable(to));
            }
        }
    }

    fn set_peers(&self, peers: &BTreeMap<u64, String>) {
        let mut current = self.inner.peers.lock().unwrap_or_else(|e| e.into_inner());
        current.retain(|id, peer| peers.get(id) == Some(&peer.address));
        for (id, address) in peers {
            if *id == self.inner.self_id || current.contains_key(id) {
                continue;
            }
            let (queue, rx) = mpsc::channel(PEER_QUEUE);
            let task =
                self.inner
                    .runtime
                    .spawn(peer_loop(self.inner.clone(), *id, address.clone(), rx));
            current.insert(
                *id,
                Peer {
                    address: address.clone(),
                    queue,
                    task,
                },
            );
        }
    }
}

fn envelope(inner: &Inner, msg: &Message) -> Option<RaftEnvelope> {
    match msg.write_to_bytes() {
        Ok(bytes) => Some(RaftEnvelope {
            cluster_id: inner.cluster_id.clone(),
            from: inner.self_id,
            message: bytes,
        }),
        Err(err) => {
            warn!(%err, "failed to encode a raft message");
            None
        }
    }
}

/// The peer's queue, read directly by the gRPC request stream of the current
/// connection (no task in between). A reconnect bumps `generation`, which ends
/// the stream of the connection before it.
struct SharedQueue {
    queue: Mutex<mpsc::Receiver<Message>>,
    generation: AtomicU64,
}

struct QueueStream {
    inner: Arc<Inner>,
    shared: Arc<SharedQueue>,
    generation: u64,
}

impl Stream for QueueStream {
    type Item = RaftEnvelope;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RaftEnvelope>> {
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock: a stale stream never takes the waker of the
        // current one.
        if self.shared.generation.load(Ordering::Acquire) != self.generation {
            return Poll::Ready(None);
        }
        loop {
            match queue.poll_recv(cx) {
                Poll::Ready(Some(msg)) => {
                    if let Some(env) = envelope(&self.inner, &msg) {
                        return Poll::Ready(Some(env));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Keeps one stream open to a peer and feeds it from the queue; reconnects after
/// a failure, reporting the peer unreachable so raft slows down and retries.
async fn peer_loop(inner: Arc<Inner>, id: u64, address: String, queue: mpsc::Receiver<Message>) {
    let shared = Arc::new(SharedQueue {
        queue: Mutex::new(queue),
        generation: AtomicU64::new(0),
    });
    loop {
        let channel = match peer_channel(&address, &inner.security) {
            Ok(channel) => channel,
            Err(err) => {
                warn!(peer = id, %address, %err, "invalid peer address");
                return;
            }
        };
        let mut client = peer_client(channel);
        let generation = shared.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let stream = QueueStream {
            inner: inner.clone(),
            shared: shared.clone(),
            generation,
        };
        let result = client.messages(stream).await;
        if let Err(status) = result {
            debug!(peer = id, %address, %status, "raft stream ended");
            let removed = status
                .metadata()
                .get(crate::raft::peer_service::REMOVED_METADATA)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if removed == Some(inner.self_id) {
                let _ = inner.mailbox.try_send(Msg::Removed);
            }
        }
        let closed = {
            let queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.is_closed() && queue.is_empty()
        };
        if closed {
            return;
        }
        let _ = inner.mailbox.try_send(Msg::Unreachable(id));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send_snapshot(inner: Arc<Inner>, address: String, mut msg: Message) {
    let to = msg.to;
    let data = msg.mut_snapshot().take_data();
    let status = match push_snapshot(&inner, &address, &msg, &data).await {
        Ok(()) => SnapshotStatus::Finish,
        Err(err) => {
            warn!(peer = to, %address, %err, "sending a snapshot failed");
            SnapshotStatus::Failure
        }
    };
    let _ = inner.mailbox.try_send(Msg::Snapshot(to, status));
}

async fn push_snapshot(
    inner: &Inner,
    address: &str,
    header: &Message,
    data: &[u8],
) -> Result<(), String> {
    let header = header.write_to_bytes().map_err(|e| e.to_string())?;
    let mut chunks: Vec<SnapshotChunk> = data
        .chunks(SNAPSHOT_CHUNK)
        .map(|chunk| SnapshotChunk {
            cluster_id: inner.cluster_id.clone(),
            from: inner.self_id,
            message: Vec::new(),
            data: chunk.to_vec(),
            last: false,
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(SnapshotChunk {
            cluster_id: inner.cluster_id.clone(),
            from: inner.self_id,
            ..Default::default()
        });
    }
    chunks[0].message = header;
    if let Some(last) = chunks.last_mut() {
        last.last = true;
    }
    let channel = peer_channel(address, &inner.security).map_err(|e| e.to_string())?;
    let mut client = peer_client(channel);
    tokio::time::timeout(
        Duration::from_secs(60),
        client.snapshot(tokio_stream::iter(chunks)),
    )
    .await
    .map_err(|_| "timed out after 60 s".to_string())?
    .map_err(|status| status.to_string())?;
    Ok(())
}
