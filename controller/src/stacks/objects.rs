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

/// What the file's text says a secret's value became (never the value).
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
}

impl ObjectPlan {
    fn record(&mut self, line: StackChange, write: Option<(Object, Expect, u64)>) {
        self.changes.push(line);
        if let Some((object, expect, version)) = write {
            self.writes.push(object.clone());
            self.ops.push(put(object, expect, version));
        }
    }
}

fn labels_changed(
    from: &BTreeMap<String, String>,
    to: &BTreeMap<String, String>,
) -> Vec<FieldChange> {
    fields_at("labels", from, to)
}

fn stamped(created_ms: i64, now_ms: i64) -> Option<Timestamps> {
    Some(Timestamps {
        created_ms,
        updated_ms: now_ms,
    })
}

fn created_ms(t: &Option<Timestamps>) -> i64 {
    t.as_ref().map_or(0, |t| t.created_ms)
}

/// Plans the non-service objects of `spec` (checked by `ownership::check`).
pub fn plan(
    spec: &StackSpec,
    current: &Current,
    keys: &Keyring,
    now_ms: i64,
) -> Result<ObjectPlan, StackError> {
    let stack = spec.name.as_str();
    let mut plan = ObjectPlan::default();
    plan_networks(spec, current, now_ms, &mut plan)?;
    for v in &spec.volumes {
        let line = |action, fields| change(StackObjectKind::Volume, &v.name, action, fields);
        match current.volume(&v.name) {
            _ if v.external => plan.record(line(StackAction::Unchanged, vec![]), None),
            Some(old) => {
                let fields = labels_changed(&old.labels, &v.labels);
                if fields.is_empty() {
                    plan.record(line(StackAction::Unchanged, fields), None);
                } else {
                    let new = Volume {
                        labels: v.labels.clone(),
                        timestamps: stamped(created_ms(&old.timestamps), now_ms),
                        ..old.clone()
                    };
                    let write = (wrap(Kind::Volume(new)), Expect::Version, old.version);
                    plan.record(line(StackAction::Update, fields), Some(write));
                }
            }
            None => {
                let new = Volume {
                    id: new_id(),
                    name: v.name.clone(),
                    driver: LOCAL_DRIVER.to_string(),
                    labels: v.labels.clone(),
                    timestamps: stamped(now_ms, now_ms),
                    ..Default::default()
                };
                let write = (wrap(Kind::Volume(new)), Expect::Absent, 0);
                plan.record(line(StackAction::Create, vec![]), Some(write));
            }
        }
    }
    for c in &spec.configs {
        let line = |action, fields| change(StackObjectKind::Config, &c.name, action, fields);
        match current.config(&c.name) {
            _ if c.external => plan.record(line(StackAction::Unchanged, vec![]), None),
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
                if fields.is_empty() {
                    plan.record(line(StackAction::Unchanged, fields), None);
                } else {
                    let new = Config {
                        data: c.data.clone(),
                        labels: c.labels.clone(),
                        timestamps: stamped(created_ms(&old.timestamps), now_ms),
                        ..old.clone()
                    };
                    let write = (wrap(Kind::Config(new)), Expect::Version, old.version);
                    plan.record(line(StackAction::Update, fields), Some(write));
                }
            }
            None => {
                let new = Config {
                    id: new_id(),
                    name: c.name.clone(),
                    data: c.data.clone(),
                    labels: c.labels.clone(),
                    version: 0,
                    timestamps: stamped(now_ms, now_ms),
                };
                let write = (wrap(Kind::Config(new)), Expect::Absent, 0);
                plan.record(line(StackAction::Create, vec![]), Some(write));
            }
        }
    }
    for s in &spec.secrets {
        let line = |action, fields| change(StackObjectKind::Secret, &s.name, action, fields);
        if s.external {
            plan.record(line(StackAction::Unchanged, vec![]), None);
            continue;
        }
        check_value(&s.name, &s.data).map_err(|what| StackError::Invalid {
            stack: stack.to_string(),
            what,
        })?;
        let keyring = |source| StackError::Keyring {
            stack: stack.to_string(),
            source,
        };
        match current.secret(&s.name) {
            Some(old) => {
                let mut fields = Vec::new();
                let mut data = old.data.clone();
                // Compared in clear: sealing twice never gives the same bytes.
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
                if fields.is_empty() {
                    plan.record(line(StackAction::Unchanged, fields), None);
                } else {
                    let new = Secret {
                        data,
                        labels: s.labels.clone(),
                        timestamps: stamped(created_ms(&old.timestamps), now_ms),
                        ..old.clone()
                    };
                    let write = (wrap(Kind::Secret(new)), Expect::Version, old.version);
                    plan.record(line(StackAction::Update, fields), Some(write));
                }
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
                    timestamps: stamped(now_ms, now_ms),
                };
                let write = (wrap(Kind::Secret(new)), Expect::Absent, 0);
                plan.record(line(StackAction::Create, vec![]), Some(write));
            }
        }
    }
    Ok(plan)
}

/// Networks: created (subnet given, or carved beside the existing ones and
/// those created before it), relabelled; a subnet never changes in place.
fn plan_networks(
    spec: &StackSpec,
    current: &Current,
    now_ms: i64,
    plan: &mut ObjectPlan,
) -> Result<(), StackError> {
    let stack = spec.name.as_str();
    let mut existing: Vec<Network> = current.networks.clone();
    for n in &spec.networks {
        let line = |action, fields| change(StackObjectKind::Network, &n.name, action, fields);
        match current.network(&n.name) {
            _ if n.external => plan.record(line(StackAction::Unchanged, vec![]), None),
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
                if fields.is_empty() {
                    plan.record(line(StackAction::Unchanged, fields), None);
                } else {
                    let new = Network {
                        labels: n.labels.clone(),
                        timestamps: stamped(created_ms(&old.timestamps), now_ms),
                        ..old.clone()
                    };
                    let write = (wrap(Kind::Network(new)), Expect::Version, old.version);
                    plan.record(line(StackAction::Update, fields), Some(write));
                }
            }
            None => {
                let new = new_network(
                    &existing,
                    new_id(),
                    n.name.clone(),
                    n.subnet.clone(),
                    n.labels.clone(),
                    now_ms,
                )
                .map_err(|source| StackError::Network {
                    stack: stack.to_string(),
                    name: n.name.clone(),
                    source,
                })?;
                existing.push(new.clone());
                let write = (wrap(Kind::Network(new)), Expect::Absent, 0);
                plan.record(line(StackAction::Create, vec![]), Some(write));
            }
        }
    }
    Ok(())
}

fn wrap(kind: Kind) -> Object {
    Object { kind: Some(kind) }
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
