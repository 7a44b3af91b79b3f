//! Several `-c` files merged in order, docker/cli's rules
//! (`cli/compose/loader/merge.go`): top-level networks, volumes, configs and
//! secrets are replaced by name; services are merged key by key, mappings
//! (environment, labels, deploy, ...) recursively; `ports` are keyed by the
//! published port, `volumes` by target, `secrets`/`configs` by source, other
//! lists appended; scalars, `command`, `entrypoint` and `healthcheck.test`
//! replaced. Every node keeps its position, so an error after the merge
//! still names the file it came from.

use crate::yaml::{Key, Node, Value};

/// Lists whose items the later file replaces by this key.
fn list_key(list: &str, item: &Node) -> Option<String> {
    let text = item.scalar_text();
    match list {
        "ports" => match text {
            Some(t) => {
                let t = t.split('/').next().unwrap_or(&t).to_string();
                // [ip:]published:target -> published; a lone target has no key.
                let parts: Vec<&str> = t.rsplitn(3, ':').collect();
                (parts.len() >= 2).then(|| parts[1].to_string())
            }
            None => item.get("published").and_then(Node::scalar_text),
        },
        "volumes" => match text {
            Some(t) => {
                let parts: Vec<&str> = t.split(':').collect();
                Some(match parts.len() {
                    1 => parts[0].to_string(),
                    _ => parts[1].to_string(),
                })
            }
            None => item.get("target").and_then(Node::scalar_text),
        },
        "secrets" | "configs" => text.or_else(|| item.get("source").and_then(Node::scalar_text)),
        _ => None,
    }
}

const REPLACED_LISTS: &[&str] = &["command", "entrypoint", "test"];

/// `environment`/`labels` as lists (`- KEY=VALUE`) and `networks` as a list
/// (`- front`) turned into mappings, so files that write them differently
/// merge by key. Items that are not text are left for the typed pass to
/// report.
pub fn normalize_service(service: &mut Node) {
    let Value::Map(entries) = &mut service.value else {
        return;
    };
    for (key, value) in entries.iter_mut() {
        match key.name.as_str() {
            "environment" | "labels" => list_to_map(value, true),
            "networks" => list_to_map(value, false),
            "deploy" => {
                if let Value::Map(deploy) = &mut value.value {
                    for (k, v) in deploy.iter_mut() {
                        if k.name == "labels" {
                            list_to_map(v, true);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn list_to_map(node: &mut Node, split_equals: bool) {
    let Value::Seq(items) = &node.value else {
        return;
    };
    let mut entries: Vec<(Key, Node)> = Vec::with_capacity(items.len());
    for item in items {
        let Value::Str(text) = &item.value else {
            return;
        };
        let (name, value) = match text.split_once('=') {
            Some((k, v)) if split_equals => (k.to_string(), Value::Str(v.to_string())),
            _ => (text.clone(), Value::Null),
        };
        entries.retain(|(k, _)| k.name != name);
        entries.push((
            Key {
                name,
                at: item.at.clone(),
            },
            Node::new(value, item.at.clone()),
        ));
    }
    node.value = Value::Map(entries);
}

/// `over` (a later file) merged onto `base`.
pub fn merge_files(base: Node, over: Node) -> Node {
    let (Value::Map(mut base_entries), Value::Map(over_entries)) = (base.value, over.value.clone())
    else {
        return over;
    };
    for (key, value) in over_entries {
        let slot = base_entries.iter().position(|(k, _)| k.name == key.name);
        let merged = match (slot, key.name.as_str()) {
            (Some(i), "services") => by_name(base_entries.remove(i).1, value, true),
            (Some(i), "networks" | "volumes" | "configs" | "secrets") => {
                by_name(base_entries.remove(i).1, value, false)
            }
            _ => value,
        };
        base_entries.retain(|(k, _)| k.name != key.name);
        base_entries.push((key, merged));
    }
    Node::new(Value::Map(base_entries), base.at)
}

/// A mapping of named objects: a name in both is merged (services) or
/// replaced (the others).
fn by_name(base: Node, over: Node, deep: bool) -> Node {
    let (Value::Map(mut base_entries), Value::Map(over_entries)) = (base.value, over.value.clone())
    else {
        return over;
    };
    for (key, value) in over_entries {
        let merged = match base_entries.iter().position(|(k, _)| k.name == key.name) {
            Some(i) if deep => {
                let old = base_entries.remove(i).1;
                // `web:` with nothing under it changes nothing.
                if value.value == Value::Null {
                    old
                } else {
                    merge_value("", old, value)
                }
            }
            Some(i) => {
                base_entries.remove(i);
                value
            }
            None => value,
        };
        base_entries.push((key, merged));
    }
    Node::new(Value::Map(base_entries), base.at)
}

fn merge_value(name: &str, base: Node, over: Node) -> Node {
    match (base.value, over.value) {
        (Value::Map(mut base_entries), Value::Map(over_entries)) => {
            for (key, value) in over_entries {
                let merged = match base_entries.iter().position(|(k, _)| k.name == key.name) {
                    Some(i) => {
                        let old = base_entries.remove(i).1;
                        merge_value(&key.name, old, value)
                    }
                    None => value,
                };
                base_entries.push((key, merged));
            }
            Node::new(Value::Map(base_entries), base.at)
        }
        (Value::Seq(mut base_items), Value::Seq(over_items)) if !REPLACED_LISTS.contains(&name) => {
            for item in over_items {
                if let Some(k) = list_key(name, &item) {
                    base_items.retain(|old| list_key(name, old).as_deref() != Some(k.as_str()));
                }
                base_items.push(item);
            }
            Node::new(Value::Seq(base_items), base.at)
        }
        (_, value) => Node::new(value, over.at),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::yaml::parse;

    fn load(text: &str, file: &str) -> Node {
        let mut node = parse(text, &Arc::from(file)).unwrap();
        if let Value::Map(top) = &mut node.value {
            for (k, v) in top.iter_mut() {
                if k.name == "services"
                    && let Value::Map(services) = &mut v.value
                {
                    for (_, s) in services.iter_mut() {
                        normalize_service(s);
                    }
                }
            }
        }
        node
    }

    fn texts(node: &Node) -> Vec<String> {
        match &node.value {
            Value::Seq(items) => items
                .iter()
                .map(|i| {
                    i.scalar_text().unwrap_or_else(|| {
                        format!("{:?}", i.get("target").map(|t| t.scalar_text()))
                    })
                })
                .collect(),
            _ => panic!("not a list"),
        }
    }

    #[test]
    fn services_merge_key_by_key() {
        let a = load(
            "services:\n  web:\n    image: a\n    command: [x, y]\n    environment: [A=1, B=2]\n    ports: ['80:80', '443:443']\n    volumes: ['d:/data', '/logs']\n    cap_add: [NET_ADMIN]\n    deploy: {replicas: 2, resources: {limits: {memory: 1g}}}\nnetworks:\n  n: {driver: overlay, labels: {a: b}}\n",
            "a.yml",
        );
        let b = load(
            "services:\n  web:\n    image: b\n    command: [z]\n    environment: {B: 3, C: 4}\n    ports: ['8080:443']\n    volumes: ['e:/data']\n    cap_add: [SYS_TIME]\n    deploy: {resources: {limits: {cpus: '1'}}}\n  db:\n    image: pg\nnetworks:\n  n: {labels: {c: d}}\n",
            "b.yml",
        );
        let m = merge_files(a, b);
        let web = m.get("services").unwrap().get("web").unwrap();
        assert_eq!(web.get("image").unwrap().scalar_text().unwrap(), "b");
        assert_eq!(web.get("image").unwrap().at.file.as_ref(), "b.yml");
        assert_eq!(texts(web.get("command").unwrap()), ["z"]);
        let env = web.get("environment").unwrap();
        let keys: Vec<_> = env
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{}={}", k.name, v.scalar_text().unwrap()))
            .collect();
        assert_eq!(keys, ["A=1", "B=3", "C=4"]);
        assert_eq!(
            texts(web.get("ports").unwrap()),
            ["80:80", "443:443", "8080:443"]
        );
        assert_eq!(texts(web.get("volumes").unwrap()), ["/logs", "e:/data"]);
        assert_eq!(
            texts(web.get("cap_add").unwrap()),
            ["NET_ADMIN", "SYS_TIME"]
        );
        let limits = web
            .get("deploy")
            .unwrap()
            .get("resources")
            .unwrap()
            .get("limits")
            .unwrap();
        assert!(limits.get("memory").is_some() && limits.get("cpus").is_some());
        assert_eq!(
            web.get("deploy").unwrap().get("replicas").unwrap().value,
            Value::Int(2)
        );
        assert!(m.get("services").unwrap().get("db").is_some());
        // Top-level objects are replaced whole by name.
        let n = m.get("networks").unwrap().get("n").unwrap();
        assert!(n.get("driver").is_none() && n.get("labels").unwrap().get("c").is_some());
    }

    #[test]
    fn same_published_port_is_replaced_and_secrets_by_source() {
        let a = load(
            "services:\n  w:\n    ports: [{target: 80, published: 8080}]\n    secrets: [s, {source: t, target: x}]\n",
            "a.yml",
        );
        let b = load(
            "services:\n  w:\n    ports: ['8080:81']\n    secrets: [{source: s, mode: 0400}]\n",
            "b.yml",
        );
        let m = merge_files(a, b);
        let w = m.get("services").unwrap().get("w").unwrap();
        assert_eq!(texts(w.get("ports").unwrap()), ["8080:81"]);
        let secrets = match &w.get("secrets").unwrap().value {
            Value::Seq(items) => items.clone(),
            _ => panic!(),
        };
        assert_eq!(secrets.len(), 2);
        assert_eq!(
            secrets[0].get("source").unwrap().scalar_text().unwrap(),
            "t"
        );
        assert_eq!(
            secrets[1].get("mode").unwrap().scalar_text().unwrap(),
            "0400"
        );
    }

    #[test]
    fn networks_as_list_and_map_merge_by_name() {
        let a = load("services:\n  w:\n    networks: [front]\n", "a.yml");
        let b = load(
            "services:\n  w:\n    networks: {back: {aliases: [x]}}\n",
            "b.yml",
        );
        let m = merge_files(a, b);
        let nets = m
            .get("services")
            .unwrap()
            .get("w")
            .unwrap()
            .get("networks")
            .unwrap();
        let names: Vec<_> = nets
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.name.clone())
            .collect();
        assert_eq!(names, ["front", "back"]);
    }
}
