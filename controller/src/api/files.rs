//! The secrets and configs a service spec names: checked and resolved when the
//! service is written, so the spec (and every task's copy) names each by id,
//! and each config by its content digest — a changed config is a changed spec.
//! The registry-auth secret (the credentials the image is pulled with) is
//! resolved the same way, and goes with its service ([`unused_registry_auth`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Op};
use berth_proto::v1::{Config, Secret, SecretReference, Service, ServiceSpec};
use tonic::Status;

use crate::clock::now_ms;
use crate::digest::sha256_hex;
use crate::raft::RaftHandle;
use crate::store::view::LookupError;
use crate::store::{Pending, Table, delete, put_kind};
use berth_proto::service_history::{Cause, record};

/// Largest file mode: permission bits only.
const MAX_MODE: u32 = 0o777;

/// Fills in ids (and config and secret digests) and checks targets and
/// modes. `store`: the store, or the store as a stack deploy will leave it.
pub fn resolve_files(store: &Pending, spec: &mut ServiceSpec) -> Result<(), Status> {
    let service = spec.name.clone();
    let bad = |what: String| Status::invalid_argument(format!("service {service}: {what}"));
    let mut targets = BTreeSet::new();
    if let Some(r) = &mut spec.registry_auth {
        resolve_secret(store, r, &service)?;
        // Never mounted: only the id and name mean anything.
        *r = SecretReference {
            secret_id: std::mem::take(&mut r.secret_id),
            secret_name: std::mem::take(&mut r.secret_name),
            ..SecretReference::default()
        };
    }
    for r in &mut spec.secrets {
        resolve_secret(store, r, &service)?;
        if r.target.is_empty() {
            r.target = r.secret_name.clone();
        }
        let plain_name =
            !r.target.contains('/') && r.target != "." && r.target != ".." && r.target.len() <= 255;
        if !plain_name {
            return Err(bad(format!(
                "secret {}: target {:?} must be a file name (it goes in /run/secrets)",
                r.secret_name, r.target
            )));
        }
        check_mode(r.mode, "secret", &r.secret_name).map_err(&bad)?;
        if !targets.insert(format!("/run/secrets/{}", r.target)) {
            return Err(bad(format!(
                "two secrets have the target /run/secrets/{}",
                r.target
            )));
        }
    }
    for r in &mut spec.configs {
        let key = first_set(&r.config_name, &r.config_id);
        let config: Config = match lookup(store, Table::Config, key, &service)? {
            Kind::Config(c) => c,
            _ => return Err(Status::internal("the store returned a non-config object")),
        };
        r.config_id = config.id;
        r.config_name = config.name;
        r.digest = sha256_hex(&config.data);
        if r.target.is_empty() {
            r.target = format!("/{}", r.config_name);
        }
        let path = Path::new(&r.target);
        let clean = path.is_absolute()
            && path.components().count() > 1
            && path
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !clean {
            return Err(bad(format!(
                "config {}: target {:?} must be an absolute file path without '..'",
                r.config_name, r.target
            )));
        }
        check_mode(r.mode, "config", &r.config_name).map_err(&bad)?;
        if !targets.insert(r.target.clone()) {
            return Err(bad(format!("two files have the target {}", r.target)));
        }
    }
    Ok(())
}

/// Sets `r`'s id and name from the secret it names, and the digest of its
/// sealed value (a stack deploy re-seals a changed value: a new digest, so
/// the services that use it roll).
fn resolve_secret(store: &Pending, r: &mut SecretReference, service: &str) -> Result<(), Status> {
    let key = first_set(&r.secret_name, &r.secret_id);
    let secret: Secret = match lookup(store, Table::Secret, key, service)? {
        Kind::Secret(s) => s,
        _ => return Err(Status::internal("the store returned a non-secret object")),
    };
    r.secret_id = secret.id;
    r.secret_name = secret.name;
    r.digest = sha256_hex(&secret.data);
    Ok(())
}

/// Puts of the services (but those in `skip`, by id) whose config or secret
/// references carry another digest than `changed` (config or secret id →
/// its new digest): the new digest and a new spec version, compare-and-set
/// on each service's version, so a concurrent service update makes the
/// whole write retry. The orchestrator then rolls them.
pub fn roll_users(
    services: &[Service],
    changed: &BTreeMap<String, String>,
    skip: &BTreeSet<String>,
) -> Vec<Op> {
    let mut ops = Vec::new();
    for service in services.iter().filter(|s| !skip.contains(&s.id)) {
        let Some(mut spec) = service.spec.clone() else {
            continue;
        };
        let mut what = None;
        for r in &mut spec.configs {
            if let Some(digest) = changed.get(&r.config_id).filter(|d| **d != r.digest) {
                r.digest = digest.clone();
                what = Some("a config changed");
            }
        }
        for r in &mut spec.secrets {
            if let Some(digest) = changed.get(&r.secret_id).filter(|d| **d != r.digest) {
                r.digest = digest.clone();
                what = what.or(Some("a secret changed"));
            }
        }
        let Some(what) = what else { continue };
        // A new version like any update: history, previous spec, rollout.
        let mut service = service.clone();
        let now = now_ms();
        let message = format!("update to version {}: {what}", service.spec_version + 1);
        record(&mut service, spec, Cause::Update, now, &message);
        if let Some(t) = service.timestamps.as_mut() {
            t.updated_ms = now;
        }
        let version = service.version;
        ops.push(put_kind(
            Kind::Service(Box::new(service)),
            Expect::Version,
            version,
        ));
    }
    ops
}

/// Whether `spec` uses the secret `id`: mounted, or to pull its image.
pub fn uses_secret(spec: &ServiceSpec, id: &str) -> bool {
    spec.secrets.iter().any(|s| s.secret_id == id)
        || spec
            .registry_auth
            .as_ref()
            .is_some_and(|r| r.secret_id == id)
}

/// Deletions, to commit with the write of `service` (`keep`: the specs it
/// keeps; none when it is removed), of the registry-auth secrets its spec or
/// previous spec used that `--with-registry-auth` made for it (labelled with
/// its name) and that neither `keep` nor any other service uses.
pub fn unused_registry_auth(
    raft: &RaftHandle,
    service: &Service,
    keep: &[&ServiceSpec],
) -> Result<Vec<Op>, Status> {
    let Some(name) = service.spec.as_ref().map(|s| s.name.as_str()) else {
        return Ok(Vec::new());
    };
    let dropped: BTreeSet<&str> = service
        .spec
        .iter()
        .chain(&service.previous_spec)
        .filter_map(|s| s.registry_auth.as_ref())
        .map(|r| r.secret_id.as_str())
        .filter(|id| !keep.iter().any(|spec| uses_secret(spec, id)))
        .collect();
    if dropped.is_empty() {
        return Ok(Vec::new());
    }
    let others: Vec<ServiceSpec> = all_services(raft)?
        .into_iter()
        .filter(|s| s.id != service.id)
        .flat_map(|s| s.spec.into_iter().chain(s.previous_spec))
        .collect();
    let mut ops = Vec::new();
    for id in dropped {
        let Some(Kind::Secret(secret)) = raft.state().get(Table::Secret, id)?.and_then(|o| o.kind)
        else {
            continue;
        };
        let made_for_it = secret
            .labels
            .get(berth_proto::REGISTRY_AUTH_LABEL)
            .map(String::as_str)
            == Some(name);
        if made_for_it && !others.iter().any(|spec| uses_secret(spec, id)) {
            ops.push(delete(Table::Secret, id, Expect::Version, secret.version));
        }
    }
    Ok(ops)
}

fn first_set<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

fn check_mode(mode: u32, kind: &str, name: &str) -> Result<(), String> {
    if mode > MAX_MODE {
        return Err(format!(
            "{kind} {name}: mode {mode:o} is not a file mode (0000-0777)"
        ));
    }
    Ok(())
}

fn lookup(store: &Pending, table: Table, key: &str, service: &str) -> Result<Kind, Status> {
    match store.resolve(table, key) {
        Ok(object) => object
            .kind
            .ok_or_else(|| Status::internal("the store returned an empty object")),
        Err(LookupError::NotFound { .. }) | Err(LookupError::Empty(_)) => {
            Err(Status::invalid_argument(format!(
                "service {service}: {table} {key:?} does not exist (create it with `berth {table} create`)"
            )))
        }
        Err(err) => Err(err.into()),
    }
}

/// Refuses to remove the {kind} `name` while services `uses` (naming them).
pub fn refuse_while_used(
    raft: &RaftHandle,
    kind: &str,
    name: &str,
    uses: impl Fn(&ServiceSpec) -> bool,
) -> Result<(), Status> {
    let users = services_using(raft, uses)?;
    if users.is_empty() {
        return Ok(());
    }
    Err(Status::failed_precondition(format!(
        "{kind} {name} is in use by service {}: remove it from the service (or the service) first",
        users.join(", ")
    )))
}

/// The services whose spec matches `uses`.
fn services_using(
    raft: &RaftHandle,
    uses: impl Fn(&ServiceSpec) -> bool,
) -> Result<Vec<String>, Status> {
    Ok(all_services(raft)?
        .into_iter()
        .filter_map(|s| s.spec)
        .filter(|spec| uses(spec))
        .map(|spec| spec.name)
        .collect())
}

/// Every stored service.
pub fn all_services(raft: &RaftHandle) -> Result<Vec<Service>, Status> {
    let mut out = Vec::new();
    for object in raft.state().list(Table::Service)? {
        if let Some(Kind::Service(s)) = object.kind {
            out.push(*s);
        }
    }
    Ok(out)
}
