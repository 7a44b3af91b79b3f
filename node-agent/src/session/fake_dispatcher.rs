//! An in-process Dispatcher gRPC server on 127.0.0.1 for the session's unit
//! tests: it records every request, answers registrations with a scripted node
//! id (or a redirect to the leader), and lets the test push messages on the
//! open session stream or end it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::v1::dispatcher_server::{Dispatcher, DispatcherServer};
use berth_proto::v1::{
    AckSharedRequest, AckSharedResponse, FollowRequest, FollowResponse, HeartbeatRequest,
    HeartbeatResponse, RegisterRequest, RegisterResponse, SessionMessage, SessionRequest,
    UpdateTaskStatusRequest, UpdateTaskStatusResponse,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Every request the dispatcher got, in order.
#[derive(Default)]
pub struct Seen {
    pub registers: Vec<RegisterRequest>,
    pub sessions: Vec<SessionRequest>,
    pub heartbeats: Vec<HeartbeatRequest>,
    /// How many of `heartbeats` came as calls (`Heartbeat`), not on the stream.
    pub heartbeat_calls: usize,
    pub statuses: Vec<UpdateTaskStatusRequest>,
    pub acks: Vec<AckSharedRequest>,
    pub follows: Vec<FollowRequest>,
}

#[derive(Default)]
struct State {
    seen: Seen,
    /// The id registrations get.
    node_id: String,
    /// Registrations are refused with this leader address in the metadata.
    redirect: Option<String>,
    /// `Heartbeats` is refused as UNIMPLEMENTED (an older controller).
    no_heartbeat_stream: bool,
    /// The open session stream.
    stream: Option<mpsc::Sender<Result<SessionMessage, Status>>>,
}

type Shared = Arc<Mutex<State>>;

/// What every heartbeat gets, by call or on the stream.
fn beat_answer() -> HeartbeatResponse {
    HeartbeatResponse {
        period_ms: 100,
        ca_digest: String::new(),
    }
}

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state.lock().expect("fake dispatcher lock")
}

/// A running fake; stops serving when dropped.
pub struct FakeDispatcher {
    pub address: String,
    state: Shared,
    _stop: oneshot::Sender<()>,
}

impl FakeDispatcher {
    /// Serves on a free port of 127.0.0.1; registrations get `node_id`.
    pub async fn start(node_id: &str) -> FakeDispatcher {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake dispatcher");
        let address = listener.local_addr().expect("local address").to_string();
        let state = Shared::default();
        lock(&state).node_id = node_id.to_string();
        let service = DispatcherServer::new(Service {
            state: state.clone(),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    stopped.await.ok();
                })
                .await
                .expect("the fake dispatcher serves");
        });
        FakeDispatcher {
            address,
            state,
            _stop: stop,
        }
    }

    /// From now on registrations are refused with a pointer to `leader`.
    /// Serves no heartbeat stream, as a controller from before it.
    pub fn without_heartbeat_stream(&self) {
        lock(&self.state).no_heartbeat_stream = true;
    }

    pub fn redirect_to(&self, leader: &str) {
        lock(&self.state).redirect = Some(leader.to_string());
    }

    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&lock(&self.state).seen)
    }

    /// Waits (up to 5 s) until `done` holds for what the dispatcher has seen.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&Seen) -> bool) {
        wait_until(what, || self.seen(&done)).await;
    }

    /// Sends `message` on the open session stream (waiting for one to open).
    pub async fn send(&self, message: SessionMessage) {
        wait_until("an open session stream", || {
            lock(&self.state).stream.is_some()
        })
        .await;
        let stream = lock(&self.state).stream.clone().expect("checked above");
        stream.send(Ok(message)).await.expect("the agent listens");
    }

    /// Ends the open session stream, as a controller that goes away does.
    pub fn end_stream(&self) {
        lock(&self.state).stream = None;
    }
}

/// Polls `done` every 10 ms for up to 20 s (a loaded CI machine is slow);
/// panics naming `what` after that.
pub async fn wait_until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

struct Service {
    state: Shared,
}

type Messages = Pin<Box<dyn Stream<Item = Result<SessionMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Dispatcher for Service {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let mut state = lock(&self.state);
        state.seen.registers.push(request.into_inner());
        if let Some(leader) = &state.redirect {
            let mut refusal = Status::unavailable("not the leader");
            let value = leader.parse().expect("an ASCII address");
            refusal
                .metadata_mut()
                .insert(berth_proto::LEADER_METADATA, value);
            return Err(refusal);
        }
        Ok(Response::new(RegisterResponse {
            node_id: state.node_id.clone(),
            session_id: format!("session-{}", state.seen.registers.len()),
            heartbeat_period_ms: 100,
        }))
    }

    type SessionStream = Messages;

    async fn session(
        &self,
        request: Request<SessionRequest>,
    ) -> Result<Response<Messages>, Status> {
        let (tx, rx) = mpsc::channel(16);
        let mut state = lock(&self.state);
        state.seen.sessions.push(request.into_inner());
        state.stream = Some(tx);
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let mut state = lock(&self.state);
        state.seen.heartbeats.push(request.into_inner());
        state.seen.heartbeat_calls += 1;
        Ok(Response::new(beat_answer()))
    }

    type HeartbeatsStream =
        Pin<Box<dyn Stream<Item = Result<HeartbeatResponse, Status>> + Send + 'static>>;

    async fn heartbeats(
        &self,
        request: Request<tonic::Streaming<HeartbeatRequest>>,
    ) -> Result<Response<Self::HeartbeatsStream>, Status> {
        if lock(&self.state).no_heartbeat_stream {
            return Err(Status::unimplemented("no heartbeat stream here"));
        }
        let mut beats = request.into_inner();
        let state = Arc::clone(&self.state);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            while let Ok(Some(beat)) = beats.message().await {
                lock(&state).seen.heartbeats.push(beat);
                if tx.send(Ok(beat_answer())).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn ack_shared(
        &self,
        request: Request<AckSharedRequest>,
    ) -> Result<Response<AckSharedResponse>, Status> {
        lock(&self.state).seen.acks.push(request.into_inner());
        Ok(Response::new(AckSharedResponse {}))
    }

    async fn follow(
        &self,
        request: Request<FollowRequest>,
    ) -> Result<Response<FollowResponse>, Status> {
        lock(&self.state).seen.follows.push(request.into_inner());
        Ok(Response::new(FollowResponse {}))
    }

    async fn update_task_status(
        &self,
        request: Request<UpdateTaskStatusRequest>,
    ) -> Result<Response<UpdateTaskStatusResponse>, Status> {
        lock(&self.state).seen.statuses.push(request.into_inner());
        Ok(Response::new(UpdateTaskStatusResponse {}))
    }
}
