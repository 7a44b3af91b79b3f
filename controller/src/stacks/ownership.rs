//! What a stack spec may name: objects are the stack's by its label, names
//! are unique, external objects exist, references resolve — and an object
//! the spec names that exists but is not this stack's refuses the deploy.

use std::collections::{BTreeMap, BTreeSet};

use berth_proto::stacks::{STACK_LABEL, stack_of};
use berth_proto::v1::{StackObjectKind, StackSpec};

use super::{Current, StackError, kind_name};
use crate::allocator::subnets::DEFAULT_NETWORK;
use crate::naming::check_name;

/// One object the spec names, as the checks see it.
struct Named<'a> {
    kind: StackObjectKind,
    name: &'a str,
    labels: &'a BTreeMap<String, String>,
    external: bool,
    /// The labels of the stored object of that name, if there is one.
    stored: Option<&'a BTreeMap<String, String>>,
}

/// Checks `spec` against itself and the store; `Ok` means the plan may be
/// computed.
pub fn check(spec: &StackSpec, current: &Current) -> Result<(), StackError> {
    let stack = spec.name.as_str();
    let invalid = |what: String| StackError::Invalid {
        stack: stack.to_string(),
        what,
    };
    check_name("stack", stack).map_err(|e| StackError::Invalid {
        stack: stack.to_string(),
        what: e,
    })?;
    let stored_service = |name: &str| {
        current
            .service(name)
            .and_then(|o| o.spec.as_ref())
            .map(|spec| &spec.labels)
    };
    let named: Vec<Named> = (spec.networks.iter())
        .map(|n| Named {
            kind: StackObjectKind::Network,
            name: &n.name,
            labels: &n.labels,
            external: n.external,
            stored: current.network(&n.name).map(|o| &o.labels),
        })
        .chain(spec.volumes.iter().map(|v| Named {
            kind: StackObjectKind::Volume,
            name: &v.name,
            labels: &v.labels,
            external: v.external,
            stored: current.volume(&v.name).map(|o| &o.labels),
        }))
        .chain(spec.configs.iter().map(|c| Named {
            kind: StackObjectKind::Config,
            name: &c.name,
            labels: &c.labels,
            external: c.external,
            stored: current.config(&c.name).map(|o| &o.labels),
        }))
        .chain(spec.secrets.iter().map(|s| Named {
            kind: StackObjectKind::Secret,
            name: &s.name,
            labels: &s.labels,
            external: s.external,
            stored: current.secret(&s.name).map(|o| &o.labels),
        }))
        .chain(spec.services.iter().map(|s| Named {
            kind: StackObjectKind::Service,
            name: &s.name,
            labels: &s.labels,
            external: false,
            stored: stored_service(&s.name),
        }))
        .collect();
    let mut seen = BTreeSet::new();
    for n in &named {
        let kind = kind_name(n.kind);
        if !seen.insert((n.kind as i32, n.name)) {
            return Err(invalid(format!("{kind} {} is named twice", n.name)));
        }
        if n.kind == StackObjectKind::Volume {
            berth_proto::mounts::check_volume_name(n.name).map_err(invalid)?;
        } else {
            check_name(kind, n.name).map_err(invalid)?;
        }
        if n.external {
            if n.stored.is_none() {
                return Err(StackError::MissingExternal {
                    stack: stack.to_string(),
                    kind,
                    name: n.name.to_string(),
                });
            }
            continue;
        }
        if n.kind == StackObjectKind::Network && n.name == DEFAULT_NETWORK {
            return Err(invalid(format!(
                "network {DEFAULT_NETWORK} is the cluster's default network: name it as external"
            )));
        }
        if stack_of(n.labels) != Some(stack) {
            return Err(invalid(format!(
                "{kind} {} does not carry the label {STACK_LABEL}={stack}",
                n.name
            )));
        }
        if let Some(stored) = n.stored
            && stack_of(stored) != Some(stack)
        {
            return Err(StackError::Foreign {
                stack: stack.to_string(),
                kind,
                name: n.name.to_string(),
                owner: match stack_of(stored) {
                    Some(other) => format!("belongs to stack {other}"),
                    None => "belongs to no stack".to_string(),
                },
            });
        }
    }
    check_references(spec, current).map_err(invalid)
}

/// Every network, config and secret a service names is in the spec or in
/// the store.
fn check_references(spec: &StackSpec, current: &Current) -> Result<(), String> {
    for service in &spec.services {
        let name = &service.name;
        for network in &service.networks {
            let known = spec.networks.iter().any(|n| &n.name == network)
                || current.network(network).is_some();
            if !known {
                return Err(format!(
                    "service {name}: network {network} is neither in the stack nor in the cluster"
                ));
            }
        }
        for r in &service.configs {
            let known = spec.configs.iter().any(|c| c.name == r.config_name)
                || current.config(&r.config_name).is_some()
                || current.configs.iter().any(|c| c.id == r.config_id);
            if !known {
                return Err(format!(
                    "service {name}: config {} is neither in the stack nor in the cluster",
                    r.config_name
                ));
            }
        }
        let secrets = service.secrets.iter().chain(&service.registry_auth);
        for r in secrets {
            let known = spec.secrets.iter().any(|s| s.name == r.secret_name)
                || current.secret(&r.secret_name).is_some()
                || current.secrets.iter().any(|s| s.id == r.secret_id);
            if !known {
                return Err(format!(
                    "service {name}: secret {} is neither in the stack nor in the cluster",
                    r.secret_name
                ));
            }
        }
    }
    Ok(())
}
