//! The plan for a stack's networks, volumes, configs and secrets: what is
//! created, what changes (labels; a config's data; a secret's value, re-sealed
//! under the same id), and the objects the services are then resolved
//! against (`store::Pending`). Externals are only listed.

use std::collections::BTreeMap;

use berth_proto::store::object::Kind;
use berth_proto::store::{Expect, Object, Op};
use berth_proto::v1::{
    Config, FieldChange, Network, Secret, StackAction, StackChange, StackObjectKind, StackSpec,
    Timestamps, Volume,
};

use super::diff::fields_at;
use super::{Current, StackError, change};
use crate::allocator::new_network::new_network;
use crate::digest::sha256_hex;
use crate::ids::new_id;
use crate::keyring::{Keyring, check_value};
use crate::scheduler::volumes::LOCAL_DRIVER;
use crate::store::put;

/// What the plan says a secret's value became (never the value).
pub const SECRET_CHANGED: &str = "(changed)";

#[derive(Debug, Default)]
pub struct ObjectPlan {
    /// Networks, volumes, configs, secrets: every one the spec names.
    pub changes: Vec<StackChange>,
    /// Their writes, networks first (services attach to them).
    pub ops: Vec<Op>,
    /// The objects as written, for resolving the services.
    pub writes: Vec<Object>,
    /// Existing configs and secrets whose content changes: id → the digest
    /// the services' references get (data, or sealed value).
    pub changed: BTreeMap<String, String>,
    now_ms: i64,
}

impl ObjectPlan {
    /// An external object, or one whose fields all match.
    fn unchanged(&mut self, kind: StackObjectKind, name: &str) {
        self.changes
            .push(change(kind, name, StackAction::Unchanged, Vec::new()));
    }

    fn create(&mut self, kind: StackObjectKind, name: &str, object: Kind) {
        self.changes
            .push(change(kind, name, StackAction::Create, Vec::new()));
        self.write(object, Expect::Absent, 0);
    }

    /// An existing object (at `version`): unchanged when no field differs,
    /// else written as `updated` makes it.
    fn update(
        &mut self,
        kind: StackObjectKind,
        name: &str,
        fields: Vec<FieldChange>,
        version: u64,
        updated: impl FnOnce() -> Kind,
    ) {
        if fields.is_empty() {
            return self.unchanged(kind, name);
        }
        self.changes
            .push(change(kind, name, StackAction::Update, fields));
        self.write(updated(), Expect::Version, version);
    }

    fn write(&mut self, kind: Kind, expect: Expect, version: u64) {
        let object = Object { kind: Some(kind) };
        self.writes.push(object.clone());
        self.ops.push(put(object, expect, version));
    }

    /// Timestamps of an object created at `created` and written now.
    fn stamps(&self, created: &Option<Timestamps>) -> Option<Timestamps> {
        Some(Timestamps {
            created_ms: created.as_ref().map_or(self.now_ms, |t| t.created_ms),
            updated_ms: self.now_ms,
        })
    }
}

fn labels_changed(
    from: &BTreeMap<String, String>,
    to: &BTreeMap<String, String>,
) -> Vec<FieldChange> {
    fields_at("labels", from, to)
}

/// Plans the non-service objects of `spec` (checked by `ownership::check`).
pub fn plan(
    spec: &StackSpec,
    current: &Current,
    keys: &Keyring,
    now_ms: i64,
) -> Result<ObjectPlan, StackError> {
    let mut plan = ObjectPlan {
        now_ms,
        ..Default::default()
    };
    plan_networks(spec, current, &mut plan)?;
    let kind = StackObjectKind::Volume;
    for v in &spec.volumes {
        match current.volume(&v.name) {
            _ if v.external => plan.unchanged(kind, &v.name),
            Some(old) => {
                let fields = labels_changed(&old.labels, &v.labels);
                let timestamps = plan.stamps(&old.timestamps);
                plan.update(kind, &v.name, fields, old.version, || {
                    Kind::Volume(Volume {
                        labels: v.labels.clone(),
                        timestamps,
                        ..old.clone()
                    })
                });
            }
            None => {
                let new = Volume {
                    id: new_id(),
                    name: v.name.clone(),
                    driver: LOCAL_DRIVER.to_string(),
                    labels: v.labels.clone(),
                    timestamps: plan.stamps(&None),
                    ..Default::default()
                };
                plan.create(kind, &v.name, Kind::Volume(new));
            }
        }
    }
    let kind = StackObjectKind::Config;
    for c in &spec.configs {
        match current.config(&c.name) {
            _ if c.external => plan.unchanged(kind, &c.name),
            Some(old) => {
                let mut fields = Vec::new();
                if old.data != c.data {
                    fields.push(FieldChange {
                        field: "data".into(),
                        from: data_text(&old.data),
                        to: data_text(&c.data),
                    });
                    plan.changed.insert(old.id.clone(), sha256_hex(&c.data));
                }
                fields.extend(labels_changed(&old.labels, &c.labels));
                let timestamps = plan.stamps(&old.timestamps);
                plan.update(kind, &c.name, fields, old.version, || {
                    Kind::Config(Config {
                        data: c.data.clone(),
                        labels: c.labels.clone(),
                        timestamps,
                        ..old.clone()
                    })
                });
            }
            None => {
                let new = Config {
                    id: new_id(),
                    name: c.name.clone(),
                    data: c.data.clone(),
                    labels: c.labels.clone(),
                    version: 0,
                    timestamps: plan.stamps(&None),
                };
                plan.create(kind, &c.name, Kind::Config(new));
            }
        }
    }
    plan_secrets(spec, current, keys, &mut plan)?;
    Ok(plan)
}

/// Secrets: sealed when created; an existing one is opened and compared in
/// clear (sealing twice never gives the same bytes) and, when its value
/// changed, sealed again under its id.
fn plan_secrets(
    spec: &StackSpec,
    current: &Current,
    keys: &Keyring,
    plan: &mut ObjectPlan,
) -> Result<(), StackError> {
    let stack = spec.name.as_str();
    let keyring = |source| StackError::Keyring {
        stack: stack.to_string(),
        source,
    };
    let kind = StackObjectKind::Secret;
    for s in &spec.secrets {
        if s.external {
            plan.unchanged(kind, &s.name);
            continue;
        }
        check_value(&s.name, &s.data).map_err(|what| StackError::Invalid {
            stack: stack.to_string(),
            what,
        })?;
        match current.secret(&s.name) {
            Some(old) => {
                let mut fields = Vec::new();
                let mut data = old.data.clone();
                let plain = keys.open(&old.id, &old.data).map_err(keyring)?;
                if plain.as_bytes() != s.data.as_slice() {
                    data = keys.seal(&old.id, &s.data).map_err(keyring)?;
                    fields.push(FieldChange {
                        field: "data".into(),
                        from: String::new(),
                        to: SECRET_CHANGED.into(),
                    });
                    plan.changed.insert(old.id.clone(), sha256_hex(&data));
                }
                fields.extend(labels_changed(&old.labels, &s.labels));
                let timestamps = plan.stamps(&old.timestamps);
                plan.update(kind, &s.name, fields, old.version, || {
                    Kind::Secret(Secret {
                        data,
                        labels: s.labels.clone(),
                        timestamps,
                        ..old.clone()
                    })
                });
            }
            None => {
                let id = new_id();
                let data = keys.seal(&id, &s.data).map_err(keyring)?;
                let new = Secret {
                    id,
                    name: s.name.clone(),
                    data,
                    labels: s.labels.clone(),
                    version: 0,
                    timestamps: plan.stamps(&None),
                };
                plan.create(kind, &s.name, Kind::Secret(new));
            }
        }
    }
    Ok(())
}

/// Networks: created (subnet given, or carved beside the existing ones and
/// those created before it), relabelled; a subnet never changes in place.
fn plan_networks(
    spec: &StackSpec,
    current: &Current,
    plan: &mut ObjectPlan,
) -> Result<(), StackError> {
    let stack = spec.name.as_str();
    let mut existing: Vec<Network> = current.networks.clone();
    let kind = StackObjectKind::Network;
    for n in &spec.networks {
        match current.network(&n.name) {
            _ if n.external => plan.unchanged(kind, &n.name),
            Some(old) => {
                if !n.subnet.is_empty() && n.subnet != old.subnet {
                    return Err(StackError::NetworkChange {
                        stack: stack.to_string(),
                        name: n.name.clone(),
                        from: old.subnet.clone(),
                        to: n.subnet.clone(),
                    });
                }
                let fields = labels_changed(&old.labels, &n.labels);
                let timestamps = plan.stamps(&old.timestamps);
                plan.update(kind, &n.name, fields, old.version, || {
                    Kind::Network(Network {
                        labels: n.labels.clone(),
                        timestamps,
                        ..old.clone()
                    })
                });
            }
            None => {
                let new = new_network(
                    &existing,
                    new_id(),
                    n.name.clone(),
                    n.subnet.clone(),
                    n.labels.clone(),
                    plan.now_ms,
                )
                .map_err(|source| StackError::Network {
                    stack: stack.to_string(),
                    name: n.name.clone(),
                    source,
                })?;
                existing.push(new.clone());
                plan.create(kind, &n.name, Kind::Network(new));
            }
        }
    }
    Ok(())
}

/// A config's data in a field change: its size and digest (the data may be
/// long, or binary).
fn data_text(data: &[u8]) -> String {
    let digest = sha256_hex(data);
    format!(
        "{} bytes, sha256:{}",
        data.len(),
        &digest[..12.min(digest.len())]
    )
}
