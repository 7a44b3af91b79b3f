//! The top level: services, networks, volumes, configs, secrets, and the
//! checks across them (every name a service uses is declared).

use std::collections::BTreeMap;

use super::Reader;
use crate::keys;
use crate::model::{FileObject, FilePath, Model, Network, ServiceVolume, Volume};
use crate::yaml::{Key, Node, Value};

/// The name of the network services join when they name none (Docker's).
pub const DEFAULT_NETWORK: &str = "default";

pub fn read_model(r: &mut Reader<'_>, root: &Node) -> Model {
    let mut model = Model::default();
    let Some(entries) = r.mapping(root, "the file", keys::TOP) else {
        return model;
    };
    let mut service_keys = BTreeMap::new();
    for (k, v) in entries {
        let Some(objects) = r.objects(k, v) else {
            continue;
        };
        for (key, node) in objects {
            let name = key.name.clone();
            match k.name.as_str() {
                "services" => {
                    if !valid_service_name(&name) {
                        r.error(&key.at, format!("service name {name:?} may only hold letters, digits, '.', '_' and '-'"));
                    }
                    if let Some(s) = r.service(key, node) {
                        service_keys.insert(name.clone(), key.clone());
                        model.services.insert(name, s);
                    }
                }
                "networks" => {
                    if let Some(n) = r.network(key, node) {
                        model.networks.insert(name, n);
                    }
                }
                "volumes" => {
                    if let Some(vol) = r.volume(key, node) {
                        model.volumes.insert(name, vol);
                    }
                }
                "configs" => {
                    if let Some(c) = r.file_object(key, node, "config", keys::CONFIG) {
                        model.configs.insert(name, c);
                    }
                }
                "secrets" => {
                    if let Some(s) = r.file_object(key, node, "secret", keys::SECRET) {
                        model.secrets.insert(name, s);
                    }
                }
                _ => {}
            }
        }
    }
    // Services that name no network join the stack's default one, which
    // exists without being declared (Docker's behaviour).
    for s in model.services.values_mut() {
        if s.networks.is_empty() {
            s.networks.push(DEFAULT_NETWORK.to_string());
        }
        if s.networks.iter().any(|n| n == DEFAULT_NETWORK) {
            model
                .networks
                .entry(DEFAULT_NETWORK.to_string())
                .or_default();
        }
    }
    check_references(r, &model, &service_keys);
    model
}

/// The Compose spec's service names: `[a-zA-Z0-9._-]+`.
fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Every network, volume, config and secret a service names is declared.
fn check_references(r: &mut Reader<'_>, model: &Model, keys: &BTreeMap<String, Key>) {
    for (name, s) in &model.services {
        let Some(key) = keys.get(name) else { continue };
        let mut missing = |kind: &str, what: &str| {
            r.error(
                &key.at,
                format!("service {name} uses {kind} {what:?}, which is not declared under the top-level {kind}s"),
            );
        };
        for n in &s.networks {
            if !model.networks.contains_key(n) {
                missing("network", n);
            }
        }
        for v in &s.volumes {
            if let ServiceVolume::Volume { source, .. } = v
                && !model.volumes.contains_key(source)
            {
                missing("volume", source);
            }
        }
        for c in &s.configs {
            if !model.configs.contains_key(&c.source) {
                missing("config", &c.source);
            }
        }
        for c in &s.secrets {
            if !model.secrets.contains_key(&c.source) {
                missing("secret", &c.source);
            }
        }
    }
}

impl Reader<'_> {
    /// The entries of a top-level section (null: none).
    fn objects<'n>(&mut self, key: &Key, node: &'n Node) -> Option<&'n [(Key, Node)]> {
        match &node.value {
            Value::Null => None,
            Value::Map(entries) => Some(entries),
            _ => {
                self.error(
                    &node.at,
                    format!(
                        "{}: expected a mapping of names, found {}",
                        key.name,
                        node.kind()
                    ),
                );
                None
            }
        }
        .map(|entries| entries.as_slice())
    }

    /// `external: true`, or the deprecated `external: {name: x}`; the name
    /// it gives, if any.
    fn external(&mut self, node: &Node, what: &str) -> (bool, Option<String>) {
        if let Value::Map(_) = node.value {
            let mut name = None;
            for (k, v) in self.mapping(node, what, keys::EXTERNAL).unwrap_or_default() {
                if k.name == "name" {
                    name = self.text(v, what);
                }
            }
            return (true, name);
        }
        (self.boolean(node, what).unwrap_or(false), None)
    }

    fn network(&mut self, key: &Key, node: &Node) -> Option<Network> {
        let what = format!("network {}", key.name);
        let mut n = Network::default();
        if node.value == Value::Null {
            return Some(n);
        }
        for (k, v) in self.mapping(node, &what, keys::NETWORK)? {
            let f = format!("{what}: {}", k.name);
            match k.name.as_str() {
                "name" => n.name = self.text(v, &f),
                "labels" => n.labels = self.string_map(v, &f),
                "external" => {
                    let (external, name) = self.external(v, &f);
                    n.external = external;
                    n.name = name.or(n.name.take());
                }
                "driver" => {
                    if let Some(driver) = self.opt_text(v, &f)
                        && !driver.is_empty()
                        && driver != "overlay"
                    {
                        self.error(&v.at, format!("{f}: berth's networks are overlay networks, driver {driver:?} is not supported (leave it out or write overlay)"));
                    }
                }
                "ipam" => n.subnet = self.ipam(v, &f),
                _ => {}
            }
        }
        Some(n)
    }

    fn ipam(&mut self, node: &Node, what: &str) -> Option<String> {
        let mut subnet = None;
        for (k, v) in self.mapping(node, what, keys::IPAM)? {
            if k.name != "config" {
                continue;
            }
            let items = self.list(v, &format!("{what}.config"));
            for (i, item) in items.iter().enumerate() {
                let entries = self
                    .mapping(item, &format!("{what}.config"), keys::IPAM_CONFIG)
                    .unwrap_or_default();
                if i > 0 {
                    self.warn(
                        &item.at,
                        format!(
                            "{what}.config: only the first subnet is used: a berth network has one"
                        ),
                    );
                    continue;
                }
                for (ck, cv) in entries {
                    if ck.name == "subnet" {
                        subnet = self.text(cv, &format!("{what}.config.subnet"));
                    }
                }
            }
        }
        subnet
    }

    fn volume(&mut self, key: &Key, node: &Node) -> Option<Volume> {
        let what = format!("volume {}", key.name);
        let mut vol = Volume::default();
        if node.value == Value::Null {
            return Some(vol);
        }
        for (k, v) in self.mapping(node, &what, keys::VOLUME)? {
            let f = format!("{what}: {}", k.name);
            match k.name.as_str() {
                "name" => vol.name = self.text(v, &f),
                "labels" => vol.labels = self.string_map(v, &f),
                "external" => {
                    let (external, name) = self.external(v, &f);
                    vol.external = external;
                    vol.name = name.or(vol.name.take());
                }
                "driver" => {
                    if let Some(driver) = self.opt_text(v, &f)
                        && !driver.is_empty()
                        && driver != "local"
                    {
                        self.error(&v.at, format!("{f}: berth's volumes are local volumes, driver {driver:?} is not supported (leave it out or write local)"));
                    }
                }
                _ => {}
            }
        }
        Some(vol)
    }

    fn file_object(
        &mut self,
        key: &Key,
        node: &Node,
        kind: &str,
        table: keys::Table,
    ) -> Option<FileObject> {
        let what = format!("{kind} {}", key.name);
        let mut o = FileObject {
            name: None,
            file: None,
            content: None,
            environment: None,
            external: false,
            labels: BTreeMap::new(),
            at: key.at.clone(),
        };
        for (k, v) in self.mapping(node, &what, table)? {
            let f = format!("{what}: {}", k.name);
            match k.name.as_str() {
                "name" => o.name = self.text(v, &f),
                "labels" => o.labels = self.string_map(v, &f),
                "file" => {
                    o.file = self.text(v, &f).map(|t| FilePath {
                        path: self.path(&t),
                        required: true,
                        at: v.at.clone(),
                    })
                }
                "content" => o.content = self.text(v, &f),
                "environment" => o.environment = self.text(v, &f),
                "external" => {
                    let (external, name) = self.external(v, &f);
                    o.external = external;
                    o.name = name.or(o.name.take());
                }
                _ => {}
            }
        }
        let sources = [
            o.file.is_some(),
            o.content.is_some(),
            o.environment.is_some(),
            o.external,
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if sources != 1 {
            let choices = if kind == "config" {
                "file, content, environment or external: true"
            } else {
                "file, environment or external: true"
            };
            self.error(
                &key.at,
                format!("{what}: expected exactly one of {choices}"),
            );
        }
        Some(o)
    }
}

#[cfg(test)]
mod tests {
    use super::super::read_text;

    fn errors_of(text: &str) -> Vec<String> {
        read_text(text, &[])
            .1
            .errors
            .iter()
            .map(|e| e.message.clone())
            .collect()
    }

    #[test]
    fn services_without_networks_join_default() {
        let (model, diag) = read_text(
            "services:\n  a: {image: a}\n  b: {image: b, networks: [default, front]}\n  c: {image: c, networks: [front]}\nnetworks:\n  front:\n",
            &[],
        );
        assert!(diag.errors.is_empty(), "{:?}", diag.errors);
        assert_eq!(model.services["a"].networks, ["default"]);
        assert_eq!(
            model.networks.keys().collect::<Vec<_>>(),
            ["default", "front"]
        );
        let (model, _) = read_text(
            "services:\n  c: {image: c, networks: [front]}\nnetworks:\n  front:\n",
            &[],
        );
        assert!(!model.networks.contains_key("default"), "nobody uses it");
    }

    #[test]
    fn networks_volumes_and_external_names() {
        let (model, diag) = read_text(
            "networks:\n  n:\n    ipam: {config: [{subnet: 10.1.0.0/24}, {subnet: 10.2.0.0/24}]}\n    attachable: true\n  old:\n    external: {name: legacy}\n  ext: {external: true}\nvolumes:\n  v: {name: exact, labels: [a=b]}\n",
            &[],
        );
        assert!(diag.errors.is_empty(), "{:?}", diag.errors);
        assert_eq!(model.networks["n"].subnet.as_deref(), Some("10.1.0.0/24"));
        assert!(model.networks["old"].external);
        assert_eq!(model.networks["old"].name.as_deref(), Some("legacy"));
        assert!(model.networks["ext"].external && model.networks["ext"].name.is_none());
        assert_eq!(model.volumes["v"].name.as_deref(), Some("exact"));
        let warnings: Vec<_> = diag.warnings.iter().map(|w| w.message.clone()).collect();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("only the first subnet is used")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("`attachable`")),
            "{warnings:?}"
        );
    }

    #[test]
    fn configs_and_secrets_need_one_source() {
        let errors = errors_of(
            "configs:\n  a: {file: x, content: y}\n  b: {labels: {k: v}}\nsecrets:\n  s: {content: y}\n",
        );
        assert_eq!(
            errors,
            [
                "config a: expected exactly one of file, content, environment or external: true",
                "config b: expected exactly one of file, content, environment or external: true",
                "unknown key `content` in secret s (allowed: name, file, environment, external, labels, driver, driver_opts, template_driver)",
                "secret s: expected exactly one of file, environment or external: true",
            ]
        );
    }

    #[test]
    fn drivers_and_names() {
        let errors =
            errors_of("services:\n  'web app': {image: a}\nvolumes:\n  v: {driver: nfs}\n");
        assert!(
            errors[0].contains("service name \"web app\" may only hold"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("driver \"nfs\" is not supported"),
            "{errors:?}"
        );
        let (_, diag) = read_text("name: x\nversion: '3.9'\nservices: {}\n", &[]);
        let warnings: Vec<_> = diag.warnings.iter().map(|w| w.message.clone()).collect();
        assert_eq!(
            warnings,
            ["`name` of the file is ignored: the stack is named on the command line"]
        );
    }
}
