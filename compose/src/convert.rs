//! The model turned into a [`StackSpec`]: final names (`<stack>_<key>`
//! unless `name:`, external objects by their own name), the stack label on
//! everything the stack owns, references by final names, and the files the
//! spec carries read now (env_file, config and secret files).

use std::collections::BTreeMap;

use berth_proto::stacks::{STACK_IMAGE_LABEL, STACK_LABEL, scoped_name};
use berth_proto::v1::{
    ConfigReference, EndpointMode, ExecProbe, GlobalMode, HealthCheck, Mount, Placement,
    PlacementPreference, PortConfig, PortProtocol, PublishMode, ReplicatedMode,
    ResourceRequirements, Resources, RestartCondition, RestartPolicy, SecretReference, ServiceSpec,
    StackConfig, StackNetwork, StackSecret, StackSpec, StackVolume, Ulimit, UpdateConfig,
    UpdateFailureAction, UpdateOrder, health_check, mount, service_spec,
};

use crate::Project;
use crate::diag::{Diag, Errors, Pos};
use crate::dotenv;
use crate::model::{self, FileObject, FilePath, Service, ServiceVolume};

/// The name an object of the stack gets.
fn final_name(stack: &str, key: &str, name: &Option<String>, external: bool) -> String {
    match name {
        Some(n) => n.clone(),
        None if external => key.to_string(),
        None => scoped_name(stack, key),
    }
}

fn owned_labels(
    stack: &str,
    labels: &BTreeMap<String, String>,
    external: bool,
) -> BTreeMap<String, String> {
    let mut out = labels.clone();
    if !external {
        out.insert(STACK_LABEL.to_string(), stack.to_string());
    }
    out
}

pub fn to_stack_spec(p: &Project, stack: &str) -> Result<StackSpec, Errors> {
    let m = &p.model;
    let mut diag = Diag::default();
    let network_name = |key: &str| {
        m.networks
            .get(key)
            .map(|n| final_name(stack, key, &n.name, n.external))
            .unwrap_or_else(|| scoped_name(stack, key))
    };
    let mut spec = StackSpec {
        name: stack.to_string(),
        ..StackSpec::default()
    };
    for (key, n) in &m.networks {
        spec.networks.push(StackNetwork {
            name: network_name(key),
            subnet: n.subnet.clone().unwrap_or_default(),
            labels: owned_labels(stack, &n.labels, n.external),
            external: n.external,
        });
    }
    for (key, v) in &m.volumes {
        spec.volumes.push(StackVolume {
            name: final_name(stack, key, &v.name, v.external),
            labels: owned_labels(stack, &v.labels, v.external),
            external: v.external,
        });
    }
    for (key, c) in &m.configs {
        let data = data_of(p, "config", key, c, &mut diag);
        spec.configs.push(StackConfig {
            name: final_name(stack, key, &c.name, c.external),
            data,
            labels: owned_labels(stack, &c.labels, c.external),
            external: c.external,
        });
    }
    for (key, s) in &m.secrets {
        let data = data_of(p, "secret", key, s, &mut diag);
        spec.secrets.push(StackSecret {
            name: final_name(stack, key, &s.name, s.external),
            data,
            labels: owned_labels(stack, &s.labels, s.external),
            external: s.external,
        });
    }
    for (key, s) in &m.services {
        let service = service_spec(p, stack, key, s, &network_name, &mut diag);
        spec.services.push(service);
    }
    if diag.errors.is_empty() {
        Ok(spec)
    } else {
        Err(diag.into_errors())
    }
}

/// A config's or secret's data: its file, its content, or a variable.
fn data_of(p: &Project, kind: &str, key: &str, o: &FileObject, diag: &mut Diag) -> Vec<u8> {
    if let Some(file) = &o.file {
        return match std::fs::read(&file.path) {
            Ok(data) => data,
            Err(e) => {
                diag.error(
                    &file.at,
                    format!("{kind} {key}: cannot read {}: {e}", file.path.display()),
                );
                Vec::new()
            }
        };
    }
    if let Some(content) = &o.content {
        return content.clone().into_bytes();
    }
    if let Some(var) = &o.environment {
        return match p.env.get(var) {
            Some(v) => v.clone().into_bytes(),
            None => {
                diag.error(&o.at, format!("{kind} {key}: variable {var} is not set"));
                Vec::new()
            }
        };
    }
    Vec::new()
}

/// The variables of the env files, in order (a later file wins).
fn env_files(p: &Project, files: &[FilePath], diag: &mut Diag) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for f in files {
        let text = match std::fs::read_to_string(&f.path) {
            Ok(t) => t,
            Err(e) if !f.required && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                diag.error(
                    &f.at,
                    format!("env_file: cannot read {}: {e}", f.path.display()),
                );
                continue;
            }
        };
        match dotenv::parse(&text) {
            Ok(entries) => {
                for e in entries {
                    let value = e.value.or_else(|| p.env.get(&e.key).cloned());
                    if let Some(value) = value {
                        out.insert(e.key, value);
                    }
                }
            }
            Err(e) => {
                let dotenv::DotenvError::BadKey { line, .. } = &e;
                let file = std::sync::Arc::from(f.path.display().to_string());
                diag.error(&Pos::new(&file, *line, 1), format!("env_file: {e}"));
            }
        }
    }
    out
}

fn ms(d: Option<model::Dur>) -> u64 {
    d.map(model::Dur::ms).unwrap_or(0)
}

fn service_spec(
    p: &Project,
    stack: &str,
    key: &str,
    s: &Service,
    network_name: &dyn Fn(&str) -> String,
    diag: &mut Diag,
) -> ServiceSpec {
    let m = &p.model;
    let mut env = env_files(p, &s.env_file, diag);
    env.extend(s.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut labels = s.deploy.labels.clone();
    labels.insert(STACK_LABEL.to_string(), stack.to_string());
    labels.insert(STACK_IMAGE_LABEL.to_string(), s.image.clone());
    let mut container_labels = s.labels.clone();
    container_labels.insert(STACK_LABEL.to_string(), stack.to_string());
    let d = &s.deploy;
    ServiceSpec {
        name: scoped_name(stack, key),
        // The file's services find each other by their keys, as in Docker's
        // stacks (the agents' DNS answers aliases on the service's networks).
        aliases: vec![key.to_string()],
        image: s.image.clone(),
        command: s.entrypoint.clone().unwrap_or_default(),
        args: s.command.clone().unwrap_or_default(),
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        mode: Some(if d.mode == "global" {
            service_spec::Mode::Global(GlobalMode {})
        } else {
            service_spec::Mode::Replicated(ReplicatedMode {
                replicas: d.replicas,
            })
        }),
        resources: resources(&d.resources),
        placement: placement(&d.placement),
        restart_policy: d.restart_policy.as_ref().map(|r| RestartPolicy {
            condition: match r.condition.as_str() {
                "none" => RestartCondition::None,
                "on-failure" => RestartCondition::OnFailure,
                _ => RestartCondition::Any,
            } as i32,
            delay_ms: ms(r.delay),
            max_attempts: r.max_attempts.unwrap_or(0),
            window_ms: ms(r.window),
        }),
        update_config: d.update_config.as_ref().map(update_config),
        rollback_config: d.rollback_config.as_ref().map(update_config),
        healthcheck: s.healthcheck.as_ref().map(|h| HealthCheck {
            probe: (!h.test.is_empty()).then(|| {
                health_check::Probe::Exec(ExecProbe {
                    command: h.test.clone(),
                })
            }),
            interval_ms: ms(h.interval),
            timeout_ms: ms(h.timeout),
            retries: h.retries.unwrap_or(0),
            start_period_ms: ms(h.start_period),
            disable: h.disable,
        }),
        ports: s
            .ports
            .iter()
            .map(|port| PortConfig {
                target_port: port.target,
                published_port: port.published,
                protocol: if port.protocol == "udp" {
                    PortProtocol::Udp
                } else {
                    PortProtocol::Tcp
                } as i32,
                publish_mode: if port.mode == "host" {
                    PublishMode::Host
                } else {
                    PublishMode::Ingress
                } as i32,
            })
            .collect(),
        networks: s.networks.iter().map(|n| network_name(n)).collect(),
        labels,
        workdir: s.working_dir.clone().unwrap_or_default(),
        user: s.user.clone().unwrap_or_default(),
        hostname: s.hostname.clone().unwrap_or_default(),
        mounts: s.volumes.iter().map(|v| mount_of(stack, m, v)).collect(),
        stop_grace_seconds: s
            .stop_grace_period
            .map(|d| {
                u32::try_from(d.0.as_secs() + u64::from(d.0.subsec_nanos() > 0)).unwrap_or(u32::MAX)
            })
            .unwrap_or(0),
        cap_add: s.cap_add.clone(),
        cap_drop: s.cap_drop.clone(),
        read_only_rootfs: s.read_only,
        secrets: s
            .secrets
            .iter()
            .map(|r| SecretReference {
                secret_name: m
                    .secrets
                    .get(&r.source)
                    .map(|o| final_name(stack, &r.source, &o.name, o.external))
                    .unwrap_or_default(),
                target: r.target.clone().unwrap_or_else(|| r.source.clone()),
                uid: r.uid.unwrap_or(0),
                gid: r.gid.unwrap_or(0),
                mode: r.mode.unwrap_or(0),
                ..SecretReference::default()
            })
            .collect(),
        configs: s
            .configs
            .iter()
            .map(|r| ConfigReference {
                config_name: m
                    .configs
                    .get(&r.source)
                    .map(|o| final_name(stack, &r.source, &o.name, o.external))
                    .unwrap_or_default(),
                target: r.target.clone().unwrap_or_else(|| format!("/{}", r.source)),
                uid: r.uid.unwrap_or(0),
                gid: r.gid.unwrap_or(0),
                mode: r.mode.unwrap_or(0),
                ..ConfigReference::default()
            })
            .collect(),
        stop_signal: s.stop_signal.clone().unwrap_or_default(),
        tty: s.tty,
        open_stdin: s.stdin_open,
        ulimits: s
            .ulimits
            .iter()
            .map(|(name, l)| Ulimit {
                name: name.clone(),
                soft: l.soft,
                hard: l.hard,
            })
            .collect(),
        init: s.init,
        container_labels,
        endpoint_mode: if d.endpoint_mode == "dnsrr" {
            EndpointMode::Dnsrr
        } else {
            EndpointMode::Vip
        } as i32,
        ..ServiceSpec::default()
    }
}

fn amounts(a: &Option<model::Amounts>) -> Option<Resources> {
    a.as_ref().map(|a| Resources {
        milli_cpus: a.milli_cpus.unwrap_or(0),
        memory_bytes: a.memory.unwrap_or(0),
        pids: a.pids.unwrap_or(0),
    })
}

fn resources(r: &model::Resources) -> Option<ResourceRequirements> {
    (r.limits.is_some() || r.reservations.is_some()).then(|| ResourceRequirements {
        reservations: amounts(&r.reservations),
        limits: amounts(&r.limits),
    })
}

fn placement(p: &model::Placement) -> Option<Placement> {
    (*p != model::Placement::default()).then(|| Placement {
        constraints: p.constraints.clone(),
        preferences: p
            .preferences
            .iter()
            .map(|spread| PlacementPreference {
                spread: spread.clone(),
            })
            .collect(),
        max_replicas_per_node: p.max_replicas_per_node.unwrap_or(0),
    })
}

/// Docker's defaults where the file is silent: one task at a time, pause
/// on failure.
fn update_config(u: &model::UpdateConfig) -> UpdateConfig {
    UpdateConfig {
        parallelism: u.parallelism.unwrap_or(1),
        delay_ms: ms(u.delay),
        monitor_ms: ms(u.monitor),
        failure_action: match u.failure_action.as_deref() {
            Some("continue") => UpdateFailureAction::Continue,
            Some("rollback") => UpdateFailureAction::Rollback,
            _ => UpdateFailureAction::Pause,
        } as i32,
        max_failure_ratio: u.max_failure_ratio.unwrap_or(0.0),
        order: if u.order.as_deref() == Some("start-first") {
            UpdateOrder::StartFirst
        } else {
            UpdateOrder::StopFirst
        } as i32,
        ..UpdateConfig::default()
    }
}

fn mount_of(stack: &str, m: &model::Model, v: &ServiceVolume) -> Mount {
    match v {
        ServiceVolume::Volume {
            source,
            target,
            read_only,
        } => {
            let (name, labels) = match m.volumes.get(source) {
                Some(vol) => (
                    final_name(stack, source, &vol.name, vol.external),
                    owned_labels(stack, &vol.labels, vol.external),
                ),
                None => (
                    scoped_name(stack, source),
                    owned_labels(stack, &BTreeMap::new(), false),
                ),
            };
            Mount {
                kind: mount::Kind::Volume as i32,
                source: name,
                target: target.clone(),
                read_only: *read_only,
                volume_labels: labels,
                ..Mount::default()
            }
        }
        ServiceVolume::Bind {
            source,
            target,
            read_only,
        } => Mount {
            kind: mount::Kind::Bind as i32,
            source: source.clone(),
            target: target.clone(),
            read_only: *read_only,
            ..Mount::default()
        },
        ServiceVolume::Tmpfs { target, size, mode } => Mount {
            kind: mount::Kind::Tmpfs as i32,
            target: target.clone(),
            tmpfs_size_bytes: size.unwrap_or(0),
            tmpfs_mode: *mode,
            ..Mount::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use berth_proto::v1::{mount::Kind, service_spec::Mode};

    use super::*;
    use crate::{Options, load};

    fn spec_of(text: &str, files: &[(&str, &str)]) -> StackSpec {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yml");
        std::fs::write(&path, text).unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let options = Options {
            files: vec![path],
            env: BTreeMap::from([("TOKEN".to_string(), "t0k".to_string())]),
        };
        load(&options).unwrap().to_stack_spec("st").unwrap()
    }

    #[test]
    fn names_follow_key_name_and_external() {
        assert_eq!(final_name("st", "web", &None, false), "st_web");
        assert_eq!(
            final_name("st", "web", &Some("exact".into()), false),
            "exact"
        );
        assert_eq!(final_name("st", "net", &None, true), "net");
        assert!(owned_labels("st", &BTreeMap::new(), true).is_empty());
        assert_eq!(
            owned_labels("st", &BTreeMap::new(), false)[STACK_LABEL],
            "st"
        );
    }

    #[test]
    fn references_use_final_names_and_dockers_default_targets() {
        let spec = spec_of(
            "services:\n  web:\n    image: a\n    configs: [conf]\n    secrets: [tok, {source: ext, target: api}]\nconfigs:\n  conf: {file: ./c.txt, name: conf-v2}\nsecrets:\n  tok: {environment: TOKEN}\n  ext: {external: true}\n",
            &[("c.txt", "data")],
        );
        let web = &spec.services[0];
        assert_eq!(
            (
                web.configs[0].config_name.as_str(),
                web.configs[0].target.as_str()
            ),
            ("conf-v2", "/conf")
        );
        assert_eq!(
            (
                web.secrets[1].secret_name.as_str(),
                web.secrets[1].target.as_str()
            ),
            ("ext", "api")
        );
        assert_eq!(
            (
                web.secrets[0].secret_name.as_str(),
                web.secrets[0].target.as_str()
            ),
            ("st_tok", "tok")
        );
        assert_eq!(spec.configs[0].data, b"data");
        let tok = spec.secrets.iter().find(|s| s.name == "st_tok").unwrap();
        assert_eq!(tok.data, b"t0k");
        let ext = spec.secrets.iter().find(|s| s.name == "ext").unwrap();
        assert!(ext.external && ext.labels.is_empty() && ext.data.is_empty());
        assert_eq!(web.networks, ["st_default"]);
        assert_eq!(spec.networks[0].name, "st_default");
    }

    #[test]
    fn service_fields() {
        let spec = spec_of(
            "services:\n  w:\n    image: a\n    restart: 'no'\n    stop_grace_period: 1200ms\n    tmpfs: /run\n    volumes: [/anon]\n    working_dir: /app\n    stdin_open: true\n    read_only: true\n    deploy:\n      mode: global\n      resources: {reservations: {cpus: '0.1', memory: 64m}}\n      placement: {preferences: [{spread: node.labels.zone}]}\n      rollback_config: {monitor: 30s}\n      endpoint_mode: dnsrr\n",
            &[],
        );
        let w = &spec.services[0];
        assert!(matches!(w.mode, Some(Mode::Global(_))));
        assert_eq!(
            w.restart_policy.as_ref().unwrap().condition,
            RestartCondition::None as i32
        );
        assert_eq!(w.stop_grace_seconds, 2);
        assert!(w.mounts.iter().all(|m| m.kind == Kind::Tmpfs as i32));
        assert_eq!(w.mounts.len(), 2);
        assert_eq!(w.workdir, "/app");
        assert!(w.open_stdin && w.read_only_rootfs);
        let reservations = w.resources.as_ref().unwrap().reservations.as_ref().unwrap();
        assert_eq!(
            (reservations.milli_cpus, reservations.memory_bytes),
            (100, 64 << 20)
        );
        assert!(w.resources.as_ref().unwrap().limits.is_none());
        assert_eq!(
            w.placement.as_ref().unwrap().preferences[0].spread,
            "node.labels.zone"
        );
        let rollback = w.rollback_config.as_ref().unwrap();
        assert_eq!(
            (rollback.parallelism, rollback.monitor_ms),
            (1, 30_000),
            "Docker's parallelism 1"
        );
        assert!(w.update_config.is_none());
        assert_eq!(w.endpoint_mode, EndpointMode::Dnsrr as i32);
        assert_eq!(w.container_labels[STACK_LABEL], "st");
    }

    #[test]
    fn env_file_errors_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yml");
        std::fs::write(&path, "services:\n  w:\n    image: a\n    env_file: [bad.env, {path: gone.env, required: false}]\n").unwrap();
        std::fs::write(dir.path().join("bad.env"), "A=1\nB C=2\n").unwrap();
        let project = load(&Options {
            files: vec![path],
            env: BTreeMap::new(),
        })
        .unwrap();
        let e = project.to_stack_spec("st").unwrap_err().to_string();
        assert!(
            e.ends_with("bad.env:2:1: env_file: line 2: \"B C\" is not a variable name"),
            "{e}"
        );
        assert_eq!(
            e.lines().count(),
            1,
            "a missing optional env file is fine: {e}"
        );
    }
}
