//! One service of the file: its keys, its deploy section.

use std::collections::BTreeMap;

use super::Reader;
use crate::keys;
use crate::model::{
    Amounts, Deploy, FilePath, FileReference, Healthcheck, Placement, Port, Resources,
    RestartPolicy, Service, ServiceVolume, Ulimit, UpdateConfig,
};
use crate::values::{self, parse_short_port, parse_short_volume};
use crate::yaml::{Key, Node, Value};

impl Reader<'_> {
    pub fn service(&mut self, key: &Key, node: &Node) -> Option<Service> {
        let what = format!("service {}", key.name);
        let entries = self.mapping(node, &what, keys::SERVICE)?;
        let mut s = Service::default();
        let mut restart = None;
        let mut deploy = None;
        let mut has_image = false;
        for (k, v) in entries {
            let field = format!("{what}: {}", k.name);
            let f = field.as_str();
            match k.name.as_str() {
                "image" => {
                    if let Some(image) = self.text(v, f) {
                        has_image = !image.is_empty();
                        s.image = image;
                    }
                }
                "entrypoint" => s.entrypoint = self.command(v, f),
                "command" => s.command = self.command(v, f),
                "environment" => s.environment = self.environment(v, f),
                "env_file" => s.env_file = self.env_files(v, f),
                "ports" => s.ports = self.ports(v, f),
                "networks" => s.networks = self.service_networks(v, f),
                "volumes" => s.volumes.extend(self.volumes(v, f)),
                "tmpfs" => {
                    let mounts = self.tmpfs(v, f);
                    s.volumes.extend(mounts);
                }
                "healthcheck" => s.healthcheck = self.healthcheck(v, f),
                "configs" => s.configs = self.file_references(v, f),
                "secrets" => s.secrets = self.file_references(v, f),
                "labels" => s.labels = self.string_map(v, f),
                "hostname" => s.hostname = self.opt_text(v, f),
                "user" => s.user = self.opt_text(v, f),
                "working_dir" => s.working_dir = self.opt_text(v, f),
                "stop_grace_period" => s.stop_grace_period = self.duration(v, f),
                "stop_signal" => s.stop_signal = self.opt_text(v, f),
                "ulimits" => s.ulimits = self.ulimits(v, f),
                "init" => s.init = self.boolean(v, f).unwrap_or(false),
                "read_only" => s.read_only = self.boolean(v, f).unwrap_or(false),
                "cap_add" => s.cap_add = self.strings(v, f),
                "cap_drop" => s.cap_drop = self.strings(v, f),
                "tty" => s.tty = self.boolean(v, f).unwrap_or(false),
                "stdin_open" => s.stdin_open = self.boolean(v, f).unwrap_or(false),
                "restart" => restart = self.restart(v, f),
                "deploy" => deploy = Some(v),
                _ => {}
            }
        }
        if !has_image {
            self.error(
                &key.at,
                format!(
                    "{what} has no image: berth deploys images (build and push it, then name it in image)"
                ),
            );
        }
        s.deploy = match deploy {
            Some(node) if node.value != Value::Null => self.deploy(node, &what)?,
            _ => Deploy {
                mode: "replicated".into(),
                replicas: 1,
                endpoint_mode: "vip".into(),
                ..Deploy::default()
            },
        };
        if s.deploy.restart_policy.is_none() {
            s.deploy.restart_policy = restart;
        }
        Some(s)
    }

    /// A string is split as a shell would (no variables, no globs); a list
    /// is taken as it is.
    fn command(&mut self, node: &Node, what: &str) -> Option<Vec<String>> {
        match &node.value {
            Value::Null => None,
            Value::Seq(_) => Some(self.strings(node, what)),
            _ => {
                let text = self.text(node, what)?;
                match shlex::split(&text) {
                    Some(words) => Some(words),
                    None => {
                        self.error(&node.at, format!("{what}: unbalanced quotes in {text:?}"));
                        None
                    }
                }
            }
        }
    }

    fn environment(&mut self, node: &Node, what: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(entries) = node.as_map() else {
            if node.value != Value::Null {
                self.error(
                    &node.at,
                    format!(
                        "{what}: expected a mapping or a list of KEY=VALUE, found {}",
                        node.kind()
                    ),
                );
            }
            return out;
        };
        for (k, v) in entries {
            let value = match &v.value {
                // A bare KEY: the value from the environment, left out when unset.
                Value::Null => self.env.get(&k.name).cloned(),
                _ => self.text(v, &format!("{what} {}", k.name)),
            };
            if let Some(value) = value {
                out.insert(k.name.clone(), value);
            }
        }
        out
    }

    fn env_files(&mut self, node: &Node, what: &str) -> Vec<FilePath> {
        let items: Vec<&Node> = match &node.value {
            Value::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        let mut out = Vec::new();
        for item in items {
            let (path_node, required) = match &item.value {
                Value::Map(_) => {
                    let mut path = None;
                    let mut required = true;
                    for (k, v) in item.as_map().unwrap_or_default() {
                        match k.name.as_str() {
                            "path" => path = Some(v),
                            "required" => required = self.boolean(v, what).unwrap_or(true),
                            "format" => self.warn(
                                &k.at,
                                format!(
                                    "`format` of {what} is ignored: env files are KEY=VALUE lines"
                                ),
                            ),
                            n if n.starts_with("x-") => {}
                            n => self.error(
                                &k.at,
                                format!(
                                    "unknown key `{n}` in {what} (allowed: path, required, format)"
                                ),
                            ),
                        }
                    }
                    match path {
                        Some(p) => (p, required),
                        None => {
                            self.error(&item.at, format!("{what}: an env_file entry needs a path"));
                            continue;
                        }
                    }
                }
                _ => (item, true),
            };
            if let Some(text) = self.text(path_node, what) {
                out.push(FilePath {
                    path: self.path(&text),
                    required,
                    at: path_node.at.clone(),
                });
            }
        }
        out
    }

    fn ports(&mut self, node: &Node, what: &str) -> Vec<Port> {
        let items = self.list(node, what);
        let mut out = Vec::new();
        for item in items {
            match &item.value {
                Value::Map(_) => {
                    if let Some(p) = self.long_port(item, what) {
                        out.push(p);
                    }
                }
                _ => {
                    let Some(spec) = self.text(item, what) else {
                        continue;
                    };
                    match parse_short_port(&spec) {
                        Ok(ports) => {
                            for p in ports {
                                if let Some(ip) = &p.host_ip {
                                    self.warn(&item.at, format!("{what}: the host IP {ip} of {spec:?} is dropped: published ports answer on every address of the node"));
                                }
                                let published =
                                    self.published_or_target(p.published, p.target, item, what);
                                out.push(Port {
                                    target: p.target,
                                    published,
                                    protocol: p.protocol,
                                    mode: "ingress".into(),
                                });
                            }
                        }
                        Err(e) => self.error(&item.at, format!("{what}: {e}")),
                    }
                }
            }
        }
        out
    }

    fn published_or_target(
        &mut self,
        published: Option<u32>,
        target: u32,
        at: &Node,
        what: &str,
    ) -> u32 {
        published.unwrap_or_else(|| {
            self.warn(&at.at, format!("{what}: port {target} has no published port: berth publishes it on {target} (Docker would pick a free one)"));
            target
        })
    }

    fn long_port(&mut self, node: &Node, what: &str) -> Option<Port> {
        let entries = self.mapping(node, &format!("{what} entry"), keys::PORT)?;
        let (mut target, mut published) = (None, None);
        let (mut protocol, mut mode) = ("tcp".to_string(), "ingress".to_string());
        for (k, v) in entries {
            let f = format!("{what}: {}", k.name);
            match k.name.as_str() {
                "target" => target = self.parsed(v, &f, values::parse_port),
                "published" => published = self.parsed(v, &f, values::parse_port),
                "protocol" => protocol = self.choice(v, &f, &["tcp", "udp"]).unwrap_or(protocol),
                "mode" => mode = self.choice(v, &f, &["ingress", "host"]).unwrap_or(mode),
                _ => {}
            }
        }
        let Some(target) = target else {
            self.error(&node.at, format!("{what}: a port needs a target"));
            return None;
        };
        let published = self.published_or_target(published, target, node, what);
        Some(Port {
            target,
            published,
            protocol,
            mode,
        })
    }

    fn service_networks(&mut self, node: &Node, what: &str) -> Vec<String> {
        let Some(entries) = node.as_map() else {
            if node.value != Value::Null {
                self.error(
                    &node.at,
                    format!(
                        "{what}: expected a list or mapping of networks, found {}",
                        node.kind()
                    ),
                );
            }
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            if v.value != Value::Null {
                self.mapping(v, &format!("{what} {}", k.name), keys::SERVICE_NETWORK);
            }
            out.push(k.name.clone());
        }
        out
    }

    fn volumes(&mut self, node: &Node, what: &str) -> Vec<ServiceVolume> {
        let items = self.list(node, what);
        let mut out = Vec::new();
        for item in items {
            let mount = match &item.value {
                Value::Map(_) => self.long_volume(item, what),
                _ => self.short_volume(item, what),
            };
            out.extend(mount);
        }
        out
    }

    fn anonymous(&mut self, node: &Node, what: &str, target: String) -> ServiceVolume {
        self.warn(&node.at, format!("{what}: the anonymous volume at {target} becomes a tmpfs: its data is lost when the task ends (name a volume to keep it)"));
        ServiceVolume::Tmpfs {
            target,
            size: None,
            mode: None,
        }
    }

    /// A bind when the source is a path, else a named volume.
    fn source_mount(&self, source: &str, target: String, read_only: bool) -> ServiceVolume {
        if source.starts_with(['/', '.', '~']) {
            ServiceVolume::Bind {
                source: self.path(source).display().to_string(),
                target,
                read_only,
            }
        } else {
            ServiceVolume::Volume {
                source: source.to_string(),
                target,
                read_only,
            }
        }
    }

    fn short_volume(&mut self, node: &Node, what: &str) -> Option<ServiceVolume> {
        let spec = self.text(node, what)?;
        let v = match parse_short_volume(&spec) {
            Ok(v) => v,
            Err(e) => {
                self.error(&node.at, format!("{what}: {e}"));
                return None;
            }
        };
        let mut read_only = false;
        for o in &v.options {
            match o.as_str() {
                "ro" => read_only = true,
                "rw" => read_only = false,
                other => self.warn(&node.at, format!("{what}: the option {other:?} of {spec:?} is ignored: berth mounts take ro or rw")),
            }
        }
        Some(match v.source {
            None => self.anonymous(node, what, v.target),
            Some(source) => self.source_mount(&source, v.target, read_only),
        })
    }

    fn long_volume(&mut self, node: &Node, what: &str) -> Option<ServiceVolume> {
        let entries = self.mapping(node, &format!("{what} entry"), keys::VOLUME_MOUNT)?;
        let (mut kind, mut source, mut target) = (None, None, None);
        let (mut read_only, mut size, mut mode) = (false, None, None);
        for (k, v) in entries {
            let f = format!("{what}: {}", k.name);
            match k.name.as_str() {
                "type" => kind = self.choice(v, &f, &["bind", "volume", "tmpfs"]),
                "source" => source = self.opt_text(v, &f).filter(|s| !s.is_empty()),
                "target" => target = self.text(v, &f),
                "read_only" => read_only = self.boolean(v, &f).unwrap_or(false),
                "bind" => {
                    self.mapping(v, &format!("{what} bind"), keys::BIND);
                }
                "volume" => {
                    self.mapping(v, &format!("{what} volume"), keys::VOLUME_OPTIONS);
                }
                "tmpfs" => {
                    for (tk, tv) in self
                        .mapping(v, &format!("{what} tmpfs"), keys::TMPFS)
                        .unwrap_or_default()
                    {
                        match tk.name.as_str() {
                            "size" => size = self.bytes(tv, &f),
                            // The spec writes a tmpfs mode in octal, also
                            // as a plain number (`mode: 1777`).
                            "mode" => {
                                mode = match &tv.value {
                                    Value::Int(i) => self.octal_digits(*i, tv, &f),
                                    _ => self.mode(tv, &f),
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let Some(target) = target else {
            self.error(&node.at, format!("{what}: a mount needs a target"));
            return None;
        };
        match (kind.as_deref(), source) {
            (None, _) => {
                if node.get("type").is_none() {
                    self.error(
                        &node.at,
                        format!("{what}: a mount needs a type (bind, volume or tmpfs)"),
                    );
                }
                None
            }
            (Some("tmpfs"), _) => Some(ServiceVolume::Tmpfs { target, size, mode }),
            (Some("bind"), Some(source)) => Some(ServiceVolume::Bind {
                source: self.path(&source).display().to_string(),
                target,
                read_only,
            }),
            (Some("bind"), None) => {
                self.error(&node.at, format!("{what}: a bind needs a source"));
                None
            }
            (_, Some(source)) => Some(ServiceVolume::Volume {
                source,
                target,
                read_only,
            }),
            (_, None) => Some(self.anonymous(node, what, target)),
        }
    }

    /// `tmpfs: /run` or a list of `PATH[:size=64m,mode=1777]`.
    fn tmpfs(&mut self, node: &Node, what: &str) -> Vec<ServiceVolume> {
        let mut out = Vec::new();
        let items: Vec<Node> = match &node.value {
            Value::Seq(items) => items.clone(),
            _ => vec![node.clone()],
        };
        for item in &items {
            let Some(spec) = self.text(item, what) else {
                continue;
            };
            let (target, options) = spec.split_once(':').unwrap_or((&spec, ""));
            let (mut size, mut mode) = (None, None);
            for o in options.split(',').filter(|o| !o.is_empty()) {
                match o.split_once('=') {
                    Some(("size", v)) => match values::parse_bytes(v) {
                        Ok(b) => size = Some(b),
                        Err(e) => self.error(&item.at, format!("{what}: {e}")),
                    },
                    Some(("mode", v)) => match values::parse_mode(&format!("0{v}")) {
                        Ok(m) => mode = Some(m),
                        Err(e) => self.error(&item.at, format!("{what}: {e}")),
                    },
                    _ => self.warn(
                        &item.at,
                        format!(
                            "{what}: the tmpfs option {o:?} is ignored: berth takes size and mode"
                        ),
                    ),
                }
            }
            out.push(ServiceVolume::Tmpfs {
                target: target.to_string(),
                size,
                mode,
            });
        }
        out
    }

    /// `1777` read as the octal mode 0o1777.
    fn octal_digits(&mut self, digits: i64, node: &Node, what: &str) -> Option<u32> {
        let text = format!("0{digits}");
        match values::parse_mode(&text) {
            Ok(m) => Some(m),
            Err(e) => {
                self.error(&node.at, format!("{what}: {e}"));
                None
            }
        }
    }

    fn mode(&mut self, node: &Node, what: &str) -> Option<u32> {
        if let Value::Int(i) = node.value {
            return match u32::try_from(i) {
                Ok(m) if m <= 0o7777 => Some(m),
                _ => {
                    self.error(
                        &node.at,
                        format!("{what}: mode {i} is not a permission mode (0 to 07777)"),
                    );
                    None
                }
            };
        }
        self.parsed(node, what, values::parse_mode)
    }

    fn healthcheck(&mut self, node: &Node, what: &str) -> Option<Healthcheck> {
        let entries = self.mapping(node, what, keys::HEALTHCHECK)?;
        let mut h = Healthcheck::default();
        for (k, v) in entries {
            let f = format!("{what} {}", k.name);
            match k.name.as_str() {
                "test" => match &v.value {
                    Value::Seq(items) => {
                        let words: Vec<String> =
                            items.iter().filter_map(|i| self.text(i, &f)).collect();
                        match words.split_first() {
                            Some((first, rest)) if first == "CMD" => h.test = rest.to_vec(),
                            Some((first, rest)) if first == "CMD-SHELL" => {
                                h.test = vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
                            }
                            Some((first, _)) if first == "NONE" => h.disable = true,
                            _ => self.error(
                                &v.at,
                                format!(
                                    "{f}: expected a list starting with CMD, CMD-SHELL or NONE"
                                ),
                            ),
                        }
                    }
                    _ => {
                        if let Some(cmd) = self.text(v, &f) {
                            h.test = vec!["/bin/sh".into(), "-c".into(), cmd];
                        }
                    }
                },
                "interval" => h.interval = self.duration(v, &f),
                "timeout" => h.timeout = self.duration(v, &f),
                "start_period" => h.start_period = self.duration(v, &f),
                "retries" => h.retries = self.u32(v, &f),
                "disable" => h.disable |= self.boolean(v, &f).unwrap_or(false),
                _ => {}
            }
        }
        if h.disable {
            h = Healthcheck {
                disable: true,
                ..Healthcheck::default()
            };
        }
        Some(h)
    }

    fn file_references(&mut self, node: &Node, what: &str) -> Vec<FileReference> {
        let items = self.list(node, what);
        let mut out = Vec::new();
        for item in items {
            if !matches!(item.value, Value::Map(_)) {
                if let Some(source) = self.text(item, what) {
                    out.push(FileReference {
                        source,
                        target: None,
                        uid: None,
                        gid: None,
                        mode: None,
                    });
                }
                continue;
            }
            let Some(entries) = self.mapping(item, &format!("{what} entry"), keys::FILE_REFERENCE)
            else {
                continue;
            };
            let mut r = FileReference {
                source: String::new(),
                target: None,
                uid: None,
                gid: None,
                mode: None,
            };
            for (k, v) in entries {
                let f = format!("{what}: {}", k.name);
                match k.name.as_str() {
                    "source" => r.source = self.text(v, &f).unwrap_or_default(),
                    "target" => r.target = self.opt_text(v, &f),
                    "uid" => r.uid = self.u32(v, &f),
                    "gid" => r.gid = self.u32(v, &f),
                    "mode" => r.mode = self.mode(v, &f),
                    _ => {}
                }
            }
            if r.source.is_empty() {
                self.error(&item.at, format!("{what}: an entry needs a source"));
            } else {
                out.push(r);
            }
        }
        out
    }

    fn ulimits(&mut self, node: &Node, what: &str) -> BTreeMap<String, Ulimit> {
        let mut out = BTreeMap::new();
        let Some(entries) = node.as_map() else {
            self.error(
                &node.at,
                format!("{what}: expected a mapping, found {}", node.kind()),
            );
            return out;
        };
        for (k, v) in entries {
            let f = format!("{what} {}", k.name);
            let limit = match &v.value {
                Value::Map(_) => {
                    let (mut soft, mut hard) = (None, None);
                    for (lk, lv) in self.mapping(v, &f, keys::ULIMIT).unwrap_or_default() {
                        match lk.name.as_str() {
                            "soft" => soft = self.int(lv, &f),
                            "hard" => hard = self.int(lv, &f),
                            _ => {}
                        }
                    }
                    match (soft, hard) {
                        (Some(soft), Some(hard)) => Some(Ulimit { soft, hard }),
                        _ => {
                            self.error(&v.at, format!("{f}: expected both soft and hard"));
                            None
                        }
                    }
                }
                _ => self.int(v, &f).map(|n| Ulimit { soft: n, hard: n }),
            };
            if let Some(limit) = limit {
                out.insert(k.name.clone(), limit);
            }
        }
        out
    }

    fn restart(&mut self, node: &Node, what: &str) -> Option<RestartPolicy> {
        let text = self.text(node, what)?;
        let (policy, attempts) = text.split_once(':').unwrap_or((&text, ""));
        let condition = match policy {
            "no" => "none",
            "always" | "unless-stopped" => "any",
            "on-failure" => "on-failure",
            _ => {
                self.error(&node.at, format!("{what}: expected no, always, unless-stopped or on-failure[:N], found {text:?}"));
                return None;
            }
        };
        let max_attempts = if attempts.is_empty() {
            None
        } else {
            match attempts.parse() {
                Ok(n) => Some(n),
                Err(_) => {
                    self.error(
                        &node.at,
                        format!(
                            "{what}: expected a whole number after on-failure:, found {attempts:?}"
                        ),
                    );
                    None
                }
            }
        };
        Some(RestartPolicy {
            condition: condition.into(),
            max_attempts,
            ..RestartPolicy::default()
        })
    }

    fn deploy(&mut self, node: &Node, service: &str) -> Option<Deploy> {
        let what = format!("{service} deploy");
        let entries = self.mapping(node, &what, keys::DEPLOY)?;
        let mut d = Deploy {
            mode: "replicated".into(),
            replicas: 1,
            endpoint_mode: "vip".into(),
            ..Deploy::default()
        };
        let mut replicas_at = None;
        for (k, v) in entries {
            let f = format!("{what}: {}", k.name);
            match k.name.as_str() {
                "mode" => {
                    if let Some(mode) = self.text(v, &f) {
                        match mode.as_str() {
                            "replicated" | "global" => d.mode = mode,
                            "replicated-job" | "global-job" => self.error(&v.at, format!("{f}: berth has no jobs ({mode}): run one-off tasks with `berth run`")),
                            _ => self.error(&v.at, format!("{f}: expected replicated or global, found {mode:?}")),
                        }
                    }
                }
                "replicas" => {
                    d.replicas = self.uint(v, &f).unwrap_or(1);
                    replicas_at = Some(v.at.clone());
                }
                "resources" => d.resources = self.resources(v, &f),
                "placement" => d.placement = self.placement(v, &f),
                "restart_policy" => d.restart_policy = self.restart_policy(v, &f),
                "update_config" => d.update_config = self.update_config(v, &f),
                "rollback_config" => d.rollback_config = self.update_config(v, &f),
                "labels" => d.labels = self.string_map(v, &f),
                "endpoint_mode" => {
                    d.endpoint_mode = self
                        .choice(v, &f, &["vip", "dnsrr"])
                        .unwrap_or(d.endpoint_mode)
                }
                _ => {}
            }
        }
        if d.mode == "global"
            && let Some(at) = replicas_at
        {
            self.error(
                &at,
                format!("{what}: replicas is for mode replicated, not global"),
            );
        }
        Some(d)
    }

    fn resources(&mut self, node: &Node, what: &str) -> Resources {
        let mut r = Resources::default();
        for (k, v) in self
            .mapping(node, what, keys::RESOURCES)
            .unwrap_or_default()
        {
            let f = format!("{what}.{}", k.name);
            let table = if k.name == "limits" {
                keys::LIMITS
            } else {
                keys::RESERVATIONS
            };
            let mut a = Amounts::default();
            for (ak, av) in self.mapping(v, &f, table).unwrap_or_default() {
                let af = format!("{f}.{}", ak.name);
                match ak.name.as_str() {
                    "cpus" => a.milli_cpus = self.parsed(av, &af, values::parse_cpus),
                    "memory" => a.memory = self.bytes(av, &af),
                    "pids" => a.pids = self.uint(av, &af),
                    _ => {}
                }
            }
            if k.name == "limits" {
                r.limits = Some(a);
            } else {
                r.reservations = Some(a);
            }
        }
        r
    }

    fn placement(&mut self, node: &Node, what: &str) -> Placement {
        let mut p = Placement::default();
        for (k, v) in self
            .mapping(node, what, keys::PLACEMENT)
            .unwrap_or_default()
        {
            let f = format!("{what}.{}", k.name);
            match k.name.as_str() {
                "constraints" => p.constraints = self.strings(v, &f),
                "max_replicas_per_node" => p.max_replicas_per_node = self.uint(v, &f),
                "preferences" => {
                    let items = self.list(v, &f);
                    for item in items {
                        for (pk, pv) in self.mapping(item, &f, keys::PREFERENCE).unwrap_or_default()
                        {
                            if pk.name == "spread"
                                && let Some(label) = self.text(pv, &f)
                            {
                                p.preferences.push(label);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        p
    }

    fn restart_policy(&mut self, node: &Node, what: &str) -> Option<RestartPolicy> {
        let entries = self.mapping(node, what, keys::RESTART_POLICY)?;
        let mut r = RestartPolicy {
            condition: "any".into(),
            ..RestartPolicy::default()
        };
        for (k, v) in entries {
            let f = format!("{what}.{}", k.name);
            match k.name.as_str() {
                "condition" => {
                    r.condition = self
                        .choice(v, &f, &["none", "on-failure", "any"])
                        .unwrap_or(r.condition)
                }
                "delay" => r.delay = self.duration(v, &f),
                "max_attempts" => r.max_attempts = self.uint(v, &f),
                "window" => r.window = self.duration(v, &f),
                _ => {}
            }
        }
        Some(r)
    }

    fn update_config(&mut self, node: &Node, what: &str) -> Option<UpdateConfig> {
        let entries = self.mapping(node, what, keys::UPDATE_CONFIG)?;
        let mut u = UpdateConfig::default();
        for (k, v) in entries {
            let f = format!("{what}.{}", k.name);
            match k.name.as_str() {
                "parallelism" => u.parallelism = self.uint(v, &f),
                "delay" => u.delay = self.duration(v, &f),
                "monitor" => u.monitor = self.duration(v, &f),
                "failure_action" => {
                    u.failure_action = self.choice(v, &f, &["pause", "continue", "rollback"])
                }
                "order" => u.order = self.choice(v, &f, &["stop-first", "start-first"]),
                "max_failure_ratio" => {
                    u.max_failure_ratio = self.float(v, &f).and_then(|r| {
                        if (0.0..=1.0).contains(&r) {
                            Some(r as f32)
                        } else {
                            self.error(
                                &v.at,
                                format!("{f}: expected a fraction from 0 to 1, found {r}"),
                            );
                            None
                        }
                    })
                }
                _ => {}
            }
        }
        Some(u)
    }
}

#[cfg(test)]
mod tests {
    use super::super::read_text;
    use crate::model::{Port, RestartPolicy, ServiceVolume, Ulimit};

    fn service(
        body: &str,
        env: &[(&str, &str)],
    ) -> (crate::model::Service, Vec<String>, Vec<String>) {
        let text = format!("services:\n  web:\n    image: a\n{body}volumes:\n  data:\n");
        let (mut model, diag) = read_text(&text, env);
        let errors = diag.errors.iter().map(|e| e.message.clone()).collect();
        let warnings = diag.warnings.iter().map(|w| w.message.clone()).collect();
        (
            model.services.remove("web").unwrap_or_default(),
            errors,
            warnings,
        )
    }

    #[test]
    fn ports_short_and_long() {
        let (s, errors, warnings) = service(
            "    ports:\n      - 127.0.0.1:8080:80\n      - 9000/udp\n      - {target: 53, published: 5353, protocol: udp, mode: host, host_ip: 0.0.0.0}\n",
            &[],
        );
        assert!(errors.is_empty(), "{errors:?}");
        let port = |target, published, protocol: &str, mode: &str| Port {
            target,
            published,
            protocol: protocol.into(),
            mode: mode.into(),
        };
        assert_eq!(
            s.ports,
            [
                port(80, 8080, "tcp", "ingress"),
                port(9000, 9000, "udp", "ingress"),
                port(53, 5353, "udp", "host")
            ]
        );
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("the host IP 127.0.0.1 of \"127.0.0.1:8080:80\" is dropped"));
        assert!(
            warnings[1].contains("port 9000 has no published port: berth publishes it on 9000")
        );
        assert!(warnings[2].contains("`host_ip`"));
        let (_, errors, _) = service("    ports: [{target: 80, mode: sideways}]\n", &[]);
        assert_eq!(
            errors,
            ["service web: ports: mode: expected ingress or host, found \"sideways\""]
        );
    }

    #[test]
    fn volumes_short_and_long() {
        let (s, errors, warnings) = service(
            "    volumes:\n      - data:/d\n      - ./site:/srv:ro\n      - /cache\n      - /x:/y:z\n      - {type: bind, source: /etc/ssl, target: /ssl, read_only: true, bind: {propagation: shared}}\n      - {type: volume, source: data, target: /e, volume: {nocopy: true}}\n      - {type: tmpfs, target: /t, tmpfs: {size: 1m, mode: 1700}}\n    tmpfs: ['/run:size=64k,mode=1777']\n",
            &[],
        );
        assert!(errors.is_empty(), "{errors:?}");
        let bind = |source: &str, target: &str, read_only| ServiceVolume::Bind {
            source: source.into(),
            target: target.into(),
            read_only,
        };
        assert_eq!(
            s.volumes,
            [
                ServiceVolume::Volume {
                    source: "data".into(),
                    target: "/d".into(),
                    read_only: false
                },
                bind("/srv/app/site", "/srv", true),
                ServiceVolume::Tmpfs {
                    target: "/cache".into(),
                    size: None,
                    mode: None
                },
                bind("/x", "/y", false),
                bind("/etc/ssl", "/ssl", true),
                ServiceVolume::Volume {
                    source: "data".into(),
                    target: "/e".into(),
                    read_only: false
                },
                ServiceVolume::Tmpfs {
                    target: "/t".into(),
                    size: Some(1 << 20),
                    mode: Some(0o1700)
                },
                ServiceVolume::Tmpfs {
                    target: "/run".into(),
                    size: Some(64 << 10),
                    mode: Some(0o1777)
                },
            ]
        );
        let all = warnings.join("\n");
        assert!(
            all.contains("the anonymous volume at /cache becomes a tmpfs"),
            "{all}"
        );
        assert!(
            all.contains("the option \"z\" of \"/x:/y:z\" is ignored"),
            "{all}"
        );
        assert!(
            all.contains("`propagation`") && all.contains("`nocopy`"),
            "{all}"
        );
    }

    #[test]
    fn healthcheck_forms() {
        let test = |t: &str| {
            service(&format!("    healthcheck:\n      test: {t}\n"), &[])
                .0
                .healthcheck
                .unwrap()
        };
        assert_eq!(
            test("[CMD, curl, -f, http://x]").test,
            ["curl", "-f", "http://x"]
        );
        assert_eq!(
            test("[CMD-SHELL, curl -f x || exit 1]").test,
            ["/bin/sh", "-c", "curl -f x || exit 1"]
        );
        assert_eq!(test("curl -f x").test, ["/bin/sh", "-c", "curl -f x"]);
        assert!(test("[NONE]").disable);
        let (s, _, _) = service("    healthcheck: {disable: true, interval: 5s}\n", &[]);
        let h = s.healthcheck.unwrap();
        assert!(h.disable && h.interval.is_none(), "disable drops the rest");
        let (_, errors, _) = service("    healthcheck: {test: [RUN, x]}\n", &[]);
        assert!(errors[0].contains("expected a list starting with CMD, CMD-SHELL or NONE"));
    }

    #[test]
    fn restart_falls_back_to_the_service_key() {
        let policy = |body: &str| service(body, &[]).0.deploy.restart_policy;
        let condition = |c: &str| RestartPolicy {
            condition: c.into(),
            ..RestartPolicy::default()
        };
        assert_eq!(policy("    restart: 'no'\n"), Some(condition("none")));
        assert_eq!(
            policy("    restart: unless-stopped\n"),
            Some(condition("any"))
        );
        assert_eq!(
            policy("    restart: on-failure:3\n"),
            Some(RestartPolicy {
                max_attempts: Some(3),
                ..condition("on-failure")
            })
        );
        assert_eq!(
            policy("    restart: always\n    deploy: {restart_policy: {condition: none}}\n"),
            Some(condition("none")),
            "deploy.restart_policy wins"
        );
        assert_eq!(policy(""), None);
    }

    #[test]
    fn environment_command_ulimits() {
        let (s, errors, _) = service(
            "    environment: [A=1, FROM_ENV, UNSET]\n    command: sh -c 'echo \"hi there\"'\n    ulimits: {nofile: {soft: 10, hard: 20}, core: 0}\n",
            &[("FROM_ENV", "e")],
        );
        assert!(errors.is_empty(), "{errors:?}");
        let env: Vec<_> = s
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            env,
            ["A=1", "FROM_ENV=e"],
            "a bare key takes the environment's value, or is left out"
        );
        assert_eq!(s.command.unwrap(), ["sh", "-c", "echo \"hi there\""]);
        assert_eq!(s.ulimits["nofile"], Ulimit { soft: 10, hard: 20 });
        assert_eq!(s.ulimits["core"], Ulimit { soft: 0, hard: 0 });
    }

    #[test]
    fn deploy_checks() {
        let (_, errors, _) = service("    deploy: {mode: global, replicas: 2}\n", &[]);
        assert_eq!(
            errors,
            ["service web deploy: replicas is for mode replicated, not global"]
        );
        let (s, errors, warnings) = service(
            "    deploy:\n      resources:\n        limits: {cpus: 1.5, memory: 1g, pids: 100}\n        reservations: {generic_resources: []}\n      update_config: {max_failure_ratio: 0.2, order: start-first}\n",
            &[],
        );
        assert!(errors.is_empty(), "{errors:?}");
        let limits = s.deploy.resources.limits.unwrap();
        assert_eq!(
            (limits.milli_cpus, limits.memory, limits.pids),
            (Some(1500), Some(1 << 30), Some(100))
        );
        assert!(warnings[0].contains("`generic_resources`"), "{warnings:?}");
        let u = s.deploy.update_config.unwrap();
        assert_eq!(
            (u.max_failure_ratio, u.order.as_deref()),
            (Some(0.2), Some("start-first"))
        );
        let (_, errors, _) = service("    deploy: {update_config: {max_failure_ratio: 2}}\n", &[]);
        assert!(
            errors[0].contains("expected a fraction from 0 to 1"),
            "{errors:?}"
        );
    }
}
