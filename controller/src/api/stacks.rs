//! The `Stacks` service (`stack deploy`, `stack diff`, `stack ls`, `stack
//! rm`). A deploy validates everything, plans the whole difference and
//! writes it in one transaction (compare-and-set on every version read;
//! read again and planned again on a conflict); a dry run runs the same
//! planning and writes nothing. Services are resolved exactly as `service
//! create` and `service update` resolve them (`services.rs`, `files.rs`,
//! `image_pin.rs`); the rest of the domain is in `crate::stacks`.

use std::collections::{BTreeSet, HashMap};

use berth_proto::service_history::Cause;
use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object, Op};
use berth_proto::v1::stacks_server::Stacks;
use berth_proto::v1::{
    DeployStackRequest, DeployStackResponse, ListStacksRequest, ListStacksResponse,
    RemoveStackRequest, RemoveStackResponse, Service, ServiceSpec, StackAction, StackChange,
    StackObjectKind, StackSpec,
};
use tonic::{Request, Response, Status};

use super::files::{roll_users, unused_registry_auth};
use super::image_pin::{self, Lookup, PinSettings, Pinner};
use super::services::{
    check_port_conflicts, checked_spec, new_service, new_service_defaults, new_version,
};
use crate::allocator::new_network::NetworkError;
use crate::clock::now_ms;
use crate::keyring::Keyring;
use crate::raft::RaftHandle;
use crate::stacks::removal::{self, Removal};
use crate::stacks::{Current, StackError, change, diff, objects, ownership};
use crate::store::ops::target;
use crate::store::{Pending, commit, put};

/// Tries of a deploy or removal whose objects keep changing under it.
const ATTEMPTS: u32 = 5;

pub struct StacksApi {
    raft: RaftHandle,
    /// Opens a stack secret's stored value to compare, seals a new one.
    keys: Keyring,
    /// Pins services' images as `service create` does.
    pinner: Pinner,
}

impl StacksApi {
    pub fn new(raft: RaftHandle, keys: Keyring, pins: PinSettings) -> StacksApi {
        StacksApi {
            raft,
            pinner: Pinner::new(pins, keys.clone()),
            keys,
        }
    }
}

#[tonic::async_trait]
impl Stacks for StacksApi {
    async fn deploy(
        &self,
        r: Request<DeployStackRequest>,
    ) -> Result<Response<DeployStackResponse>, Status> {
        let reply = deploy(&self.raft, &self.keys, &self.pinner, r.into_inner()).await?;
        Ok(Response::new(reply))
    }

    async fn list(
        &self,
        _: Request<ListStacksRequest>,
    ) -> Result<Response<ListStacksResponse>, Status> {
        Ok(Response::new(list(&self.raft).await?))
    }

    async fn remove(
        &self,
        r: Request<RemoveStackRequest>,
    ) -> Result<Response<RemoveStackResponse>, Status> {
        Ok(Response::new(
            remove(&self.raft, &r.into_inner().name).await?,
        ))
    }
}

impl From<StackError> for Status {
    fn from(err: StackError) -> Status {
        let message = err.to_string();
        match err {
            StackError::Invalid { .. } | StackError::NetworkChange { .. } => {
                Status::invalid_argument(message)
            }
            StackError::Network { source, .. } => match source {
                NetworkError::BadSubnet(_) | NetworkError::PrefixLength(_) => {
                    Status::invalid_argument(message)
                }
                NetworkError::Overlap { .. } => Status::already_exists(message),
                NetworkError::Exhausted(_) => Status::resource_exhausted(message),
            },
            StackError::Foreign { .. } => Status::already_exists(message),
            StackError::MissingExternal { .. } | StackError::InUse { .. } => {
                Status::failed_precondition(message)
            }
            StackError::NotFound(_) => Status::not_found(message),
            StackError::Keyring { .. } | StackError::Store(_) => Status::internal(message),
        }
    }
}

/// `stack deploy` and, with `dry_run`, `stack diff`.
pub async fn deploy(
    raft: &RaftHandle,
    keys: &Keyring,
    pinner: &Pinner,
    req: DeployStackRequest,
) -> Result<DeployStackResponse, Status> {
    let stack = req
        .stack
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("a stack spec is required"))?;
    // The plan starts from everything committed before the request.
    raft.read_barrier().await?;
    let mut lookups = Lookups::default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let plan = plan(raft, keys, pinner, stack, &req, &mut lookups).await?;
        if req.dry_run || plan.ops.is_empty() {
            return Ok(plan.answer(0));
        }
        match commit(raft, plan.ops.clone()).await {
            Ok(result) => return Ok(plan.answer(result.revision)),
            Err(err) if err.is_conflict() && attempt < ATTEMPTS => continue,
            Err(err) => return Err(err.into()),
        }
    }
}

/// What a deploy writes and answers.
struct DeployPlan {
    changes: Vec<StackChange>,
    ops: Vec<Op>,
    warnings: Vec<String>,
}

impl DeployPlan {
    fn answer(self, revision: u64) -> DeployStackResponse {
        DeployStackResponse {
            changes: self.changes,
            warnings: self.warnings,
            revision,
        }
    }
}

/// The whole difference between `stack` and the store, as operations in
/// the order they apply: pruned services (their names and ports free up),
/// networks, volumes, configs, secrets, updated services, services rolled
/// for a changed config or secret, new services, then the pruned networks,
/// configs and secrets.
async fn plan(
    raft: &RaftHandle,
    keys: &Keyring,
    pinner: &Pinner,
    stack: &StackSpec,
    req: &DeployStackRequest,
    lookups: &mut Lookups,
) -> Result<DeployPlan, Status> {
    let sm = raft.state();
    let current = Current::read(sm)?;
    ownership::check(stack, &current)?;
    let objects = objects::plan(stack, &current, keys, now_ms())?;
    let mut pending = Pending::new(sm);
    for object in &objects.writes {
        pending.write(object.clone());
    }
    let removals = if req.prune {
        removal::pruned(&current, stack)
    } else {
        Vec::new()
    };

    let mut warnings = Vec::new();
    let mut lines = Vec::new();
    let (mut updates, mut creates, mut after_ops) = (Vec::new(), Vec::new(), Vec::new());
    // The stack's services as they will be.
    let mut planned: Vec<Service> = Vec::new();
    for desired in &stack.services {
        let old = current.service(&desired.name);
        let old_spec = old.and_then(|s| s.spec.as_ref());
        let resolved = resolve_service(
            raft,
            pinner,
            &pending,
            desired.clone(),
            old_spec,
            req.no_resolve_image,
            lookups,
        )
        .await?;
        warnings.extend(resolved.1);
        let spec = resolved.0;
        let name = spec.name.clone();
        let line = |action, fields| change(StackObjectKind::Service, &name, action, fields);
        match old {
            Some(old) if old_spec == Some(&spec) => {
                lines.push(line(StackAction::Unchanged, Vec::new()));
                planned.push(old.clone());
            }
            Some(old) => {
                let fields =
                    diff::service_fields(old_spec.unwrap_or(&ServiceSpec::default()), &spec);
                let mut service = old.clone();
                let message = format!(
                    "update to version {}: stack {} deployed",
                    old.spec_version + 1,
                    stack.name
                );
                after_ops.extend(new_version(
                    raft,
                    &mut service,
                    spec,
                    Cause::Update,
                    &message,
                )?);
                updates.push(put(wrap(service.clone()), Expect::Version, old.version));
                lines.push(line(StackAction::Update, fields));
                planned.push(service);
            }
            None => {
                let service = new_service(spec, now_ms());
                creates.push(put(wrap(service.clone()), Expect::Absent, 0));
                lines.push(line(StackAction::Create, Vec::new()));
                planned.push(service);
            }
        }
    }

    // Services outside the file that mount a changed config or secret roll
    // too (the file's own got the new digest when resolved: one version).
    let mut skip: BTreeSet<String> = planned.iter().map(|s| s.id.clone()).collect();
    skip.extend(
        removals
            .iter()
            .filter(|r| r.kind == StackObjectKind::Service)
            .map(|r| r.id.clone()),
    );
    let rolls = roll_users(&current.services, &objects.changed, &skip);

    // Ports and removals are checked against the services as they will be.
    let mut after: Vec<Service> = current
        .services
        .iter()
        .filter(|s| !skip.contains(&s.id))
        .cloned()
        .collect();
    after.extend(planned.iter().cloned());
    for service in &planned {
        if let Some(spec) = &service.spec {
            check_port_conflicts(&after, spec, &service.id)?;
        }
    }
    let remaining: Vec<&ServiceSpec> = after.iter().filter_map(|s| s.spec.as_ref()).collect();
    removal::refuse_if_used(&stack.name, &removals, &remaining)?;

    let (removed_services, removed_rest): (Vec<&Removal>, Vec<&Removal>) = removals
        .iter()
        .partition(|r| r.kind == StackObjectKind::Service);
    let mut ops: Vec<Op> = removed_services.iter().map(|r| r.op()).collect();
    for r in &removed_services {
        if let Some(service) = current.services.iter().find(|s| s.id == r.id) {
            after_ops.extend(unused_registry_auth(raft, service, &[])?);
        }
    }
    ops.extend(objects.ops);
    ops.extend(updates);
    ops.extend(rolls);
    ops.extend(creates);
    ops.extend(removed_rest.iter().map(|r| r.op()));
    ops.extend(after_ops);
    let mut changes = objects.changes;
    changes.extend(lines);
    changes.extend(removals.iter().map(Removal::change));
    Ok(DeployPlan {
        changes,
        ops: without_repeats(ops),
        warnings,
    })
}

/// The spec a stack service is written with, resolved as `service create`
/// (or, for an existing one, `service update`) resolves it, and what the
/// user should know about its image.
async fn resolve_service(
    raft: &RaftHandle,
    pinner: &Pinner,
    pending: &Pending<'_>,
    mut spec: ServiceSpec,
    current: Option<&ServiceSpec>,
    no_resolve_image: bool,
    lookups: &mut Lookups,
) -> Result<(ServiceSpec, Vec<String>), Status> {
    new_service_defaults(&mut spec)?;
    if let Some(current) = current {
        // Set only by imperative commands (`update --force`,
        // `--with-registry-auth`): kept, never counted as a change.
        spec.force_update = current.force_update;
        if spec.registry_auth.is_none() {
            spec.registry_auth = current.registry_auth.clone();
        }
    }
    let mut spec = checked_spec(pending, spec)?;
    let warnings = match current {
        // Not asked: the image as written is unchanged, so is what it runs.
        Some(current) if no_resolve_image && current.image == spec.image => {
            spec.image_digest = current.image_digest.clone();
            Vec::new()
        }
        // A tag counts as changed only when it names another digest now; a
        // registry that cannot be asked keeps the current pin (and warns).
        _ => {
            let lookup = lookups.get(raft, pinner, &spec, no_resolve_image).await?;
            image_pin::apply(lookup, &mut spec, current)
        }
    };
    Ok((spec, warnings))
}

/// Registry answers of one deploy, by image and credentials (a retried
/// plan, and services sharing an image, ask once).
#[derive(Default)]
struct Lookups(HashMap<(String, String), Lookup>);

impl Lookups {
    async fn get(
        &mut self,
        raft: &RaftHandle,
        pinner: &Pinner,
        spec: &ServiceSpec,
        skip: bool,
    ) -> Result<Lookup, Status> {
        if skip {
            return Ok(Lookup::Skipped);
        }
        let credentials = spec.registry_auth.as_ref().map(|r| r.secret_id.clone());
        let key = (spec.image.clone(), credentials.unwrap_or_default());
        if let Some(lookup) = self.0.get(&key) {
            return Ok(lookup.clone());
        }
        let lookup = pinner.look_up(raft, spec, false).await?;
        self.0.insert(key, lookup.clone());
        Ok(lookup)
    }
}

fn wrap(service: Service) -> Object {
    Object {
        kind: Some(Kind::Service(Box::new(service))),
    }
}

/// The first operation on each object (a registry-auth secret may be
/// dropped by two removed services).
fn without_repeats(ops: Vec<Op>) -> Vec<Op> {
    let mut seen = BTreeSet::new();
    ops.into_iter()
        .filter(|op| match target(op) {
            Some((table, id)) => seen.insert((table, id.to_string())),
            None => true,
        })
        .collect()
}

/// `stack ls`.
pub async fn list(raft: &RaftHandle) -> Result<ListStacksResponse, Status> {
    raft.read_barrier().await?;
    let current = Current::read(raft.state())?;
    Ok(ListStacksResponse {
        stacks: removal::summaries(&current),
    })
}

/// `stack rm`: every object labelled with the stack, services first, in one
/// transaction; volumes stay.
pub async fn remove(raft: &RaftHandle, name: &str) -> Result<RemoveStackResponse, Status> {
    if name.is_empty() {
        return Err(Status::invalid_argument("a stack name is required"));
    }
    raft.read_barrier().await?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = Current::read(raft.state())?;
        let removals = removal::owned(&current, name);
        if removals.is_empty() {
            return Err(StackError::NotFound(name.to_string()).into());
        }
        let removed: BTreeSet<&str> = removals.iter().map(|r| r.id.as_str()).collect();
        let remaining: Vec<&ServiceSpec> = current
            .services
            .iter()
            .filter(|s| !removed.contains(s.id.as_str()))
            .filter_map(|s| s.spec.as_ref())
            .collect();
        removal::refuse_if_used(name, &removals, &remaining)?;
        let mut ops: Vec<Op> = removals.iter().map(Removal::op).collect();
        for service in current
            .services
            .iter()
            .filter(|s| removed.contains(s.id.as_str()))
        {
            ops.extend(unused_registry_auth(raft, service, &[])?);
        }
        match commit(raft, without_repeats(ops)).await {
            Ok(_) => {
                return Ok(RemoveStackResponse {
                    removed: removals.iter().map(Removal::change).collect(),
                });
            }
            Err(err) if err.is_conflict() && attempt < ATTEMPTS => continue,
            Err(err) => return Err(err.into()),
        }
    }
}

#[cfg(test)]
#[path = "stacks_tests.rs"]
mod tests;
