//! Services and their tasks as stored objects. (Turning services into tasks is
//! the orchestrator's job; these handlers only validate and store.)

use berth_proto::service_history::{Cause, first_version, record, rollback_target};
use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object, Op};
use berth_proto::v1::service_spec::Mode;
use berth_proto::v1::update_status::State as UpdateState;
use berth_proto::v1::{
    CreateServiceRequest, CreateServiceResponse, EndpointMode, ListServicesResponse,
    ListTasksRequest, ListTasksResponse, PublishMode, ReplicatedMode, ScaleServiceRequest, Service,
    ServiceSpec, Task, Timestamps, UpdateServiceRequest, UpdateServiceResponse, seccomp,
};
use tonic::Status;

use super::files::{all_services, resolve_files, unused_registry_auth};
use super::image_pin::{self, Pinner};
use super::status::check_name;
use crate::clock::now_ms;
use crate::ids::new_id;
use crate::raft::RaftHandle;
use crate::store::ObjectExt;
use crate::store::commit::commit_one;
use crate::store::object::protocol_name;
use crate::store::view::resolve;
use crate::store::{Pending, Table, commit, delete, put};

fn wrap(service: Service) -> Object {
    Object {
        kind: Some(Kind::Service(Box::new(service))),
    }
}

fn unwrap(object: Object) -> Result<Service, Status> {
    match object.kind {
        Some(Kind::Service(s)) => Ok(*s),
        _ => Err(Status::internal("the store returned a non-service object")),
    }
}

/// Checks what a user can get wrong in a spec, naming the field.
pub fn validate_spec(spec: &ServiceSpec) -> Result<(), Status> {
    check_name("service", &spec.name)?;
    for alias in &spec.aliases {
        check_name(&format!("service {} alias", spec.name), alias)?;
    }
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
    crate::scheduler::spread::parse_all(spec)
        .map_err(|e| Status::invalid_argument(format!("service {}: {e}", spec.name)))?;
    validate_security(spec)?;
    validate_mounts(spec)?;
    validate_process(spec)?;
    if !spec.stop_signal.is_empty() {
        berth_proto::signals::number(&spec.stop_signal)
            .map_err(|e| Status::invalid_argument(format!("service {}: {e}", spec.name)))?;
    }
    if let Some(check) = &spec.healthcheck {
        super::health_check::validate(check)
            .map_err(|e| Status::invalid_argument(format!("service {}: {e}", spec.name)))?;
    }
    let mut published = std::collections::BTreeSet::new();
    for port in &spec.ports {
        if port.target_port == 0
            || port.target_port > 65535
            || port.published_port == 0
            || port.published_port > 65535
        {
            return Err(Status::invalid_argument(format!(
                "service {}: port {}:{} is out of range (1-65535)",
                spec.name, port.published_port, port.target_port
            )));
        }
        if spec.endpoint_mode == EndpointMode::Dnsrr as i32
            && port.publish_mode != PublishMode::Host as i32
        {
            return Err(Status::invalid_argument(format!(
                "service {}: port {}: a dnsrr service publishes only in mode=host \
                 (ingress needs a VIP)",
                spec.name, port.published_port
            )));
        }
        if !published.insert((port.published_port, port.protocol)) {
            return Err(Status::invalid_argument(format!(
                "service {}: port {}/{} is published twice",
                spec.name,
                port.published_port,
                protocol_name(port.protocol)
            )));
        }
    }
    Ok(())
}

/// Ulimits (known names, soft <= hard, once each), container labels (a
/// key each) and the endpoint mode (one berth knows).
fn validate_process(spec: &ServiceSpec) -> Result<(), Status> {
    let bad = |what: String| Status::invalid_argument(format!("service {}: {what}", spec.name));
    berth_proto::ulimits::check_all(&spec.ulimits).map_err(|e| bad(e.to_string()))?;
    if spec.container_labels.keys().any(|k| k.trim().is_empty()) {
        return Err(bad("a container label has an empty key".into()));
    }
    if EndpointMode::try_from(spec.endpoint_mode).is_err() {
        return Err(bad(format!(
            "endpoint mode {} is unknown (vip or dnsrr)",
            spec.endpoint_mode
        )));
    }
    Ok(())
}

/// Mounts: targets, sources, volume names, tmpfs options (`mounts.rs`); a
/// named volume lives on one node, so a global service (a task on every node)
/// cannot mount one.
fn validate_mounts(spec: &ServiceSpec) -> Result<(), Status> {
    let bad = |what: String| Status::invalid_argument(format!("service {}: {what}", spec.name));
    berth_proto::mounts::check_mounts(&spec.mounts).map_err(|e| bad(e.to_string()))?;
    if matches!(spec.mode, Some(Mode::Global(_)))
        && let Some(name) = berth_proto::mounts::volume_names(spec).into_iter().next()
    {
        return Err(bad(format!(
            "volume {name}: a named local volume lives on one node, and a global service runs \
             on every node (use a bind mount, or a replicated service)"
        )));
    }
    Ok(())
}

/// Capability names and the seccomp choice (the agent builds the container's
/// sets and profile from them, so a bad name must never get that far).
fn validate_security(spec: &ServiceSpec) -> Result<(), Status> {
    let bad = |what: String| Status::invalid_argument(format!("service {}: {what}", spec.name));
    berth_proto::capabilities::validate(&spec.cap_add, &spec.cap_drop)
        .map_err(|e| bad(e.to_string()))?;
    let seccomp = spec.seccomp.clone().unwrap_or_default();
    match seccomp::Mode::try_from(seccomp.mode) {
        Ok(seccomp::Mode::Custom) => {
            // The agent parses the profile itself; here only its outline.
            let value: serde_json::Value = serde_json::from_str(&seccomp.profile_json)
                .map_err(|e| bad(format!("seccomp profile is not JSON: {e}")))?;
            if !value.is_object() {
                return Err(bad("seccomp profile is not a JSON object".into()));
            }
        }
        Ok(_) if !seccomp.profile_json.is_empty() => {
            return Err(bad(
                "a seccomp profile is given but the seccomp mode is not custom".into(),
            ));
        }
        Ok(_) => {}
        Err(_) => return Err(bad(format!("seccomp mode {} is unknown", seccomp.mode))),
    }
    Ok(())
}

/// [`check_port_conflicts`] against the stored services, read only when
/// `spec` publishes a port: every create read the whole service table before,
/// which made creating N services one after another quadratic (at 1,000
/// services ~46 MB of decoded services per create on the leader).
pub(super) fn check_stored_port_conflicts(
    raft: &RaftHandle,
    spec: &ServiceSpec,
    own_id: &str,
) -> Result<(), Status> {
    if spec.ports.is_empty() {
        return Ok(());
    }
    check_port_conflicts(&all_services(raft)?, spec, own_id)
}

/// A published port answers on every node (ingress) or on the nodes of its
/// tasks (host): either way one service per port and protocol. `services`:
/// the stored ones, or as a stack deploy leaves them.
pub(super) fn check_port_conflicts(
    services: &[Service],
    spec: &ServiceSpec,
    own_id: &str,
) -> Result<(), Status> {
    if spec.ports.is_empty() {
        return Ok(());
    }
    for other in services {
        if other.id == own_id {
            continue;
        }
        let Some(other_spec) = other.spec.as_ref() else {
            continue;
        };
        for port in &spec.ports {
            let taken = other_spec
                .ports
                .iter()
                .any(|p| p.published_port == port.published_port && p.protocol == port.protocol);
            if taken {
                return Err(Status::already_exists(format!(
                    "service {}: port {}/{} is already published by service {}",
                    spec.name,
                    port.published_port,
                    protocol_name(port.protocol),
                    other_spec.name
                )));
            }
        }
    }
    Ok(())
}

/// A spec as it is written: checked, and its secrets, configs and registry
/// credentials resolved against `store` (the store, or the store as a stack
/// deploy will leave it). Shared by create, update and `stack deploy`.
pub(super) fn checked_spec(store: &Pending, mut spec: ServiceSpec) -> Result<ServiceSpec, Status> {
    validate_spec(&spec)?;
    resolve_files(store, &mut spec)?;
    Ok(spec)
}

/// A spec as a new service gets it: replicated with one task unless it says
/// otherwise, and never a one-off.
pub(super) fn new_service_defaults(spec: &mut ServiceSpec) -> Result<(), Status> {
    if spec.mode.is_none() {
        spec.mode = Some(Mode::Replicated(ReplicatedMode { replicas: 1 }));
    }
    if spec.one_off || spec.auto_remove {
        return Err(Status::invalid_argument(format!(
            "service {}: one-offs are made by `berth run`",
            spec.name
        )));
    }
    Ok(())
}

/// A new service (version 1 of its history) of a checked, pinned spec.
pub(super) fn new_service(spec: ServiceSpec, now: i64) -> Service {
    Service {
        id: new_id(),
        history: vec![first_version(&spec, now)],
        spec: Some(spec),
        spec_version: 1,
        timestamps: Some(Timestamps {
            created_ms: now,
            updated_ms: now,
        }),
        ..Default::default()
    }
}

/// Writes `spec` as the next version of `service` (history, previous spec,
/// and a rollout when it replaces tasks: `UpdateStatus`), and returns what
/// to commit with its put: the removal of registry credentials made for it
/// that no spec uses any more.
pub(super) fn new_version(
    raft: &RaftHandle,
    service: &mut Service,
    spec: ServiceSpec,
    cause: Cause,
    message: &str,
) -> Result<Vec<Op>, Status> {
    let current_spec = service.spec.clone().unwrap_or_default();
    let unused = unused_registry_auth(raft, service, &[&spec, &current_spec])?;
    let now = now_ms();
    record(service, spec, cause, now, message);
    if let Some(t) = service.timestamps.as_mut() {
        t.updated_ms = now;
    }
    Ok(unused)
}

pub async fn create(
    raft: &RaftHandle,
    pinner: &Pinner,
    req: CreateServiceRequest,
) -> Result<CreateServiceResponse, Status> {
    let mut spec = req
        .spec
        .ok_or_else(|| Status::invalid_argument("a service spec is required"))?;
    new_service_defaults(&mut spec)?;
    let mut spec = checked_spec(&Pending::new(raft.state()), spec)?;
    check_stored_port_conflicts(raft, &spec, "")?;
    let lookup = pinner.look_up(raft, &spec, req.no_resolve_image).await?;
    let warnings = image_pin::apply(lookup, &mut spec, None);
    let service = new_service(spec, now_ms());
    let service = unwrap(commit_one(raft, put(wrap(service), Expect::Absent, 0)).await?)?;
    Ok(CreateServiceResponse {
        service: Some(service),
        warnings,
    })
}

fn cas(version: u64, current: &Service) -> (Expect, u64) {
    if version == 0 {
        (Expect::Version, current.version)
    } else {
        (Expect::Version, version)
    }
}

pub async fn update(
    raft: &RaftHandle,
    pinner: &Pinner,
    req: UpdateServiceRequest,
) -> Result<UpdateServiceResponse, Status> {
    // The spec asked for is checked and its files resolved once, then the
    // registry is asked (with the credentials' secret), all before the
    // service is read for the write: the lookup can take seconds, and the
    // compare-and-set should not span them. (A rollback goes back to what a
    // version ran, digest and all.)
    let asked = match (req.spec, req.rollback) {
        (Some(spec), false) => {
            let spec = checked_spec(&Pending::new(raft.state()), spec)?;
            let lookup = pinner.look_up(raft, &spec, req.no_resolve_image).await?;
            Some((spec, lookup))
        }
        _ => None,
    };
    let mut service = unwrap(resolve(raft.state(), Table::Service, &req.service)?)?;
    refuse_one_off(&service, "updated")?;
    let current_spec = service.spec.clone().unwrap_or_default();
    let (mut spec, lookup, cause, message) = if req.rollback {
        let target = rollback_target(&service, req.rollback_to_version)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let message = format!(
            "rollback to version {} requested by the user",
            target.version
        );
        let restores = target.version;
        // Checked again, and its files resolved again (a secret may have
        // been made anew since that version).
        let mut spec = checked_spec(
            &Pending::new(raft.state()),
            target.spec.clone().unwrap_or_default(),
        )?;
        // The replica count is the user's current choice, not history's
        // (as Swarm: a rollback does not undo a scale).
        if let (Some(Mode::Replicated(now)), Some(Mode::Replicated(then))) =
            (current_spec.mode.as_ref(), spec.mode.as_mut())
        {
            then.replicas = now.replicas;
        }
        (spec, None, Cause::Rollback { restores }, message)
    } else {
        let (spec, lookup) =
            asked.ok_or_else(|| Status::invalid_argument("a service spec is required"))?;
        if spec.name != current_spec.name {
            return Err(Status::invalid_argument(format!(
                "a service cannot be renamed ({} to {})",
                current_spec.name, spec.name
            )));
        }
        let message = format!("update to version {}", service.spec_version + 1);
        (spec, Some(lookup), Cause::Update, message)
    };
    check_stored_port_conflicts(raft, &spec, &service.id)?;
    let warnings = match lookup {
        Some(lookup) => image_pin::apply(lookup, &mut spec, Some(&current_spec)),
        None => Vec::new(),
    };
    let (expect, version) = cas(req.version, &service);
    let unused = new_version(raft, &mut service, spec, cause, &message)?;
    let mut ops = vec![put(wrap(service), expect, version)];
    ops.extend(unused);
    let written = commit(raft, ops).await?.objects.into_iter().next();
    let service = unwrap(written.ok_or_else(|| Status::internal("the store returned no object"))?)?;
    Ok(UpdateServiceResponse {
        service: Some(service),
        warnings,
    })
}

/// Continues a rollout paused for its canaries (`service promote`).
pub async fn promote(raft: &RaftHandle, key: &str) -> Result<Service, Status> {
    let mut service = unwrap(resolve(raft.state(), Table::Service, key)?)?;
    let name = service
        .spec
        .as_ref()
        .map(|s| s.name.clone())
        .unwrap_or_default();
    let status = service
        .update_status
        .as_mut()
        .filter(|s| s.awaiting_promotion)
        .ok_or_else(|| {
            Status::failed_precondition(format!(
                "service {name} has no rollout waiting for promotion"
            ))
        })?;
    let now = now_ms();
    status.awaiting_promotion = false;
    status.promoted = true;
    status.state = if status.state == UpdateState::RollbackPaused as i32 {
        UpdateState::RollbackStarted as i32
    } else {
        UpdateState::Updating as i32
    };
    status.progress_ms = now;
    status.message = format!(
        "promoted by the user: updating the remaining tasks to version {}",
        status.to_version
    );
    let (expect, version) = cas(0, &service);
    unwrap(commit_one(raft, put(wrap(service), expect, version)).await?)
}

pub async fn scale(raft: &RaftHandle, req: ScaleServiceRequest) -> Result<Service, Status> {
    let current = unwrap(resolve(raft.state(), Table::Service, &req.service)?)?;
    refuse_one_off(&current, "scaled")?;
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
    let mut updated = current;
    record(
        &mut updated,
        spec,
        Cause::Update,
        now_ms(),
        &format!("scaled to {}", req.replicas),
    );
    unwrap(commit_one(raft, put(wrap(updated), expect, version)).await?)
}

pub async fn get(raft: &RaftHandle, key: &str) -> Result<Service, Status> {
    raft.read_barrier().await?;
    unwrap(resolve(raft.state(), Table::Service, key)?)
}

/// The services, without one-offs (`berth run`'s: `berth ps` shows them).
pub async fn list(raft: &RaftHandle) -> Result<ListServicesResponse, Status> {
    raft.read_barrier().await?;
    let services = raft
        .state()
        .list(Table::Service)?
        .into_iter()
        .map(unwrap)
        .filter(|s| !s.as_ref().is_ok_and(is_one_off))
        .collect::<Result<_, _>>()?;
    Ok(ListServicesResponse { services })
}

fn is_one_off(service: &Service) -> bool {
    service.spec.as_ref().is_some_and(|s| s.one_off)
}

/// A one-off is run, stopped and removed as a task, never changed as a service.
fn refuse_one_off(service: &Service, what: &str) -> Result<(), Status> {
    if is_one_off(service) {
        let name = service.spec.as_ref().map_or("", |s| s.name.as_str());
        return Err(Status::failed_precondition(format!(
            "{name} is a one-off task (berth run): it cannot be {what}; `berth rm {name}` \
             removes it"
        )));
    }
    Ok(())
}

/// Removes the service, and with it the registry-auth secret made for it
/// (in the same transaction).
pub async fn remove(raft: &RaftHandle, key: &str) -> Result<(), Status> {
    let current = unwrap(resolve(raft.state(), Table::Service, key)?)?;
    let mut ops = vec![delete(Table::Service, &current.id, Expect::Present, 0)];
    ops.extend(unused_registry_auth(raft, &current, &[])?);
    commit(raft, ops).await?;
    Ok(())
}

pub async fn list_tasks(
    raft: &RaftHandle,
    req: ListTasksRequest,
) -> Result<ListTasksResponse, Status> {
    raft.read_barrier().await?;
    let service_id = if req.service.is_empty() {
        None
    } else {
        Some(
            resolve(raft.state(), Table::Service, &req.service)?
                .id()
                .to_string(),
        )
    };
    let node_id = if req.node.is_empty() {
        None
    } else {
        Some(
            resolve(raft.state(), Table::Node, &req.node)?
                .id()
                .to_string(),
        )
    };
    let mut tasks: Vec<Task> = Vec::new();
    for object in raft.state().list(Table::Task)? {
        if let Some(Kind::Task(task)) = object.kind
            && service_id.as_ref().is_none_or(|s| *s == task.service_id)
            && node_id.as_ref().is_none_or(|n| *n == task.node_id)
        {
            tasks.push(*task);
        }
    }
    tasks.sort_by(|a, b| (&a.service_name, a.slot, &a.id).cmp(&(&b.service_name, b.slot, &b.id)));
    Ok(ListTasksResponse { tasks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{PortConfig, PortProtocol};

    fn spec(name: &str, ports: &[(u32, u32, PortProtocol)]) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            image: "busybox".into(),
            ports: ports
                .iter()
                .map(|&(published, target, protocol)| PortConfig {
                    published_port: published,
                    target_port: target,
                    protocol: protocol as i32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn create_req(spec: ServiceSpec) -> CreateServiceRequest {
        CreateServiceRequest {
            spec: Some(spec),
            // Never asks docker.io for busybox.
            no_resolve_image: true,
        }
    }

    /// A leader and a pinner (with the leader's data dir's key).
    async fn leader(dir: &std::path::Path) -> (RaftHandle, Pinner) {
        let raft = crate::server::test_leader(dir).await;
        let keys = crate::keyring::Keyring::create(dir).expect("keys");
        (raft, super::image_pin::pinner(&keys))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_published_port_belongs_to_one_service() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (raft, pinner) = leader(dir.path()).await;
        let tcp = PortProtocol::Tcp;
        create(&raft, &pinner, create_req(spec("web", &[(8080, 80, tcp)])))
            .await
            .expect("web");
        let err = create(&raft, &pinner, create_req(spec("api", &[(8080, 81, tcp)])))
            .await
            .expect_err("taken");
        assert_eq!(err.code(), tonic::Code::AlreadyExists);
        assert!(
            err.message()
                .contains("8080/tcp is already published by service web"),
            "{}",
            err.message()
        );
        // The same number over UDP is another port.
        create(
            &raft,
            &pinner,
            create_req(spec("dns", &[(8080, 53, PortProtocol::Udp)])),
        )
        .await
        .expect("udp 8080");
        let err = create(
            &raft,
            &pinner,
            create_req(spec("twice", &[(9000, 1, tcp), (9000, 2, tcp)])),
        )
        .await
        .expect_err("twice");
        assert!(
            err.message().contains("published twice"),
            "{}",
            err.message()
        );
        let err = create(&raft, &pinner, create_req(spec("zero", &[(0, 80, tcp)])))
            .await
            .expect_err("zero");
        assert!(err.message().contains("out of range"), "{}", err.message());
        // Updating web itself keeps its own port.
        let update = UpdateServiceRequest {
            service: "web".into(),
            spec: Some(spec("web", &[(8080, 8080, tcp)])),
            no_resolve_image: true,
            ..Default::default()
        };
        super::update(&raft, &pinner, update)
            .await
            .expect("own port");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_capabilities_and_seccomp_choices_are_refused_and_nothing_is_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (raft, pinner) = leader(dir.path()).await;
        let mut bad_cap = spec("caps", &[]);
        bad_cap.cap_add = vec!["NET_ADMIN".into(), "CAP_TELEPORT".into()];
        let err = create(&raft, &pinner, create_req(bad_cap))
            .await
            .expect_err("unknown capability");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message()
                .contains("service caps: unknown capability \"CAP_TELEPORT\" in cap_add"),
            "{}",
            err.message()
        );
        let mut bad_drop = spec("caps", &[]);
        bad_drop.cap_drop = vec!["chownn".into()];
        let err = create(&raft, &pinner, create_req(bad_drop))
            .await
            .expect_err("unknown capability");
        assert!(
            err.message().contains("\"chownn\" in cap_drop"),
            "{}",
            err.message()
        );
        let mut bad_profile = spec("caps", &[]);
        bad_profile.seccomp = Some(berth_proto::v1::Seccomp {
            mode: seccomp::Mode::Custom as i32,
            profile_json: "{not json".into(),
        });
        let err = create(&raft, &pinner, create_req(bad_profile))
            .await
            .expect_err("bad profile");
        assert!(
            err.message().contains("seccomp profile is not JSON"),
            "{}",
            err.message()
        );
        let err = get(&raft, "caps").await.expect_err("nothing was created");
        assert_eq!(err.code(), tonic::Code::NotFound, "{}", err.message());
        // Good names in any spelling, ALL, and unconfined are taken.
        let mut good = spec("caps", &[]);
        good.cap_add = vec!["sys_admin".into(), "CAP_NET_ADMIN".into()];
        good.cap_drop = vec!["ALL".into()];
        good.read_only_rootfs = true;
        good.seccomp = Some(berth_proto::v1::Seccomp {
            mode: seccomp::Mode::Unconfined as i32,
            profile_json: String::new(),
        });
        create(&raft, &pinner, create_req(good))
            .await
            .expect("good spec");
    }

    #[test]
    fn compose_settings_are_checked_naming_the_bad_one() {
        use berth_proto::v1::{Placement, PlacementPreference, Ulimit};
        let refused = |spec: ServiceSpec| {
            validate_spec(&spec)
                .expect_err("refused")
                .message()
                .to_string()
        };
        let mut limits = spec("web", &[]);
        limits.ulimits = vec![Ulimit {
            name: "nofile".into(),
            soft: 2048,
            hard: 1024,
        }];
        assert_eq!(
            refused(limits.clone()),
            "service web: ulimit nofile: the soft limit 2048 is above the hard limit 1024"
        );
        limits.ulimits[0].name = "files".into();
        assert!(refused(limits.clone()).starts_with("service web: ulimit files: unknown name"));
        limits.ulimits[0] = Ulimit {
            name: "nofile".into(),
            soft: 123,
            hard: 456,
        };
        validate_spec(&limits).expect("good ulimits");

        let mut rr = spec("db", &[(80, 80, PortProtocol::Tcp)]);
        rr.endpoint_mode = EndpointMode::Dnsrr as i32;
        assert_eq!(
            refused(rr.clone()),
            "service db: port 80: a dnsrr service publishes only in mode=host (ingress needs a VIP)"
        );
        rr.ports[0].publish_mode = PublishMode::Host as i32;
        validate_spec(&rr).expect("dnsrr publishing in host mode");
        rr.endpoint_mode = 7;
        assert_eq!(
            refused(rr),
            "service db: endpoint mode 7 is unknown (vip or dnsrr)"
        );

        let mut spread = spec("web", &[]);
        spread.placement = Some(Placement {
            preferences: vec![PlacementPreference {
                spread: "zone".into(),
            }],
            ..Default::default()
        });
        assert_eq!(
            refused(spread),
            "service web: placement preference spread=\"zone\" is not node.labels.LABEL"
        );
        let mut labelled = spec("web", &[]);
        labelled.container_labels = [(" ".to_string(), "x".to_string())].into();
        assert_eq!(
            refused(labelled),
            "service web: a container label has an empty key"
        );
    }

    #[test]
    fn an_unknown_stop_signal_is_refused_by_name() {
        let mut bad = spec("stopper", &[]);
        bad.stop_signal = "SIGNOPE".into();
        let err = validate_spec(&bad).expect_err("an unknown signal");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message()
                .contains("service stopper: unknown stop signal \"SIGNOPE\""),
            "{}",
            err.message()
        );
        for good in ["SIGTERM", "TERM", "SIGQUIT", "9", ""] {
            let mut spec = spec("stopper", &[]);
            spec.stop_signal = good.into();
            validate_spec(&spec).unwrap_or_else(|e| panic!("{good}: {}", e.message()));
        }
    }

    #[test]
    fn bad_mounts_are_refused_naming_the_mount() {
        use berth_proto::v1::{GlobalMode, Mount, mount::Kind};
        let with = |mounts: Vec<Mount>| ServiceSpec {
            mounts,
            ..spec("db", &[])
        };
        let volume = |source: &str, target: &str| Mount {
            kind: Kind::Volume as i32,
            source: source.into(),
            target: target.into(),
            ..Default::default()
        };
        for (mounts, says) in [
            (
                vec![volume("a..b", "/data")],
                "service db: mount type=volume,source=a..b,target=/data: volume name \"a..b\" must not contain '..'",
            ),
            (
                vec![volume("data", "data")],
                "service db: mount type=volume,source=data,target=data: the target must be an absolute path",
            ),
            (
                vec![volume("data", "/x/../y")],
                "service db: mount type=volume,source=data,target=/x/../y: the target must not contain '..'",
            ),
            (
                vec![volume("a", "/d"), volume("b", "/d")],
                "service db: mount type=volume,source=b,target=/d: target /d is already mounted by type=volume,source=a,target=/d",
            ),
        ] {
            let err = validate_spec(&with(mounts)).expect_err(says);
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert_eq!(err.message(), says);
        }
        let mut global = with(vec![volume("data", "/data")]);
        global.mode = Some(Mode::Global(GlobalMode {}));
        let err = validate_spec(&global).expect_err("global with a volume");
        assert!(
            err.message()
                .contains("a global service runs on every node"),
            "{}",
            err.message()
        );
        validate_spec(&with(vec![volume("data", "/data")])).expect("a good volume mount");
    }
}
