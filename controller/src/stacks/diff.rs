//! Field-by-field differences of two specs, for `stack diff` and the plan a
//! deploy answers with: a JSON tree diff of normalised specs (lists whose
//! order means nothing sorted), one `FieldChange` per differing leaf.

use berth_proto::v1::{FieldChange, ServiceSpec};
use serde::Serialize;
use serde_json::Value;

/// Longest value text shown; the rest is cut with "…".
const MAX_TEXT: usize = 160;

/// The fields `to` changes of `from` ("env", "replicas", "ports",
/// "healthcheck.interval_ms", "image").
pub fn service_fields(from: &ServiceSpec, to: &ServiceSpec) -> Vec<FieldChange> {
    let mut changes = fields(&normalised(from), &normalised(to));
    // By the names users read ("replicas" sits under "mode" in the tree).
    changes.sort_by(|a, b| a.field.cmp(&b.field));
    changes
}

/// The differing fields of two values of any message type.
pub fn fields<T: Serialize>(from: &T, to: &T) -> Vec<FieldChange> {
    fields_at("", from, to)
}

/// As [`fields`], with paths under `path` ("labels": "labels.tier").
pub fn fields_at<T: Serialize>(path: &str, from: &T, to: &T) -> Vec<FieldChange> {
    let (Ok(a), Ok(b)) = (serde_json::to_value(from), serde_json::to_value(to)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(path, &a, &b, &mut out);
    out
}

/// The spec with the lists whose order does not matter sorted, and the
/// replica count lifted out of the mode's oneof (shown as "replicas").
fn normalised(spec: &ServiceSpec) -> ServiceSpec {
    let mut spec = spec.clone();
    spec.env.sort();
    spec.networks.sort();
    spec.ports
        .sort_by_key(|p| (p.published_port, p.protocol, p.target_port));
    spec.secrets.sort_by(|a, b| a.target.cmp(&b.target));
    spec.configs.sort_by(|a, b| a.target.cmp(&b.target));
    spec
}

fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<FieldChange>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let from = x.get(key).unwrap_or(&Value::Null);
                let to = y.get(key).unwrap_or(&Value::Null);
                walk(&join(path, key), from, to, out);
            }
        }
        // Lists of messages of the same length: element by element.
        (Value::Array(x), Value::Array(y))
            if x.len() == y.len() && x.iter().chain(y).all(Value::is_object) =>
        {
            for (i, (from, to)) in x.iter().zip(y).enumerate() {
                walk(&format!("{path}[{i}]"), from, to, out);
            }
        }
        _ => out.push(FieldChange {
            field: shown_path(path),
            from: text(a),
            to: text(b),
        }),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The replica count sits in the mode's oneof (`mode.Replicated.replicas`):
/// users call it "replicas".
fn shown_path(path: &str) -> String {
    match path {
        "mode.Replicated.replicas" => "replicas".to_string(),
        _ => path.to_string(),
    }
}

/// Short text of a value: strings as they are, lists of strings joined,
/// everything else compact JSON; nothing for a value that is not set.
pub fn text(value: &Value) -> String {
    let full = match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    if full.chars().count() > MAX_TEXT {
        let cut: String = full.chars().take(MAX_TEXT).collect();
        format!("{cut}…")
    } else {
        full
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::service_spec::Mode;
    use berth_proto::v1::{HealthCheck, PortConfig, ReplicatedMode};

    fn spec() -> ServiceSpec {
        ServiceSpec {
            name: "demo_web".into(),
            image: "nginx:1".into(),
            env: vec!["B=2".into(), "A=1".into()],
            mode: Some(Mode::Replicated(ReplicatedMode { replicas: 2 })),
            ports: vec![
                PortConfig {
                    published_port: 81,
                    target_port: 81,
                    ..Default::default()
                },
                PortConfig {
                    published_port: 80,
                    target_port: 80,
                    ..Default::default()
                },
            ],
            healthcheck: Some(HealthCheck {
                interval_ms: 1000,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn order_that_means_nothing_is_no_change() {
        let mut other = spec();
        other.env.reverse();
        other.ports.reverse();
        assert_eq!(service_fields(&spec(), &other), Vec::new());
    }

    #[test]
    fn each_changed_field_is_named_with_both_values() {
        let mut to = spec();
        to.image = "nginx:2".into();
        to.env = vec!["A=1".into(), "B=3".into()];
        to.mode = Some(Mode::Replicated(ReplicatedMode { replicas: 5 }));
        to.healthcheck.as_mut().expect("check").interval_ms = 2000;
        to.ports[0].published_port = 8081;
        let changes = service_fields(&spec(), &to);
        let shown: Vec<(&str, &str, &str)> = changes
            .iter()
            .map(|c| (c.field.as_str(), c.from.as_str(), c.to.as_str()))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("env", "A=1, B=2", "A=1, B=3"),
                ("healthcheck.interval_ms", "1000", "2000"),
                ("image", "nginx:1", "nginx:2"),
                ("ports[1].published_port", "81", "8081"),
                ("replicas", "2", "5"),
            ]
        );
    }
}
