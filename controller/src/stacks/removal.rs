//! What leaves with a stack: `--prune` removes the stack's services,
//! networks, configs and secrets the spec no longer names; `stack rm`
//! removes all of them. Services go first; volumes never (their data stays);
//! another stack's objects and unlabelled ones never. And `stack ls`.

use std::collections::BTreeMap;

use berth_proto::stacks::stack_of;
use berth_proto::store::Op;
use berth_proto::v1::{
    ServiceSpec, StackAction, StackChange, StackObjectKind, StackSpec, StackSummary,
};

use super::{Current, StackError, change, kind_name};
use crate::store::{Table, delete};
use berth_proto::store::Expect;

/// One object to remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    pub kind: StackObjectKind,
    pub name: String,
    pub id: String,
    pub version: u64,
}

impl Removal {
    pub fn op(&self) -> Op {
        let table = match self.kind {
            StackObjectKind::Service => Table::Service,
            StackObjectKind::Network => Table::Network,
            StackObjectKind::Volume => Table::Volume,
            StackObjectKind::Config => Table::Config,
            StackObjectKind::Secret => Table::Secret,
        };
        delete(table, &self.id, Expect::Version, self.version)
    }

    pub fn change(&self) -> StackChange {
        change(self.kind, &self.name, StackAction::Remove, Vec::new())
    }
}

/// Every object labelled with `stack` but its volumes: services, networks,
/// configs, secrets (the order they are removed in), each kind by name.
pub fn owned(current: &Current, stack: &str) -> Vec<Removal> {
    let mine = |labels: &BTreeMap<String, String>| stack_of(labels) == Some(stack);
    let mut out = Vec::new();
    for s in &current.services {
        if let Some(spec) = s.spec.as_ref().filter(|spec| mine(&spec.labels)) {
            out.push(Removal {
                kind: StackObjectKind::Service,
                name: spec.name.clone(),
                id: s.id.clone(),
                version: s.version,
            });
        }
    }
    let rest = current
        .networks
        .iter()
        .filter(|o| mine(&o.labels))
        .map(|o| (StackObjectKind::Network, &o.name, &o.id, o.version))
        .chain(
            current
                .configs
                .iter()
                .filter(|o| mine(&o.labels))
                .map(|o| (StackObjectKind::Config, &o.name, &o.id, o.version)),
        )
        .chain(
            current
                .secrets
                .iter()
                .filter(|o| mine(&o.labels))
                .map(|o| (StackObjectKind::Secret, &o.name, &o.id, o.version)),
        );
    for (kind, name, id, version) in rest {
        out.push(Removal {
            kind,
            name: name.clone(),
            id: id.clone(),
            version,
        });
    }
    out.sort_by_key(|r| (r.kind as i32, r.name.clone()));
    out
}

/// The stack's objects `spec` no longer names (`--prune`).
pub fn pruned(current: &Current, spec: &StackSpec) -> Vec<Removal> {
    let named = |kind: StackObjectKind, name: &str| match kind {
        StackObjectKind::Service => spec.services.iter().any(|s| s.name == name),
        StackObjectKind::Network => spec.networks.iter().any(|n| n.name == name),
        StackObjectKind::Volume => true,
        StackObjectKind::Config => spec.configs.iter().any(|c| c.name == name),
        StackObjectKind::Secret => spec.secrets.iter().any(|s| s.name == name),
    };
    owned(current, &spec.name)
        .into_iter()
        .filter(|r| !named(r.kind, &r.name))
        .collect()
}

/// Refuses removals that a service left after the change (`remaining`: the
/// specs as they will be) still uses, naming the service.
pub fn refuse_if_used(
    stack: &str,
    removals: &[Removal],
    remaining: &[&ServiceSpec],
) -> Result<(), StackError> {
    for r in removals {
        let uses = |spec: &ServiceSpec| match r.kind {
            StackObjectKind::Network => spec.networks.contains(&r.name),
            StackObjectKind::Config => spec.configs.iter().any(|c| c.config_id == r.id),
            StackObjectKind::Secret => {
                spec.secrets.iter().any(|s| s.secret_id == r.id)
                    || spec
                        .registry_auth
                        .as_ref()
                        .is_some_and(|a| a.secret_id == r.id)
            }
            StackObjectKind::Service | StackObjectKind::Volume => false,
        };
        let users: Vec<&str> = remaining
            .iter()
            .filter(|spec| uses(spec))
            .map(|spec| spec.name.as_str())
            .collect();
        if !users.is_empty() {
            return Err(StackError::InUse {
                stack: stack.to_string(),
                kind: kind_name(r.kind),
                name: r.name.clone(),
                users: users.join(", "),
            });
        }
    }
    Ok(())
}

/// `stack ls`: every stack with what it holds, by name.
pub fn summaries(current: &Current) -> Vec<StackSummary> {
    let mut stacks: BTreeMap<String, StackSummary> = BTreeMap::new();
    let mut count = |labels: &BTreeMap<String, String>,
                     field: fn(&mut StackSummary) -> &mut u32| {
        if let Some(stack) = stack_of(labels) {
            let summary = stacks
                .entry(stack.to_string())
                .or_insert_with(|| StackSummary {
                    name: stack.to_string(),
                    ..Default::default()
                });
            *field(summary) += 1;
        }
    };
    for s in current.services.iter().filter_map(|s| s.spec.as_ref()) {
        count(&s.labels, |x| &mut x.services);
    }
    for n in &current.networks {
        count(&n.labels, |x| &mut x.networks);
    }
    for c in &current.configs {
        count(&c.labels, |x| &mut x.configs);
    }
    for s in &current.secrets {
        count(&s.labels, |x| &mut x.secrets);
    }
    stacks.into_values().collect()
}
