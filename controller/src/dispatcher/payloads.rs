//! The secret values and config data a node's tasks use, sent with its
//! assignments: only for tasks that should run there, withdrawn when no such
//! task uses them any more. Secrets are opened (keyring) here, on the leader,
//! per node, at the moment they are sent; nothing else holds them in clear.
//!
//! Nothing is tracked per revision: what a node needs follows from its
//! assigned tasks (their specs name each secret by id and each config by id
//! and digest), and a session remembers what it sent ([`SentPayloads`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use berth_proto::store::object::Kind;
use berth_proto::v1::{ConfigValue, SecretValue, Task, TaskState};
use tracing::warn;

use crate::digest::sha256_hex;
use crate::keyring::Keyring;
use crate::store::{StateMachine, Table};

/// Where values come from: the store and the keyring on the leader, a map in
/// tests.
pub trait PayloadSource {
    /// The secret `id` in clear; `None` (logged) when it cannot be had.
    fn secret(&self, id: &str) -> Option<SecretValue>;
    /// The config `id` as it is now.
    fn config(&self, id: &str) -> Option<ConfigValue>;
}

/// The leader's source: the state machine's sealed secrets, opened with the
/// cluster's key.
pub struct StorePayloads<'a> {
    pub sm: &'a StateMachine,
    pub keys: &'a Keyring,
}

impl PayloadSource for StorePayloads<'_> {
    fn secret(&self, id: &str) -> Option<SecretValue> {
        let secret = match self.sm.get(Table::Secret, id) {
            Ok(Some(object)) => match object.kind {
                Some(Kind::Secret(s)) => s,
                _ => return None,
            },
            Ok(None) => {
                warn!(secret = id, "a task uses a secret that no longer exists");
                return None;
            }
            Err(err) => {
                warn!(secret = id, %err, "cannot read a secret for a node");
                return None;
            }
        };
        match self.keys.open(&secret.id, &secret.data) {
            Ok(value) => Some(SecretValue {
                id: secret.id,
                name: secret.name,
                data: value.0,
            }),
            Err(err) => {
                warn!(%err, "a secret is not delivered");
                None
            }
        }
    }

    fn config(&self, id: &str) -> Option<ConfigValue> {
        match self.sm.get(Table::Config, id) {
            Ok(Some(object)) => match object.kind {
                Some(Kind::Config(c)) => Some(ConfigValue {
                    digest: sha256_hex(&c.data),
                    id: c.id,
                    name: c.name,
                    data: c.data,
                }),
                _ => None,
            },
            Ok(None) => {
                warn!(config = id, "a task uses a config that no longer exists");
                None
            }
            Err(err) => {
                warn!(config = id, %err, "cannot read a config for a node");
                None
            }
        }
    }
}

/// A source with nothing: for tests of tasks that use no secret or config.
#[cfg(test)]
pub struct NoPayloads;

#[cfg(test)]
impl PayloadSource for NoPayloads {
    fn secret(&self, _: &str) -> Option<SecretValue> {
        None
    }
    fn config(&self, _: &str) -> Option<ConfigValue> {
        None
    }
}

/// What a session has sent of the payloads.
#[derive(Debug, Default)]
pub struct SentPayloads {
    secrets: HashSet<String>,
    /// Config id -> digest of the data sent.
    configs: HashMap<String, String>,
}

/// Payload changes for one message.
#[derive(Default)]
pub struct PayloadChanges {
    pub secrets: Vec<SecretValue>,
    pub removed_secrets: Vec<String>,
    pub configs: Vec<ConfigValue>,
    pub removed_configs: Vec<String>,
}

/// What the tasks that should run use: secret ids, and config id -> the
/// digests the tasks were made with.
fn used<'a>(
    tasks: impl IntoIterator<Item = &'a Task>,
) -> (BTreeSet<String>, BTreeMap<String, BTreeSet<String>>) {
    let mut secrets = BTreeSet::new();
    let mut configs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for task in tasks {
        if task.desired_state > TaskState::Running as i32 {
            continue;
        }
        let Some(spec) = &task.spec else { continue };
        secrets.extend(spec.secrets.iter().map(|s| s.secret_id.clone()));
        // The credentials its image is pulled with: a secret like the others.
        secrets.extend(spec.registry_auth.iter().map(|r| r.secret_id.clone()));
        for c in &spec.configs {
            configs
                .entry(c.config_id.clone())
                .or_default()
                .insert(c.digest.clone());
        }
    }
    (secrets, configs)
}

/// What to send so the agent holds exactly what `tasks` use, given what was
/// sent before; records it in `sent`.
pub fn changes<'a>(
    tasks: impl IntoIterator<Item = &'a Task>,
    source: &dyn PayloadSource,
    sent: &mut SentPayloads,
) -> PayloadChanges {
    let (secrets, configs) = used(tasks);
    let mut out = PayloadChanges::default();
    for id in &secrets {
        if !sent.secrets.contains(id)
            && let Some(value) = source.secret(id)
        {
            sent.secrets.insert(id.clone());
            out.secrets.push(value);
        }
    }
    sent.secrets.retain(|id| {
        let kept = secrets.contains(id);
        if !kept {
            out.removed_secrets.push(id.clone());
        }
        kept
    });
    for (id, digests) in &configs {
        // Every task was made with the data held: nothing to send. (While
        // a roll has tasks of two digests the store is read again, and the
        // data sent when it changed.)
        if let Some(held) = sent.configs.get(id)
            && digests.iter().all(|d| d == held)
        {
            continue;
        }
        if let Some(value) = source.config(id)
            && sent.configs.get(id) != Some(&value.digest)
        {
            sent.configs.insert(id.clone(), value.digest.clone());
            out.configs.push(value);
        }
    }
    sent.configs.retain(|id, _| {
        let kept = configs.contains_key(id);
        if !kept {
            out.removed_configs.push(id.clone());
        }
        kept
    });
    out.removed_secrets.sort();
    out.removed_configs.sort();
    out
}

#[cfg(test)]
mod tests {
    use berth_proto::v1::{ConfigReference, SecretReference, ServiceSpec};

    use super::*;

    struct Map {
        secrets: BTreeMap<String, Vec<u8>>,
        configs: BTreeMap<String, Vec<u8>>,
    }

    impl PayloadSource for Map {
        fn secret(&self, id: &str) -> Option<SecretValue> {
            self.secrets.get(id).map(|data| SecretValue {
                id: id.into(),
                name: id.into(),
                data: data.clone(),
            })
        }
        fn config(&self, id: &str) -> Option<ConfigValue> {
            self.configs.get(id).map(|data| ConfigValue {
                id: id.into(),
                name: id.into(),
                data: data.clone(),
                digest: sha256_hex(data),
            })
        }
    }

    fn task(id: &str, desired: TaskState, secrets: &[&str], configs: &[(&str, &[u8])]) -> Task {
        Task {
            id: id.into(),
            desired_state: desired as i32,
            spec: Some(ServiceSpec {
                secrets: secrets
                    .iter()
                    .map(|s| SecretReference {
                        secret_id: s.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                configs: configs
                    .iter()
                    .map(|(c, data)| ConfigReference {
                        config_id: c.to_string(),
                        digest: sha256_hex(data),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_node_gets_what_its_running_tasks_use_and_loses_the_rest() {
        let mut source = Map {
            secrets: [
                ("s1".into(), b"one".to_vec()),
                ("s2".into(), b"two".to_vec()),
            ]
            .into(),
            configs: [("c1".into(), b"v1".to_vec())].into(),
        };
        let mut sent = SentPayloads::default();
        let t1 = task("t1", TaskState::Running, &["s1"], &[("c1", b"v1")]);
        let stopping = task("t0", TaskState::Shutdown, &["s2"], &[]);
        let first = changes([&t1, &stopping], &source, &mut sent);
        let ids: Vec<&str> = first.secrets.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["s1"], "a task being stopped needs no secret");
        assert_eq!(first.configs.len(), 1);

        let again = changes([&t1], &source, &mut sent);
        assert!(again.secrets.is_empty() && again.configs.is_empty());

        // The config changes: the task made with the new digest gets the new data.
        source.configs.insert("c1".into(), b"v2".to_vec());
        let t2 = task("t2", TaskState::Running, &["s1"], &[("c1", b"v2")]);
        let rolled = changes([&t1, &t2], &source, &mut sent);
        assert_eq!(rolled.configs.len(), 1);
        assert_eq!(rolled.configs[0].data, b"v2");
        assert!(rolled.secrets.is_empty());
        let settled = changes([&t1, &t2], &source, &mut sent);
        assert!(
            settled.configs.is_empty(),
            "sent once, not on every message"
        );

        let gone = changes([], &source, &mut sent);
        assert_eq!(gone.removed_secrets, ["s1"]);
        assert_eq!(gone.removed_configs, ["c1"]);
    }

    #[test]
    fn the_registry_credentials_go_with_the_tasks_that_pull_with_them() {
        let source = Map {
            secrets: [("creds".into(), b"{}".to_vec())].into(),
            configs: BTreeMap::new(),
        };
        let mut sent = SentPayloads::default();
        let mut t1 = task("t1", TaskState::Running, &[], &[]);
        if let Some(spec) = t1.spec.as_mut() {
            spec.registry_auth = Some(SecretReference {
                secret_id: "creds".into(),
                ..Default::default()
            });
        }
        let other = task("t2", TaskState::Running, &[], &[]);
        assert!(changes([&other], &source, &mut sent).secrets.is_empty());
        let first = changes([&t1, &other], &source, &mut sent);
        let ids: Vec<&str> = first.secrets.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["creds"]);
        let gone = changes([&other], &source, &mut sent);
        assert_eq!(gone.removed_secrets, ["creds"]);
    }

    #[test]
    fn a_secret_that_cannot_be_had_is_tried_again() {
        let mut source = Map {
            secrets: BTreeMap::new(),
            configs: BTreeMap::new(),
        };
        let mut sent = SentPayloads::default();
        let t1 = task("t1", TaskState::Running, &["s1"], &[]);
        assert!(changes([&t1], &source, &mut sent).secrets.is_empty());
        source.secrets.insert("s1".into(), b"one".to_vec());
        assert_eq!(changes([&t1], &source, &mut sent).secrets.len(), 1);
    }
}
