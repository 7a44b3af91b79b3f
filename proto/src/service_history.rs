//! A service's versions: writing a new spec (an update, a rollback, a scale or
//! the orchestrator's automatic rollback) the one way, so `previous_spec`,
//! `spec_version`, the last [`HISTORY_LEN`] versions and the rollout's
//! [`UpdateStatus`] always move together; and which version a rollback goes to.

use serde_json::Value;

use crate::v1::update_status::State;
use crate::v1::{Service, ServiceSpec, ServiceVersion, UpdateStatus};

/// Versions a service keeps (`service history`).
pub const HISTORY_LEN: usize = 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HistoryError {
    #[error("service {service} has no version before {version} to roll back to")]
    NothingBefore { service: String, version: u64 },
    #[error("service {service} has no version {wanted} in its history (it keeps versions {kept})")]
    NotKept {
        service: String,
        wanted: u64,
        kept: String,
    },
    #[error("service {service} already runs version {version}")]
    Current { service: String, version: u64 },
}

/// The parts of a spec that change what a task runs: not the replica count,
/// the update and rollback settings, the service's own labels, or how the
/// service is reached (the endpoint mode: its VIP comes and goes, as Swarm's
/// endpoint spec, without a task restarted). Tasks whose spec differs from
/// the service's in these are replaced by a rollout.
pub fn runtime_part(spec: &ServiceSpec) -> ServiceSpec {
    ServiceSpec {
        mode: None,
        update_config: None,
        rollback_config: None,
        labels: Default::default(),
        endpoint_mode: 0,
        ..spec.clone()
    }
}

/// Whether going from `old` to `new` replaces tasks (a rollout), rather than
/// only scaling or relabelling.
pub fn replaces_tasks(old: &ServiceSpec, new: &ServiceSpec) -> bool {
    runtime_part(old) != runtime_part(new)
}

/// The first version of a new service.
pub fn first_version(spec: &ServiceSpec, now_ms: i64) -> ServiceVersion {
    ServiceVersion {
        version: 1,
        spec: Some(spec.clone()),
        created_ms: now_ms,
        change: "created".into(),
        restores: 0,
    }
}

/// How a new spec comes to be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// `service update`, `service scale`, a stack deploy.
    Update,
    /// A rollback (asked for, or taken by the orchestrator) to this version.
    Rollback { restores: u64 },
}

/// Writes `spec` as the service's next version: the current spec becomes
/// `previous_spec`, `spec_version` goes up, the history gets the new version
/// (and drops the oldest beyond [`HISTORY_LEN`]). When tasks will be replaced
/// a rollout starts: UPDATING, or ROLLBACK_STARTED for a rollback, with
/// `message`; a change that replaces no task (a scale) leaves the status.
pub fn record(service: &mut Service, spec: ServiceSpec, cause: Cause, now_ms: i64, message: &str) {
    let current = service.spec.clone().unwrap_or_default();
    if service.history.is_empty() {
        // A service written before histories were kept: start from now.
        service.history.push(ServiceVersion {
            version: service.spec_version,
            spec: Some(current.clone()),
            created_ms: service
                .timestamps
                .as_ref()
                .map(|t| t.updated_ms)
                .unwrap_or(now_ms),
            change: String::new(),
            restores: 0,
        });
    }
    let version = service.spec_version + 1;
    let restores = match cause {
        Cause::Update => 0,
        Cause::Rollback { restores } => restores,
    };
    let mut change = describe_change(&current, &spec);
    if restores != 0 {
        change = format!("rollback to version {restores}: {change}");
    }
    if replaces_tasks(&current, &spec) {
        let state = match cause {
            Cause::Update => State::Updating,
            Cause::Rollback { .. } => State::RollbackStarted,
        };
        service.update_status = Some(UpdateStatus {
            state: state as i32,
            message: message.to_string(),
            started_ms: now_ms,
            from_version: service.spec_version,
            to_version: version,
            progress_ms: now_ms,
            ..Default::default()
        });
    }
    service.history.push(ServiceVersion {
        version,
        spec: Some(spec.clone()),
        created_ms: now_ms,
        change,
        restores,
    });
    let excess = service.history.len().saturating_sub(HISTORY_LEN);
    service.history.drain(..excess);
    service.previous_spec = Some(current);
    service.spec = Some(spec);
    service.spec_version = version;
}

/// The version a rollback goes to: `to_version` when given (and kept), else
/// the newest version older than the current one, or than the one the current
/// one restores (so rolling back twice goes further back, not forward again).
pub fn rollback_target(
    service: &Service,
    to_version: u64,
) -> Result<&ServiceVersion, HistoryError> {
    let name = || {
        service
            .spec
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default()
    };
    if to_version != 0 {
        if to_version == service.spec_version {
            return Err(HistoryError::Current {
                service: name(),
                version: to_version,
            });
        }
        return service
            .history
            .iter()
            .find(|v| v.version == to_version)
            .ok_or_else(|| HistoryError::NotKept {
                service: name(),
                wanted: to_version,
                kept: kept_versions(service),
            });
    }
    let base = service
        .history
        .iter()
        .find(|v| v.version == service.spec_version)
        .filter(|v| v.restores != 0)
        .map_or(service.spec_version, |v| v.restores);
    service
        .history
        .iter()
        .filter(|v| v.version < base)
        .max_by_key(|v| v.version)
        .ok_or_else(|| HistoryError::NothingBefore {
            service: name(),
            version: base,
        })
}

fn kept_versions(service: &Service) -> String {
    let versions: Vec<u64> = service.history.iter().map(|v| v.version).collect();
    match (versions.first(), versions.last()) {
        (Some(first), Some(last)) if first != last => format!("{first} to {last}"),
        (Some(only), _) => only.to_string(),
        _ => "none".into(),
    }
}

/// What changed from `old` to `new`, in words: "image web:1 -> web:2, env
/// +A=1 -A=0, replicas 3 -> 5"; "no change" when nothing did.
pub fn describe_change(old: &ServiceSpec, new: &ServiceSpec) -> String {
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return "changed".into();
    };
    // The image first (what a rollout is usually about), then by field name.
    let mut keys: Vec<&String> = b.keys().collect();
    keys.sort_by_key(|k| (k.as_str() != "image", k.as_str()));
    let mut parts = Vec::new();
    for key in keys {
        let before = a.get(key).unwrap_or(&Value::Null);
        describe_field(key, before, &b[key], &mut parts);
    }
    if parts.is_empty() {
        "no change".into()
    } else {
        parts.join(", ")
    }
}

/// Appends what changed in field `key` (a dotted path inside nested objects).
fn describe_field(key: &str, before: &Value, after: &Value, parts: &mut Vec<String>) {
    if before == after {
        return;
    }
    let replicas = |v: &Value| v.pointer("/Replicated/replicas").cloned();
    if let Some(words) = as_flag_words(key, before).zip(as_flag_words(key, after)) {
        let (a, b) = words;
        return describe_field(key, &a, &b, parts);
    }
    match (before, after) {
        (Value::Array(a), Value::Array(b)) if a.iter().chain(b).all(Value::is_string) => {
            let mut words = Vec::new();
            words.extend(
                b.iter()
                    .filter(|v| !a.contains(v))
                    .map(|v| format!("+{}", plain(v))),
            );
            words.extend(
                a.iter()
                    .filter(|v| !b.contains(v))
                    .map(|v| format!("-{}", plain(v))),
            );
            if words.is_empty() {
                parts.push(format!("{key} reordered"));
            } else {
                parts.push(format!("{key} {}", words.join(" ")));
            }
        }
        (Value::Object(_), Value::Object(_)) if key == "mode" => {
            match (replicas(before), replicas(after)) {
                (Some(x), Some(y)) => {
                    parts.push(format!("replicas {} -> {}", plain(&x), plain(&y)))
                }
                _ => parts.push("mode changed".into()),
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for sub in keys {
                let x = a.get(sub).unwrap_or(&Value::Null);
                let y = b.get(sub).unwrap_or(&Value::Null);
                describe_field(&format!("{key}.{sub}"), x, y, parts);
            }
        }
        (Value::Null, Value::Object(b)) => {
            // Set where there was nothing: the fields it sets.
            for (sub, y) in b.iter().filter(|(_, y)| !is_zero(y)) {
                describe_field(&format!("{key}.{sub}"), &Value::Null, y, parts);
            }
        }
        (Value::Object(_), Value::Null) => parts.push(format!("{key} removed")),
        (a, b) if is_scalar(a) && is_scalar(b) => {
            parts.push(format!("{key} {} -> {}", shown(key, a), shown(key, b)));
        }
        (Value::Null, b) if is_scalar(b) => parts.push(format!("{key} {}", shown(key, b))),
        (a, Value::Null) if is_scalar(a) => parts.push(format!("{key} removed")),
        _ => parts.push(format!("{key} changed")),
    }
}

/// Lists of settings the CLI writes as words (`--ulimit nofile=1:2`,
/// `--placement-pref spread=node.labels.zone`), as those words, so their
/// changes read as `+`/`-` of them.
fn as_flag_words(key: &str, v: &Value) -> Option<Value> {
    if !matches!(key, "ulimits" | "placement.preferences") {
        return None;
    }
    let none = Vec::new();
    let items = match v {
        Value::Null => &none,
        v => v.as_array()?,
    };
    let word = |item: &Value| -> Option<String> {
        match key {
            "ulimits" => Some(format!(
                "{}={}:{}",
                item.get("name")?.as_str()?,
                item.get("soft")?,
                item.get("hard")?
            )),
            "placement.preferences" => Some(format!("spread={}", item.get("spread")?.as_str()?)),
            _ => None,
        }
    };
    items
        .iter()
        .map(|item| word(item).map(Value::String))
        .collect::<Option<Vec<_>>>()
        .map(Value::Array)
}

/// A field left at its default (what prost writes for "unset").
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// A value as the CLI's flags write it: enums by name ("start-first"), the
/// rest as they are.
fn shown(key: &str, v: &Value) -> String {
    use crate::v1::{EndpointMode, RestartCondition, UpdateFailureAction, UpdateOrder};
    let number = v.as_i64().and_then(|n| i32::try_from(n).ok());
    let field = key.rsplit('.').next().unwrap_or(key);
    let name = number.and_then(|n| match field {
        "order" => UpdateOrder::try_from(n).ok().map(|o| match o {
            UpdateOrder::StopFirst => "stop-first",
            UpdateOrder::StartFirst => "start-first",
        }),
        "failure_action" => UpdateFailureAction::try_from(n).ok().map(|a| match a {
            UpdateFailureAction::Pause => "pause",
            UpdateFailureAction::Continue => "continue",
            UpdateFailureAction::Rollback => "rollback",
        }),
        "endpoint_mode" => EndpointMode::try_from(n).ok().map(|m| match m {
            EndpointMode::Vip => "vip",
            EndpointMode::Dnsrr => "dnsrr",
        }),
        "condition" => RestartCondition::try_from(n).ok().map(|c| match c {
            RestartCondition::Any => "any",
            RestartCondition::OnFailure => "on-failure",
            RestartCondition::None => "none",
        }),
        _ => None,
    });
    name.map_or_else(|| plain(v), str::to_string)
}

fn is_scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) if s.is_empty() => "\"\"".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::ReplicatedMode;
    use crate::v1::service_spec::Mode;

    fn spec(image: &str, replicas: u64, env: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            image: image.into(),
            mode: Some(Mode::Replicated(ReplicatedMode { replicas })),
            env: env.iter().map(|e| e.to_string()).collect(),
            ..Default::default()
        }
    }

    fn created(s: ServiceSpec) -> Service {
        Service {
            id: "s1".into(),
            history: vec![first_version(&s, 1)],
            spec: Some(s),
            spec_version: 1,
            ..Default::default()
        }
    }

    #[test]
    fn an_update_moves_spec_previous_history_and_status_together() {
        let mut service = created(spec("web:1", 3, &["A=0"]));
        record(
            &mut service,
            spec("web:2", 3, &["A=1"]),
            Cause::Update,
            50,
            "updating",
        );
        assert_eq!(service.spec_version, 2);
        assert_eq!(
            service.spec.as_ref().map(|s| s.image.as_str()),
            Some("web:2")
        );
        assert_eq!(
            service.previous_spec.as_ref().map(|s| s.image.as_str()),
            Some("web:1")
        );
        let last = service.history.last().expect("history");
        assert_eq!((last.version, last.created_ms), (2, 50));
        assert_eq!(last.change, "image web:1 -> web:2, env +A=1 -A=0");
        let status = service.update_status.clone().expect("status");
        assert_eq!(status.state, State::Updating as i32);
        assert_eq!(
            (status.from_version, status.to_version, status.started_ms),
            (1, 2, 50)
        );

        // A scale is a new version but no rollout.
        record(
            &mut service,
            spec("web:2", 5, &["A=1"]),
            Cause::Update,
            60,
            "scaling",
        );
        assert_eq!(
            service.history.last().map(|v| v.change.as_str()),
            Some("replicas 3 -> 5")
        );
        assert_eq!(service.update_status.map(|s| s.to_version), Some(2));

        // Nested settings are named by their path.
        let mut tuned = spec("web:2", 5, &["A=1"]);
        tuned.update_config = Some(crate::v1::UpdateConfig {
            parallelism: 2,
            ..Default::default()
        });
        let before = service.spec.clone().unwrap_or_default();
        assert_eq!(
            describe_change(&before, &tuned),
            "update_config.parallelism 2"
        );
        let mut retuned = tuned.clone();
        if let Some(c) = retuned.update_config.as_mut() {
            c.parallelism = 4;
            c.delay_ms = 500;
        }
        assert_eq!(
            describe_change(&tuned, &retuned),
            "update_config.delay_ms 0 -> 500, update_config.parallelism 2 -> 4"
        );
        assert_eq!(describe_change(&retuned, &retuned), "no change");
        let mut reordered = retuned.clone();
        if let Some(c) = reordered.update_config.as_mut() {
            c.order = crate::v1::UpdateOrder::StartFirst as i32;
        }
        assert_eq!(
            describe_change(&retuned, &reordered),
            "update_config.order stop-first -> start-first"
        );
    }

    #[test]
    fn the_compose_settings_are_named_as_their_flags_write_them() {
        use crate::v1::{EndpointMode, Placement, PlacementPreference, Ulimit};
        let old = spec("web:1", 1, &[]);
        let mut new = old.clone();
        new.ulimits = vec![Ulimit {
            name: "nofile".into(),
            soft: 123,
            hard: 456,
        }];
        new.init = true;
        new.container_labels = [("team".to_string(), "a".to_string())].into();
        new.endpoint_mode = EndpointMode::Dnsrr as i32;
        new.placement = Some(Placement {
            preferences: vec![PlacementPreference {
                spread: "node.labels.zone".into(),
            }],
            max_replicas_per_node: 2,
            ..Default::default()
        });
        assert_eq!(
            describe_change(&old, &new),
            "container_labels.team a, endpoint_mode vip -> dnsrr, init false -> true, \
             placement.max_replicas_per_node 2, \
             placement.preferences +spread=node.labels.zone, ulimits +nofile=123:456"
        );
        let mut reached = old.clone();
        reached.endpoint_mode = EndpointMode::Dnsrr as i32;
        assert!(
            !replaces_tasks(&old, &reached),
            "the endpoint mode restarts no task"
        );
        assert!(
            replaces_tasks(&reached, &new),
            "ulimits, init, labels, placement do"
        );
        let mut back = new.clone();
        back.container_labels.clear();
        back.ulimits[0].soft = 200;
        assert_eq!(
            describe_change(&new, &back),
            "container_labels.team removed, ulimits +nofile=200:456 -nofile=123:456"
        );
    }

    #[test]
    fn history_keeps_the_last_ten() {
        let mut service = created(spec("web:0", 1, &[]));
        for i in 1..=12 {
            record(
                &mut service,
                spec(&format!("web:{i}"), 1, &[]),
                Cause::Update,
                i,
                "",
            );
        }
        assert_eq!(service.history.len(), HISTORY_LEN);
        assert_eq!(service.history.first().map(|v| v.version), Some(4));
        assert_eq!(service.history.last().map(|v| v.version), Some(13));
    }

    #[test]
    fn rolling_back_twice_goes_further_back() {
        let mut service = created(spec("web:1", 1, &[]));
        record(&mut service, spec("web:2", 1, &[]), Cause::Update, 2, "");
        record(&mut service, spec("web:3", 1, &[]), Cause::Update, 3, "");
        let target = rollback_target(&service, 0).expect("target").clone();
        assert_eq!(target.version, 2);
        let restores = target.version;
        record(
            &mut service,
            target.spec.unwrap_or_default(),
            Cause::Rollback { restores },
            4,
            "rolling back",
        );
        assert_eq!(
            service.update_status.as_ref().map(|s| s.state),
            Some(State::RollbackStarted as i32)
        );
        assert_eq!(
            service.history.last().map(|v| v.change.as_str()),
            Some("rollback to version 2: image web:3 -> web:2")
        );
        // Version 4 restores 2: the next rollback goes to 1, not back to 3.
        assert_eq!(rollback_target(&service, 0).map(|v| v.version), Ok(1));
        assert_eq!(rollback_target(&service, 3).map(|v| v.version), Ok(3));
        assert!(matches!(
            rollback_target(&service, 4),
            Err(HistoryError::Current { .. })
        ));
        assert!(matches!(
            rollback_target(&service, 9),
            Err(HistoryError::NotKept { .. })
        ));
        let first = created(spec("web:1", 1, &[]));
        assert!(matches!(
            rollback_target(&first, 0),
            Err(HistoryError::NothingBefore { version: 1, .. })
        ));
    }

    #[test]
    fn a_service_without_history_starts_one() {
        let mut service = Service {
            spec: Some(spec("web:1", 1, &[])),
            spec_version: 7,
            ..Default::default()
        };
        record(&mut service, spec("web:2", 1, &[]), Cause::Update, 9, "");
        let versions: Vec<u64> = service.history.iter().map(|v| v.version).collect();
        assert_eq!(versions, vec![7, 8]);
        assert_eq!(rollback_target(&service, 0).map(|v| v.version), Ok(7));
    }
}
