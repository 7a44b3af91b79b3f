//! One-off tasks (`berth run`): a service of one task, restart condition
//! none, marked `one_off` in its spec, so everything services have (placement,
//! networks, published ports, image pinning, logs) serves one-offs too.
//!
//! This module is the domain side of the `Tasks` API: what a run writes
//! ([`plan_run`]), what removing a task means ([`removal`]), what happens
//! to a stopped task ([`stop_outcome`]). The removal `--rm` asks for is the
//! orchestrator's (`orchestrator/one_off.rs`), a pure function of state.

pub mod names;

use berth_proto::service_history::first_version;
use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object, Op};
use berth_proto::v1::service_spec::Mode;
use berth_proto::v1::{
    Node, Placement, ReplicatedMode, RestartCondition, RestartPolicy, Service, ServiceSpec, Task,
    TaskState, Timestamps,
};

use crate::orchestrator::plan::new_task;
use crate::orchestrator::restart;
use crate::orchestrator::task::{is_terminal, observed};
use crate::scheduler::schedule;
use crate::store::ops::put_task;
use crate::store::{ClusterView, Table, delete, put};

#[derive(Debug, thiserror::Error)]
pub enum OneOffError {
    #[error("no node can run {name} now: {why}")]
    NoNodeFits { name: String, why: String },
    #[error(
        "task {task} belongs to service {service}, not to a one-off: use `berth service scale \
         {service}=N` or `berth service rm {service}`"
    )]
    ServiceTask { task: String, service: String },
    #[error("task {task} ({name}) is {state}: stop it first, or remove it with -f")]
    Running {
        task: String,
        name: String,
        state: String,
    },
}

/// Marks `spec` a one-off: one replica, never restarted, pinned to `node`
/// when given (a constraint on its id, which the scheduler honours).
/// (`auto_remove` stays as asked.)
pub fn one_off_spec(mut spec: ServiceSpec, node: Option<&Node>) -> ServiceSpec {
    spec.one_off = true;
    spec.mode = Some(Mode::Replicated(ReplicatedMode { replicas: 1 }));
    spec.restart_policy = Some(RestartPolicy {
        condition: RestartCondition::None as i32,
        ..restart::DEFAULT_POLICY
    });
    if let Some(node) = node {
        spec.placement
            .get_or_insert_with(Placement::default)
            .constraints
            .push(format!("node.id=={}", node.id));
    }
    spec
}

/// The service and its one task a run writes (both absent before, in one
/// transaction), after checking with the scheduler that some node can take
/// the task now: a run that could only wait is refused, and nothing written.
pub fn plan_run(
    view: &ClusterView,
    spec: ServiceSpec,
    ids: (String, String),
    now_ms: i64,
) -> Result<(Service, Task, Vec<Op>), OneOffError> {
    let (service_id, task_id) = ids;
    let service = Service {
        id: service_id,
        history: vec![first_version(&spec, now_ms)],
        spec: Some(spec),
        spec_version: 1,
        timestamps: Some(Timestamps {
            created_ms: now_ms,
            updated_ms: now_ms,
        }),
        ..Default::default()
    };
    let task = new_task(&service, 1, None, task_id, now_ms);
    let mut tasks = view.tasks.clone();
    tasks.push(task.clone());
    let placed = schedule(&view.nodes, &tasks, now_ms)
        .iter()
        .filter_map(put_task)
        .find(|t| t.id == task.id)
        .cloned();
    if let Some(waiting) = placed.filter(|t| t.node_id.is_empty()) {
        return Err(OneOffError::NoNodeFits {
            name: service
                .spec
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            why: waiting.status.map(|s| s.message).unwrap_or_default(),
        });
    }
    let ops = vec![
        put(wrap_service(service.clone()), Expect::Absent, 0),
        put(
            Object {
                kind: Some(Kind::Task(Box::new(task.clone()))),
            },
            Expect::Absent,
            0,
        ),
    ];
    Ok((service, task, ops))
}

fn wrap_service(service: Service) -> Object {
    Object {
        kind: Some(Kind::Service(Box::new(service))),
    }
}

/// Whether `task` is a one-off's.
pub fn is_one_off(task: &Task) -> bool {
    task.spec.as_ref().is_some_and(|s| s.one_off)
}

/// The operations that remove the one-off of `task`: its service and every
/// task of it, at the versions read. Refused for a real service's task, and
/// for a task that has not ended unless `force` (the caller kills it first;
/// a task still running is then stopped and deleted by the reaper).
pub fn removal(
    task: &Task,
    service: Option<&Service>,
    tasks: &[Task],
    force: bool,
) -> Result<Vec<Op>, OneOffError> {
    if !is_one_off(task) {
        return Err(OneOffError::ServiceTask {
            task: task.id.clone(),
            service: task.service_name.clone(),
        });
    }
    let state = observed(task);
    if !is_terminal(state) && !force {
        return Err(OneOffError::Running {
            task: task.id.clone(),
            name: task.service_name.clone(),
            state: TaskState::try_from(state)
                .map_or("unknown", |s| s.short_name())
                .to_string(),
        });
    }
    let mut ops = Vec::new();
    if let Some(service) = service {
        ops.push(delete(
            Table::Service,
            &service.id,
            Expect::Version,
            service.version,
        ));
    }
    // Finished tasks go with it; one that still runs is stopped by the reaper
    // (its service is gone) and deleted once its agent reports the end.
    for t in tasks
        .iter()
        .filter(|t| t.service_id == task.service_id && is_terminal(observed(t)))
    {
        ops.push(delete(Table::Task, &t.id, Expect::Version, t.version));
    }
    Ok(ops)
}

/// What happens to a task after `berth stop`, in words for the user.
pub fn stop_outcome(task: &Task) -> String {
    if is_one_off(task) {
        return "a one-off: not started again".into();
    }
    let policy = task.spec.as_ref().and_then(|s| s.restart_policy.as_ref());
    let condition = RestartCondition::try_from(policy.map_or(0, |p| p.condition))
        .unwrap_or(RestartCondition::Any);
    let service = &task.service_name;
    match condition {
        RestartCondition::None => {
            format!(
                "service {service} has restart condition none: slot {} stays empty",
                task.slot
            )
        }
        RestartCondition::OnFailure => format!(
            "service {service} (restart condition on-failure) replaces it if it exits non-zero, \
             as Swarm does"
        ),
        RestartCondition::Any => format!(
            "service {service} (restart condition any) replaces it in slot {}, as Swarm does",
            task.slot
        ),
    }
}

#[cfg(test)]
mod tests;
