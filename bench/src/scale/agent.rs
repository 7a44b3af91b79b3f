//! One simulated agent: the real agent's session protocol (register, session
//! stream, heartbeats at the period the leader gives, status reports, leader
//! redirects), without containers. A task reports RUNNING as soon as it is
//! assigned and SHUTDOWN as soon as its desired state says stop.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use berth_proto::v1::{
    FollowRequest, FollowResponse, HeartbeatRequest, HeartbeatResponse, RegisterRequest,
    RegisterResponse, Resources, SessionRequest, TaskState, TaskStatus, TaskStatusUpdate,
    UpdateTaskStatusRequest, UpdateTaskStatusResponse,
};
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use super::channels::Channels;
use super::codec::{
    AssignmentsView, CountingCodec, DeltaView, SessionMessageKind, SessionMessageView, TaskView,
};

const REGISTER: (&str, &str) = ("register", "/berth.v1.Dispatcher/Register");
const SESSION: &str = "/berth.v1.Dispatcher/Session";
const HEARTBEATS: &str = "/berth.v1.Dispatcher/Heartbeats";
const UPDATE_TASK_STATUS: (&str, &str) = ("report", "/berth.v1.Dispatcher/UpdateTaskStatus");
const FOLLOW: (&str, &str) = ("follow", "/berth.v1.Dispatcher/Follow");

/// Services each simulated agent asks to follow besides its own tasks' (as
/// the real agent does when a container looks up another service's name):
/// containers that talk to a couple of other services.
pub const FOLLOWS_PER_AGENT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("not the leader; try {0}")]
    Redirect(String),
    #[error("controller {address}, {call}: {why}")]
    Failed {
        address: String,
        /// What failed: register, session, report, heartbeat, stream.
        call: &'static str,
        /// A short class of the failure (a gRPC code, "timeout", ...), for counting.
        kind: String,
        why: String,
    },
}

impl AgentError {
    fn failed(address: &str, call: &'static str, kind: &str, why: String) -> AgentError {
        AgentError::Failed {
            address: address.to_string(),
            call,
            kind: kind.to_string(),
            why,
        }
    }

    /// "CALL KIND" for the fleet's count of why sessions ended.
    pub fn class(&self) -> String {
        match self {
            AgentError::Redirect(_) => "redirect".to_string(),
            AgentError::Failed { call, kind, .. } => format!("{call} {kind}"),
        }
    }
}

/// Turns a refusal into a redirect when the controller named the leader (in
/// the status metadata, as the real agent reads it).
fn refused(address: &str, call: &'static str, status: tonic::Status) -> AgentError {
    if let Some(hint) = status
        .metadata()
        .get(berth_proto::LEADER_METADATA)
        .and_then(|v| v.to_str().ok())
    {
        return AgentError::Redirect(hint.to_string());
    }
    let code = format!("{:?}", status.code());
    AgentError::failed(address, call, &code, status.message().to_string())
}

/// What the fleet reads about one agent while it runs.
#[derive(Default)]
pub struct AgentStats {
    /// Tasks desired running here whose RUNNING report the leader acknowledged.
    pub running: AtomicUsize,
    /// A session is open and its first assignment set arrived.
    pub connected: AtomicBool,
    /// Successful registrations (more than one: the session was lost).
    pub registrations: AtomicU64,
    pub node_id: std::sync::Mutex<String>,
}

/// What the fleet's agents share: the controllers, connections, the counter of
/// bytes received.
pub struct Shared {
    pub controllers: Vec<String>,
    pub channels: Channels,
    pub received: Arc<AtomicU64>,
    /// Why sessions ended, by class.
    pub ends: std::sync::Mutex<BTreeMap<String, u64>>,
    /// Service ids the agents have seen tasks of: where each agent picks the
    /// services it follows ([`FOLLOWS_PER_AGENT`]).
    pub services: std::sync::Mutex<ServicePool>,
}

/// Service ids in the order the agents first saw them.
#[derive(Default)]
pub struct ServicePool {
    ids: Vec<String>,
    known: HashSet<String>,
}

impl ServicePool {
    fn add(&mut self, id: &str) {
        if !id.is_empty() && self.known.insert(id.to_string()) {
            self.ids.push(id.to_string());
        }
    }

    /// `count` services none of which is in `own`, spread by `seed` (an
    /// agent's index); fewer while the pool is small.
    fn pick(&self, seed: usize, count: usize, own: &HashSet<String>) -> Vec<String> {
        let mut out = Vec::new();
        if self.ids.len() <= own.len() + count {
            return out;
        }
        let mut at = seed.wrapping_mul(7919);
        while out.len() < count {
            let id = &self.ids[at % self.ids.len()];
            if !own.contains(id) && !out.contains(id) {
                out.push(id.clone());
            }
            at = at.wrapping_add(104_729);
        }
        out
    }
}

impl Shared {
    fn count_end(&self, err: &AgentError) {
        let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        *ends.entry(err.class()).or_default() += 1;
    }
}

struct Reported {
    status: TaskStatus,
    acked: bool,
}

/// One agent's memory across sessions: its node id and its tasks.
struct AgentState {
    index: usize,
    node_id: String,
    tasks: HashMap<String, Reported>,
    /// The services of its tasks.
    own_services: HashSet<String>,
    /// The other services it follows (picked once, asked again each session).
    follows: Vec<String>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn status(state: TaskState) -> TaskStatus {
    TaskStatus {
        state: state as i32,
        message: "simulated".into(),
        timestamp_ms: now_ms(),
        ..Default::default()
    }
}

impl AgentState {
    /// Takes a new assignment set: new tasks desired running start (RUNNING at
    /// once), started tasks desired stopped stop; tasks missing from the set
    /// are forgotten (as the real supervisor does once they stopped). Returns
    /// the status changes to report.
    fn apply(&mut self, assignments: AssignmentsView) -> Vec<TaskStatusUpdate> {
        let mut updates = Vec::new();
        let mut wanted = HashSet::with_capacity(assignments.tasks.len());
        for task in assignments.tasks {
            wanted.insert(task.id.clone());
            self.take(task, &mut updates);
        }
        self.tasks.retain(|id, _| wanted.contains(id));
        updates
    }

    /// Takes the changes to the set: changed tasks as in [`Self::apply`],
    /// removed ones forgotten.
    fn apply_delta(&mut self, delta: DeltaView) -> Vec<TaskStatusUpdate> {
        let mut updates = Vec::new();
        for task in delta.tasks {
            self.take(task, &mut updates);
        }
        for id in &delta.removed_tasks {
            self.tasks.remove(id);
        }
        updates
    }

    fn take(&mut self, task: TaskView, updates: &mut Vec<TaskStatusUpdate>) {
        if !self.own_services.contains(&task.service_id) {
            self.own_services.insert(task.service_id.clone());
        }
        let run = task.desired_state <= TaskState::Running as i32;
        match self.tasks.get_mut(&task.id) {
            None if run => {
                let status = status(TaskState::Running);
                updates.push(update(&task.id, &status));
                self.tasks.insert(
                    task.id,
                    Reported {
                        status,
                        acked: false,
                    },
                );
            }
            Some(r) if !run && r.status.state == TaskState::Running as i32 => {
                r.status = status(TaskState::Shutdown);
                r.acked = false;
                updates.push(update(&task.id, &r.status));
            }
            _ => {}
        }
    }

    /// Everything known, to send again to a new session (what an earlier
    /// leader got may be lost). The same status each time: the leader skips
    /// identical reports.
    fn statuses(&self) -> Vec<TaskStatusUpdate> {
        self.tasks
            .iter()
            .map(|(id, r)| update(id, &r.status))
            .collect()
    }

    fn acked(&mut self, updates: &[TaskStatusUpdate]) {
        for u in updates {
            if let Some(r) = self.tasks.get_mut(&u.task_id) {
                r.acked = true;
            }
        }
    }

    fn running(&self) -> usize {
        self.tasks
            .values()
            .filter(|r| r.acked && r.status.state == TaskState::Running as i32)
            .count()
    }
}

fn update(task_id: &str, status: &TaskStatus) -> TaskStatusUpdate {
    TaskStatusUpdate {
        task_id: task_id.to_string(),
        status: Some(status.clone()),
    }
}

/// Runs agent `index` until its task is aborted: a session with the leader,
/// again and again (redirects at once, other failures after a backoff).
pub async fn run(index: usize, shared: Arc<Shared>, stats: Arc<AgentStats>) {
    let mut state = AgentState {
        index,
        node_id: String::new(),
        tasks: HashMap::new(),
        own_services: HashSet::new(),
        follows: Vec::new(),
    };
    let mut next = index;
    let mut hint: Option<String> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let address = hint
            .take()
            .unwrap_or_else(|| shared.controllers[next % shared.controllers.len()].clone());
        next += 1;
        let result = session(&shared, &stats, &mut state, &address).await;
        if let Err(err) = &result {
            shared.count_end(err);
        }
        // Without a session its tasks count for nothing: the leader may be
        // replacing them elsewhere.
        stats.connected.store(false, Ordering::Relaxed);
        stats.running.store(0, Ordering::Relaxed);
        if let Err(AgentError::Redirect(leader)) = result {
            hint = Some(leader);
            backoff = Duration::from_millis(100);
            continue;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn unary<Req, Resp>(
    grpc: &mut Grpc<Channel>,
    shared: &Shared,
    address: &str,
    (call, path): (&'static str, &'static str),
    request: Req,
) -> Result<Resp, AgentError>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    grpc.ready()
        .await
        .map_err(|e| AgentError::failed(address, call, "connect", e.to_string()))?;
    let codec = CountingCodec::<Req, Resp>::new(shared.received.clone());
    grpc.unary(
        tonic::Request::new(request),
        PathAndQuery::from_static(path),
        codec,
    )
    .await
    .map(tonic::Response::into_inner)
    .map_err(|s| refused(address, call, s))
}

async fn report(
    grpc: &mut Grpc<Channel>,
    shared: &Shared,
    state: &mut AgentState,
    session_id: &str,
    address: &str,
    updates: Vec<TaskStatusUpdate>,
) -> Result<(), AgentError> {
    let request = UpdateTaskStatusRequest {
        node_id: state.node_id.clone(),
        session_id: session_id.to_string(),
        updates: updates.clone(),
    };
    let _: UpdateTaskStatusResponse =
        unary(grpc, shared, address, UPDATE_TASK_STATUS, request).await?;
    state.acked(&updates);
    Ok(())
}

/// Asks the leader for the serving tasks of the services the agent follows.
async fn follow(
    grpc: &mut Grpc<Channel>,
    shared: &Shared,
    state: &AgentState,
    session_id: &str,
    address: &str,
) -> Result<(), AgentError> {
    let request = FollowRequest {
        node_id: state.node_id.clone(),
        session_id: session_id.to_string(),
        service_ids: state.follows.clone(),
        names: Vec::new(),
    };
    let _: FollowResponse = unary(grpc, shared, address, FOLLOW, request).await?;
    Ok(())
}

/// One session; returns when anything breaks.
async fn session(
    shared: &Shared,
    stats: &AgentStats,
    state: &mut AgentState,
    address: &str,
) -> Result<(), AgentError> {
    let failed = |call, kind, why: String| AgentError::failed(address, call, kind, why);
    let channel = shared
        .channels
        .get(address, state.index)
        .map_err(|e| failed("connect", "address", e.to_string()))?;
    let mut grpc = Grpc::new(channel).max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES);
    // A distinct fake underlay address per node (never dialled: these nodes
    // run no tasks and no agent API).
    let ip = format!("127.1.{}.{}", state.index / 250, state.index % 250 + 1);
    let register = RegisterRequest {
        node_id: state.node_id.clone(),
        name: format!("sim-{:04}", state.index),
        api_address: format!("{ip}:7401"),
        address: ip,
        labels: Default::default(),
        resources: Some(Resources {
            milli_cpus: 64_000,
            memory_bytes: 256 << 30,
            pids: 0,
        }),
    };
    let registered: RegisterResponse =
        unary(&mut grpc, shared, address, REGISTER, register).await?;
    state.node_id = registered.node_id.clone();
    if let Ok(mut id) = stats.node_id.lock() {
        id.clone_from(&registered.node_id);
    }
    stats.registrations.fetch_add(1, Ordering::Relaxed);
    let session_id = registered.session_id;

    grpc.ready()
        .await
        .map_err(|e| failed("session", "connect", e.to_string()))?;
    let codec = CountingCodec::<SessionRequest, SessionMessageView>::new(shared.received.clone());
    let mut stream = grpc
        .server_streaming(
            // Simulated agents keep no set: every session starts complete
            // (the worst case the bench measures).
            tonic::Request::new(SessionRequest {
                node_id: state.node_id.clone(),
                session_id: session_id.clone(),
                held: None,
                follows_on_demand: true,
                // As the real agent: endpoints only of what it follows.
                heads_on_demand: true,
            }),
            PathAndQuery::from_static(SESSION),
            codec,
        )
        .await
        .map_err(|s| refused(address, "session", s))?
        .into_inner();

    let known = state.statuses();
    if !known.is_empty() {
        report(&mut grpc, shared, state, &session_id, address, known).await?;
    }
    // What it followed in an earlier session, it asks this one for.
    let mut asked = false;
    if !state.follows.is_empty() {
        follow(&mut grpc, shared, state, &session_id, address).await?;
        asked = true;
    }

    let mut period = Duration::from_millis(registered.heartbeat_period_ms.clamp(100, 60_000));
    let mut heartbeat = tokio::time::interval(period);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Heartbeats on one stream, as the real agent sends them.
    let (beats, beats_rx) = tokio::sync::mpsc::channel(4);
    let codec = CountingCodec::<HeartbeatRequest, HeartbeatResponse>::new(shared.received.clone());
    grpc.ready()
        .await
        .map_err(|e| failed("heartbeat", "connect", e.to_string()))?;
    let mut answers = grpc
        .streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(beats_rx)),
            PathAndQuery::from_static(HEARTBEATS),
            codec,
        )
        .await
        .map_err(|s| refused(address, "heartbeat", s))?
        .into_inner();
    let mut last_answer = std::time::Instant::now();
    loop {
        tokio::select! {
            message = stream.message() => {
                let message = message
                    .map_err(|s| refused(address, "stream", s))?
                    .ok_or_else(|| failed("stream", "ended", "the session stream ended".into()))?;
                match message.message {
                    Some(kind @ (SessionMessageKind::Assignments(_) | SessionMessageKind::Delta(_))) => {
                        let updates = match kind {
                            SessionMessageKind::Delta(delta) => state.apply_delta(delta),
                            SessionMessageKind::Assignments(set) => state.apply(set),
                            SessionMessageKind::NotLeader(_) => Vec::new(),
                        };
                        stats.connected.store(true, Ordering::Relaxed);
                        if !updates.is_empty() {
                            report(&mut grpc, shared, state, &session_id, address, updates).await?;
                        }
                        stats.running.store(state.running(), Ordering::Relaxed);
                        if !asked && !state.own_services.is_empty() {
                            let mut pool = shared.services.lock().unwrap_or_else(|e| e.into_inner());
                            for id in &state.own_services {
                                pool.add(id);
                            }
                            state.follows = pool.pick(state.index, FOLLOWS_PER_AGENT, &state.own_services);
                        }
                        if !asked && !state.follows.is_empty() {
                            follow(&mut grpc, shared, state, &session_id, address).await?;
                            asked = true;
                        }
                    }
                    Some(SessionMessageKind::NotLeader(not_leader)) => {
                        if not_leader.leader_address.is_empty() {
                            return Err(failed("stream", "no leader", "the controller lost leadership".into()));
                        }
                        return Err(AgentError::Redirect(not_leader.leader_address));
                    }
                    None => {}
                }
            }
            _ = heartbeat.tick() => {
                if last_answer.elapsed() > period * 3 {
                    return Err(failed("heartbeat", "timeout", format!("no answer within {:?}", period * 3)));
                }
                let beat = HeartbeatRequest {
                    node_id: state.node_id.clone(),
                    session_id: session_id.clone(),
                    dataplane_conflict: String::new(),
                };
                let _ = beats.try_send(beat);
            }
            answer = answers.message() => {
                let answer: HeartbeatResponse = answer
                    .map_err(|s| refused(address, "heartbeat", s))?
                    .ok_or_else(|| failed("heartbeat", "ended", "the heartbeat stream ended".into()))?;
                last_answer = std::time::Instant::now();
                let asked = Duration::from_millis(answer.period_ms.clamp(100, 60_000));
                if answer.period_ms != 0 && asked != period {
                    period = asked;
                    heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::codec::TaskView;

    fn task(id: &str, desired: TaskState) -> TaskView {
        TaskView {
            id: id.into(),
            service_id: "s1".into(),
            desired_state: desired as i32,
        }
    }

    fn assignments(tasks: Vec<TaskView>) -> AssignmentsView {
        AssignmentsView { tasks, revision: 1 }
    }

    #[test]
    fn tasks_run_when_assigned_and_stop_when_told() {
        let mut state = AgentState {
            index: 0,
            node_id: "n1".into(),
            tasks: HashMap::new(),
            own_services: HashSet::new(),
            follows: Vec::new(),
        };
        let first = state.apply(assignments(vec![
            task("a", TaskState::Running),
            task("b", TaskState::Running),
            task("never-started", TaskState::Shutdown),
        ]));
        let reported: Vec<_> = first.iter().map(|u| u.task_id.as_str()).collect();
        assert_eq!(reported.len(), 2);
        assert!(reported.contains(&"a") && reported.contains(&"b"));
        assert_eq!(state.running(), 0, "nothing acknowledged yet");
        state.acked(&first);
        assert_eq!(state.running(), 2);

        // The same set again reports nothing new.
        assert!(
            state
                .apply(assignments(vec![
                    task("a", TaskState::Running),
                    task("b", TaskState::Running)
                ]))
                .is_empty()
        );

        // b is told to stop, a disappears from the set.
        let second = state.apply(assignments(vec![task("b", TaskState::Shutdown)]));
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].task_id, "b");
        assert_eq!(
            second[0].status.as_ref().map(|s| s.state),
            Some(TaskState::Shutdown as i32)
        );
        state.acked(&second);
        assert_eq!(state.running(), 0);
        assert_eq!(state.statuses().len(), 1, "a is forgotten, b is remembered");
    }

    #[test]
    fn an_agent_follows_services_it_does_not_run() {
        let mut pool = ServicePool::default();
        let own: HashSet<String> = ["s0".to_string()].into();
        pool.add("s0");
        assert!(pool.pick(3, 2, &own).is_empty(), "too few to pick from");
        for i in 1..10 {
            pool.add(&format!("s{i}"));
        }
        pool.add("s1");
        let picked = pool.pick(3, 2, &own);
        assert_eq!(picked.len(), 2);
        assert!(!picked.contains(&"s0".to_string()), "{picked:?}");
        assert_ne!(picked[0], picked[1]);
    }
}
