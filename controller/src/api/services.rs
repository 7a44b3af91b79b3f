//! Services and their tasks as stored objects. (Turning services into tasks is
//! the orchestrator's job; these handlers only validate and store.)

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object};
use berth_proto::v1::service_spec::Mode;
use berth_proto::v1::{
    CreateServiceRequest, ListServicesResponse, ListTasksRequest, ListTasksResponse,
    ReplicatedMode, ScaleServiceRequest, Service, ServiceSpec, Task, Timestamps,
    UpdateServiceRequest,
};
use tonic::Status;

use super::common::{
    barrier, check_name, commit, delete, new_id, now_ms, put_one, resolve, store_status,
};
use crate::raft::RaftHandle;
use crate::store::ObjectExt;

fn wrap(service: Service) -> Object {
    Object {
        kind: Some(Kind::Service(service)),
    }
}

fn unwrap(object: Object) -> Result<Service, Status> {
    match object.kind {
        Some(Kind::Service(s)) => Ok(s),
        _ => Err(Status::internal("the store returned a non-service object")),
    }
}

/// Checks what a user can get wrong in a spec, naming the field.
pub fn validate_spec(spec: &ServiceSpec) -> Result<(), Status> {
    check_name("service", &spec.name)?;
    if spec.image.trim().is_empty() {
        return Err(Status::invalid_argument(format!(
            "service {}: an image is required",
            spec.name
        )));
    }
    for env in &spec.env {
        if !env.contains('=') || env.starts_with('=') {
            return Err(Status::invalid_argument(format!(
                "service {}: env entry {env:?} is not KEY=VALUE",
                spec.name
            )));
        }
    }
    crate::scheduler::constraint::parse_all(spec)
        .map_err(|e| Status::invalid_argument(format!("service {}: {e}", spec.name)))?;
    for port in &spec.ports {
        if port.target_port == 0 || port.target_port > 65535 || port.published_port > 65535 {
            return Err(Status::invalid_argument(format!(
                "service {}: port {}:{} is out of range",
                spec.name, port.published_port, port.target_port
            )));
        }
    }
    Ok(())
}

pub async fn create(raft: &RaftHandle, req: CreateServiceRequest) -> Result<Service, Status> {
    let mut spec = req
        .spec
        .ok_or_else(|| Status::invalid_argument("a service spec is required"))?;
    if spec.mode.is_none() {
        spec.mode = Some(Mode::Replicated(ReplicatedMode { replicas: 1 }));
    }
    validate_spec(&spec)?;
    let now = now_ms();
    let service = Service {
        id: new_id(),
        spec: Some(spec),
        spec_version: 1,
        timestamps: Some(Timestamps {
            created_ms: now,
            updated_ms: now,
        }),
        ..Default::default()
    };
    unwrap(put_one(raft, wrap(service), Expect::Absent, 0).await?)
}

fn cas(version: u64, current: &Service) -> (Expect, u64) {
    if version == 0 {
        (Expect::Version, current.version)
    } else {
        (Expect::Version, version)
    }
}

pub async fn update(raft: &RaftHandle, req: UpdateServiceRequest) -> Result<Service, Status> {
    let current = unwrap(resolve(raft, "service", &req.service)?)?;
    let current_spec = current.spec.clone().unwrap_or_default();
    let (spec, previous) = if req.rollback {
        let previous = current.previous_spec.clone().ok_or_else(|| {
            Status::failed_precondition(format!(
                "service {} has no previous spec to roll back to",
                current_spec.name
            ))
        })?;
        (previous, current_spec)
    } else {
        let spec = req
            .spec
            .ok_or_else(|| Status::invalid_argument("a service spec is required"))?;
        if spec.name != current_spec.name {
            return Err(Status::invalid_argument(format!(
                "a service cannot be renamed ({} to {})",
                current_spec.name, spec.name
            )));
        }
        (spec, current_spec)
    };
    validate_spec(&spec)?;
    let (expect, version) = cas(req.version, &current);
    let updated = Service {
        spec: Some(spec),
        previous_spec: Some(previous),
        spec_version: current.spec_version + 1,
        timestamps: Some(Timestamps {
            created_ms: current.timestamps.map(|t| t.created_ms).unwrap_or_default(),
            updated_ms: now_ms(),
        }),
        ..current
    };
    unwrap(put_one(raft, wrap(updated), expect, version).await?)
}

pub async fn scale(raft: &RaftHandle, req: ScaleServiceRequest) -> Result<Service, Status> {
    let current = unwrap(resolve(raft, "service", &req.service)?)?;
    let mut spec = current.spec.clone().unwrap_or_default();
    match spec.mode {
        Some(Mode::Replicated(ref mut r)) => r.replicas = req.replicas,
        _ => {
            return Err(Status::failed_precondition(format!(
                "service {} is global: it runs one task per node and cannot be scaled",
                spec.name
            )));
        }
    }
    let (expect, version) = cas(0, &current);
    let updated = Service {
        spec: Some(spec),
        spec_version: current.spec_version + 1,
        ..current
    };
    unwrap(put_one(raft, wrap(updated), expect, version).await?)
}

pub async fn get(raft: &RaftHandle, key: &str) -> Result<Service, Status> {
    barrier(raft).await?;
    unwrap(resolve(raft, "service", key)?)
}

pub async fn list(raft: &RaftHandle) -> Result<ListServicesResponse, Status> {
    barrier(raft).await?;
    let services = raft
        .state()
        .list("service")
        .map_err(store_status)?
        .into_iter()
        .map(unwrap)
        .collect::<Result<_, _>>()?;
    Ok(ListServicesResponse { services })
}

pub async fn remove(raft: &RaftHandle, key: &str) -> Result<(), Status> {
    let current = resolve(raft, "service", key)?;
    commit(
        raft,
        vec![delete("service", current.id(), Expect::Present, 0)],
    )
    .await?;
    Ok(())
}

pub async fn list_tasks(
    raft: &RaftHandle,
    req: ListTasksRequest,
) -> Result<ListTasksResponse, Status> {
    barrier(raft).await?;
    let service_id = if req.service.is_empty() {
        None
    } else {
        Some(resolve(raft, "service", &req.service)?.id().to_string())
    };
    let node_id = if req.node.is_empty() {
        None
    } else {
        Some(resolve(raft, "node", &req.node)?.id().to_string())
    };
    let mut tasks: Vec<Task> = Vec::new();
    for object in raft.state().list("task").map_err(store_status)? {
        if let Some(Kind::Task(task)) = object.kind
            && service_id.as_ref().is_none_or(|s| *s == task.service_id)
            && node_id.as_ref().is_none_or(|n| *n == task.node_id)
        {
            tasks.push(task);
        }
    }
    tasks.sort_by(|a, b| (&a.service_name, a.slot, &a.id).cmp(&(&b.service_name, b.slot, &b.id)));
    Ok(ListTasksResponse { tasks })
}
