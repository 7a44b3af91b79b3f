//! The `Tasks` service: `berth run` and the verbs on one task (`logs`,
//! `stop`, `kill`, `rm`). Requests are mapped to the one-off domain
//! (`one_off/`), the store and the agent that runs the task.

use berth_pki::Security;
use berth_proto::store::object::Kind;
use berth_proto::v1::agent_tasks_client::AgentTasksClient;
use berth_proto::v1::tasks_server::Tasks;
use berth_proto::v1::{
    AgentStopRequest, KillTaskRequest, KillTaskResponse, RemoveTaskRequest, RemoveTaskResponse,
    RunRequest, RunResponse, SignalTaskRequest, StopTaskRequest, StopTaskResponse, Task,
    TaskOutputRequest, TaskState,
};
use tonic::{Request, Response, Status};

use super::agent_link::{connect, node_of};
use super::files::resolve_files;
use super::image_pin::{self, Lookup, PinSettings, Pinner};
use super::services::{check_stored_port_conflicts, validate_spec};
use super::task_output::{self, OutputStream};
use crate::clock::now_ms;
use crate::ids::new_id;
use crate::keyring::Keyring;
use crate::one_off::{self, OneOffError, names};
use crate::orchestrator::task::{is_terminal, observed};
use crate::raft::RaftHandle;
use crate::store::view::{read_view, resolve, resolve_task};
use crate::store::{Pending, Table, commit};

pub struct TasksApi {
    raft: RaftHandle,
    /// How this controller calls agents.
    security: Security,
    pinner: Pinner,
}

impl TasksApi {
    pub fn new(raft: RaftHandle, security: Security, keys: Keyring, pins: PinSettings) -> Self {
        TasksApi {
            raft,
            security,
            pinner: Pinner::new(pins, keys),
        }
    }
}

impl From<OneOffError> for Status {
    fn from(err: OneOffError) -> Status {
        match err {
            OneOffError::NoNodeFits { .. } => Status::resource_exhausted(err.to_string()),
            OneOffError::ServiceTask { .. } | OneOffError::Running { .. } => {
                Status::failed_precondition(err.to_string())
            }
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Tasks for TasksApi {
    async fn run(&self, r: Request<RunRequest>) -> Reply<RunResponse> {
        Ok(Response::new(
            run(&self.raft, &self.pinner, r.into_inner()).await?,
        ))
    }

    type LogsStream = OutputStream;

    async fn logs(&self, r: Request<TaskOutputRequest>) -> Reply<OutputStream> {
        let req = r.into_inner();
        self.raft.read_barrier().await?;
        let task = resolve_task(self.raft.state(), &req.task)?;
        Ok(Response::new(task_output::stream(
            self.raft.clone(),
            self.security.clone(),
            task,
            req,
        )?))
    }

    async fn stop(&self, r: Request<StopTaskRequest>) -> Reply<StopTaskResponse> {
        Ok(Response::new(
            stop(&self.raft, &self.security, r.into_inner()).await?,
        ))
    }

    async fn kill(&self, r: Request<KillTaskRequest>) -> Reply<KillTaskResponse> {
        let req = r.into_inner();
        let signal = if req.signal.is_empty() {
            "SIGKILL".to_string()
        } else {
            req.signal.clone()
        };
        berth_proto::signals::number(&signal)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.raft.read_barrier().await?;
        let task = resolve_task(self.raft.state(), &req.task)?;
        running(&task)?;
        signal_task(&self.raft, &self.security, &task, &signal).await?;
        Ok(Response::new(KillTaskResponse { task: Some(task) }))
    }

    async fn remove(&self, r: Request<RemoveTaskRequest>) -> Reply<RemoveTaskResponse> {
        let req = r.into_inner();
        self.raft.read_barrier().await?;
        let task = resolve_task(self.raft.state(), &req.task)?;
        let view = read_view(self.raft.state())?;
        let service = view.services.iter().find(|s| s.id == task.service_id);
        // Checked before anything is killed: a refusal changes nothing.
        let ops = one_off::removal(&task, service, &view.tasks, req.force)?;
        if req.force && !is_terminal(observed(&task)) && !task.node_id.is_empty() {
            // As `docker rm -f`: SIGKILL, then the records go; the reaper
            // deletes the task once its agent reports the end.
            if let Err(status) = signal_task(&self.raft, &self.security, &task, "SIGKILL").await {
                tracing::warn!(task = %task.id, error = %status.message(), "rm -f: kill failed; the reaper stops the task");
            }
        }
        commit(&self.raft, ops).await?;
        Ok(Response::new(RemoveTaskResponse { task: Some(task) }))
    }
}

/// Writes a one-off: its service and its task, in one transaction, after
/// every check (the node, the spec, the image, a node that can take it).
async fn run(raft: &RaftHandle, pinner: &Pinner, req: RunRequest) -> Result<RunResponse, Status> {
    let mut spec = req
        .spec
        .ok_or_else(|| Status::invalid_argument("a spec is required"))?;
    raft.read_barrier().await?;
    let node = if req.node.is_empty() {
        None
    } else {
        match resolve(raft.state(), Table::Node, &req.node)?.kind {
            Some(Kind::Node(n)) => Some(n),
            _ => return Err(Status::internal("the store returned a non-node object")),
        }
    };
    if spec.name.is_empty() {
        let sm = raft.state();
        spec.name = names::unused_name(&mut |name| {
            !matches!(sm.id_by_name(Table::Service, name), Ok(None))
        });
    }
    let mut spec = one_off::one_off_spec(spec, node.as_ref());
    validate_spec(&spec)?;
    // A network that does not exist would keep the task waiting for an
    // address: refused now, as Docker refuses it.
    for network in &spec.networks {
        if raft.state().id_by_name(Table::Network, network)?.is_none() {
            return Err(Status::not_found(format!("network {network} not found")));
        }
    }
    resolve_files(&Pending::new(raft.state()), &mut spec)?;
    check_stored_port_conflicts(raft, &spec, "")?;
    let lookup = pinner.look_up(raft, &spec, req.no_resolve_image).await?;
    if let Lookup::Missing(why) = &lookup {
        return Err(Status::not_found(format!(
            "cannot run {}: {why}",
            spec.image
        )));
    }
    let warnings = image_pin::apply(lookup, &mut spec, None);
    let view = read_view(raft.state())?;
    let (service, task, ops) = one_off::plan_run(&view, spec, (new_id(), new_id()), now_ms())?;
    commit(raft, ops).await?;
    Ok(RunResponse {
        service: Some(service),
        task: Some(task),
        node_name: node.map(|n| n.name).unwrap_or_default(),
        warnings,
    })
}

/// A task that runs (or starts) on a node: what `kill` and `stop` act on.
fn running(task: &Task) -> Result<(), Status> {
    let state = observed(task);
    if is_terminal(state) || task.node_id.is_empty() || state < TaskState::Preparing as i32 {
        let name = TaskState::try_from(state).map_or("unknown", |s| s.short_name());
        return Err(Status::failed_precondition(format!(
            "task {} ({}) is {name}, not running",
            task.id, task.service_name
        )));
    }
    Ok(())
}

async fn signal_task(
    raft: &RaftHandle,
    security: &Security,
    task: &Task,
    signal: &str,
) -> Result<(), Status> {
    let node = node_of(raft, task)?;
    let mut agent = AgentTasksClient::new(connect(security, &node).await?);
    agent
        .signal(SignalTaskRequest {
            task_id: task.id.clone(),
            signal: signal.to_string(),
        })
        .await?;
    Ok(())
}

/// `berth stop`: through the agent (stop signal, grace, SIGKILL) when the
/// task runs; a one-off not started yet is told to shut down instead.
async fn stop(
    raft: &RaftHandle,
    security: &Security,
    req: StopTaskRequest,
) -> Result<StopTaskResponse, Status> {
    raft.read_barrier().await?;
    let task = resolve_task(raft.state(), &req.task)?;
    let state = observed(&task);
    if is_terminal(state) {
        // As `docker stop` of a stopped container: nothing to do.
        let name = TaskState::try_from(state).map_or("unknown", |s| s.short_name());
        return Ok(StopTaskResponse {
            outcome: format!("it had already ended ({name})"),
            task: Some(task),
        });
    }
    let outcome = one_off::stop_outcome(&task);
    if !is_terminal(state) && state < TaskState::Running as i32 && one_off::is_one_off(&task) {
        shut_down(raft, &task).await?;
        return Ok(StopTaskResponse {
            task: Some(task),
            outcome,
        });
    }
    if state != TaskState::Running as i32 {
        running(&task)?;
    }
    let node = node_of(raft, &task)?;
    let mut agent = AgentTasksClient::new(connect(security, &node).await?);
    agent
        .stop(AgentStopRequest {
            task_id: task.id.clone(),
            grace_ms: u64::from(req.grace_seconds) * 1000,
            use_task_grace: !req.grace_given,
        })
        .await?;
    Ok(StopTaskResponse {
        task: Some(task),
        outcome,
    })
}

/// Desired SHUTDOWN for a task that has not started: its agent (or the
/// reaper, if it was never placed) ends it.
async fn shut_down(raft: &RaftHandle, task: &Task) -> Result<(), Status> {
    let mut stopped = task.clone();
    stopped.desired_state = TaskState::Shutdown as i32;
    let op = crate::store::put(
        berth_proto::store::Object {
            kind: Some(Kind::Task(Box::new(stopped))),
        },
        berth_proto::store::Expect::Version,
        task.version,
    );
    commit(raft, vec![op]).await?;
    Ok(())
}
