//! `berth service ...`: declare services and look at their tasks.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use berth_proto::v1::service_spec::Mode;
use berth_proto::v1::{
    CreateServiceRequest, GetServiceRequest, GlobalMode, ListNodesRequest, ListServicesRequest,
    ListTasksRequest, Placement, RemoveServiceRequest, ReplicatedMode, ResourceRequirements,
    Resources, RestartCondition, RestartPolicy, ScaleServiceRequest, Service, ServiceLogsRequest,
    ServiceSpec, Task, TaskHealth, TaskState, TaskStatus,
};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::client::{Client, explain};
use crate::output::{self, Format};
use crate::registry_auth;
use crate::units::{parse_cpus, parse_duration_ms, parse_size};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Replicated,
    Global,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RestartArg {
    Any,
    OnFailure,
    None,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    /// Image reference, e.g. 127.0.0.1:5000/web:1.
    #[arg(long)]
    pub image: String,
    /// Tasks to run (replicated mode).
    #[arg(long, conflicts_with = "mode")]
    pub replicas: Option<u64>,
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// KEY=VALUE, repeatable.
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// CPUs per task, reserved for placement and enforced as a limit (0.5, 2).
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<u64>,
    /// Memory per task, reserved for placement and enforced as a limit (256m, 1g).
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Placement constraint such as node.labels.zone==a or node.name!=n3; repeatable.
    #[arg(long)]
    pub constraint: Vec<String>,
    #[arg(long, value_enum)]
    pub restart_condition: Option<RestartArg>,
    /// Seconds between restarts.
    #[arg(long)]
    pub restart_delay: Option<f64>,
    /// Restarts allowed (0 = unlimited).
    #[arg(long)]
    pub restart_max_attempts: Option<u64>,
    /// KEY=VALUE label on the service, repeatable.
    #[arg(long)]
    pub label: Vec<String>,
    /// Network to attach the tasks to (default: the cluster's `berth`); repeatable.
    #[arg(long)]
    pub network: Vec<String>,
    /// Publish a port: PUBLISHED:TARGET[/udp], or
    /// published=P,target=T[,protocol=udp][,mode=host]; repeatable. Ingress mode
    /// answers on every node; host mode only where a task runs.
    #[arg(long, short = 'p')]
    pub publish: Vec<String>,
    /// User the tasks run as: uid, uid:gid, name or name:group (looked up in
    /// the image's /etc/passwd and /etc/group).
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Add a Linux capability to Docker's default set (NET_ADMIN, CAP_SYS_TIME,
    /// any case; ALL for every one); repeatable.
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop a capability from Docker's default set (CHOWN, ...; ALL for every
    /// one, then only --cap-add's remain); repeatable.
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Mount the container's root filesystem read-only (mounts stay writable).
    #[arg(long)]
    pub read_only: bool,
    /// seccomp=unconfined (no seccomp filter), seccomp=builtin (Docker's default
    /// profile, the default) or seccomp=PATH (a profile in Docker's JSON format).
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// A secret as the file /run/secrets/NAME: NAME, or
    /// source=NAME[,target=FILE][,uid=U][,gid=G][,mode=0400]; repeatable.
    #[arg(long)]
    pub secret: Vec<String>,
    /// A config as a read-only file (default /NAME): NAME, or
    /// source=NAME[,target=/PATH][,uid=U][,gid=G][,mode=0440]; repeatable.
    #[arg(long)]
    pub config: Vec<String>,
    /// Send the registry credentials of this client (`docker login`'s, in
    /// $DOCKER_CONFIG/config.json or ~/.docker/config.json) for the image's
    /// registry with the service: stored as a secret, given only to the nodes
    /// that run its tasks, removed with the service.
    #[arg(long)]
    pub with_registry_auth: bool,
    #[command(flatten)]
    pub health: crate::health::HealthArgs,
    /// The signal a task gets first when it is stopped: SIGTERM (the default,
    /// or the image's STOPSIGNAL), TERM, SIGQUIT, or a number.
    #[arg(long, value_parser = parse_stop_signal)]
    pub stop_signal: Option<String>,
    /// How long a stopped task may take before it is killed (500ms, 10s,
    /// 1m30s; a bare number is seconds; whole seconds, rounded up; default 10s).
    #[arg(long, value_parser = parse_grace_seconds)]
    pub stop_grace_period: Option<u32>,
    /// Command and arguments, after `--` (replace the image's entrypoint and cmd).
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Declare a service.
    Create(Box<CreateArgs>),
    /// List services with their running/desired task counts.
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// The tasks of a service: where they run and in which state.
    Ps {
        name: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// The service as stored, as JSON.
    Inspect { name: String },
    /// Change the replica count: NAME=N.
    Scale { target: String },
    /// Remove a service (its tasks are stopped).
    Rm { name: String },
    /// Output of the service's tasks.
    Logs {
        name: String,
        #[arg(long, short = 'f')]
        follow: bool,
        #[arg(long, default_value_t = 0)]
        tail: u64,
    },
}

fn key_values(items: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            bail!("{what} {item:?} is not KEY=VALUE");
        };
        map.insert(k.to_string(), v.to_string());
    }
    Ok(map)
}

/// `--stop-signal`: a signal Linux has, as the controller will check it.
fn parse_stop_signal(s: &str) -> Result<String, String> {
    berth_proto::signals::number(s)
        .map(|_| s.trim().to_string())
        .map_err(|e| e.to_string())
}

/// `--stop-grace-period` in whole seconds (the spec's unit), rounded up; at
/// least 1 s, since 0 in the spec means the default.
fn parse_grace_seconds(s: &str) -> Result<u32, String> {
    let ms = parse_duration_ms(s)?;
    if ms == 0 {
        return Err(format!(
            "invalid stop grace period {s:?}: at least 1s (0 would mean the default, 10s)"
        ));
    }
    u32::try_from(ms.div_ceil(1000))
        .map_err(|_| format!("invalid stop grace period {s:?}: too long"))
}

pub fn spec_from(args: CreateArgs) -> Result<ServiceSpec> {
    let mode = match (args.mode, args.replicas) {
        (Some(ModeArg::Global), _) => Mode::Global(GlobalMode {}),
        (_, replicas) => Mode::Replicated(ReplicatedMode {
            replicas: replicas.unwrap_or(1),
        }),
    };
    let amount = Resources {
        milli_cpus: args.cpus.unwrap_or(0),
        memory_bytes: args.memory.unwrap_or(0),
        pids: 0,
    };
    let restart_policy = RestartPolicy {
        condition: match args.restart_condition.unwrap_or(RestartArg::Any) {
            RestartArg::Any => RestartCondition::Any,
            RestartArg::OnFailure => RestartCondition::OnFailure,
            RestartArg::None => RestartCondition::None,
        } as i32,
        delay_ms: (args.restart_delay.unwrap_or(5.0) * 1000.0) as u64,
        max_attempts: args.restart_max_attempts.unwrap_or(0),
        window_ms: 0,
    };
    let seccomp = crate::security_opt::seccomp_of(&args.security_opt)?;
    let healthcheck = crate::health::health_check_of(&args.health)?;
    let (command, cmd_args) = match args.command.split_first() {
        Some((first, rest)) => (vec![first.clone()], rest.to_vec()),
        None => (Vec::new(), Vec::new()),
    };
    Ok(ServiceSpec {
        name: args.name,
        image: args.image,
        command,
        args: cmd_args,
        env: args.env,
        mode: Some(mode),
        resources: Some(ResourceRequirements {
            reservations: Some(amount),
            limits: Some(amount),
        }),
        placement: Some(Placement {
            constraints: args.constraint,
        }),
        restart_policy: Some(restart_policy),
        labels: key_values(&args.label, "label")?,
        networks: args.network,
        ports: args
            .publish
            .iter()
            .map(|p| crate::ports::parse_publish(p))
            .collect::<Result<_>>()?,
        user: args.user.unwrap_or_default(),
        cap_add: args.cap_add,
        cap_drop: args.cap_drop,
        read_only_rootfs: args.read_only,
        seccomp,
        healthcheck,
        secrets: args
            .secret
            .iter()
            .map(|s| crate::file_refs::secret(s))
            .collect::<Result<_>>()?,
        configs: args
            .config
            .iter()
            .map(|c| crate::file_refs::config(c))
            .collect::<Result<_>>()?,
        stop_signal: args.stop_signal.unwrap_or_default(),
        stop_grace_seconds: args.stop_grace_period.unwrap_or(0),
        ..Default::default()
    })
}

fn state_name(state: i32) -> &'static str {
    TaskState::try_from(state)
        .map(|s| s.short_name())
        .unwrap_or("unknown")
}

/// "healthy", "unhealthy", "starting", or "" for a task without a check.
fn health_name(health: i32) -> &'static str {
    TaskHealth::try_from(health).map_or("", |h| h.short_name())
}

/// The STATE column: the state, with the health of a checked running task
/// ("running (healthy)", as `docker ps` shows it).
fn state_with_health(status: &TaskStatus) -> String {
    match health_name(status.health) {
        "" => state_name(status.state).to_string(),
        health => format!("{} ({health})", state_name(status.state)),
    }
}

fn replicas_of(service: &Service) -> String {
    match service.spec.as_ref().and_then(|s| s.mode.as_ref()) {
        Some(Mode::Replicated(r)) => r.replicas.to_string(),
        Some(Mode::Global(_)) => "global".into(),
        None => "?".into(),
    }
}

async fn node_names(client: &mut Client) -> Result<BTreeMap<String, String>> {
    let nodes = client
        .list_nodes(ListNodesRequest {})
        .await
        .map_err(explain)?
        .into_inner()
        .nodes;
    Ok(nodes.into_iter().map(|n| (n.id, n.name)).collect())
}

fn task_json(task: &Task, nodes: &BTreeMap<String, String>) -> serde_json::Value {
    let status = task.status.clone().unwrap_or_default();
    json!({
        "id": task.id,
        "service": task.service_name,
        "slot": task.slot,
        "node": nodes.get(&task.node_id).cloned().unwrap_or_default(),
        "desired_state": state_name(task.desired_state),
        "state": state_name(status.state),
        "health": health_name(status.health),
        "message": status.message,
        "error": status.error,
        "exit_code": status.exit_code,
        "addresses": task.addresses,
    })
}

pub async fn run(client: &mut Client, cmd: ServiceCmd) -> Result<()> {
    match cmd {
        ServiceCmd::Create(args) => {
            let with_registry_auth = args.with_registry_auth;
            let mut spec = spec_from(*args)?;
            if with_registry_auth {
                // Found before anything is created: no credentials, no secret.
                let dir = registry_auth::docker_config_dir();
                let credentials = registry_auth::credentials_for(&spec.image, &dir)?;
                spec.registry_auth =
                    Some(registry_auth::create_secret(client, &spec.name, &credentials).await?);
            }
            let registry_auth = spec.registry_auth.clone();
            let created = client
                .create_service(CreateServiceRequest {
                    spec: Some(spec),
                    ..Default::default()
                })
                .await;
            let service = match created {
                Ok(answer) => {
                    let answer = answer.into_inner();
                    for warning in &answer.warnings {
                        eprintln!("warning: {warning}");
                    }
                    answer.service.unwrap_or_default()
                }
                Err(status) => {
                    if let Some(reference) = &registry_auth {
                        registry_auth::remove_secret(client, reference).await;
                    }
                    return Err(explain(status));
                }
            };
            println!("{}", service.id);
        }
        ServiceCmd::Ls { format } => {
            let services = client
                .list_services(ListServicesRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .services;
            let tasks = client
                .list_tasks(ListTasksRequest::default())
                .await
                .map_err(explain)?
                .into_inner()
                .tasks;
            let running = |id: &str| {
                tasks
                    .iter()
                    .filter(|t| {
                        t.service_id == id
                            && t.status.as_ref().map(|s| s.state) == Some(TaskState::Running as i32)
                    })
                    .count()
            };
            match format {
                Format::Json => output::json(&serde_json::Value::Array(
                    services
                        .iter()
                        .map(|s| {
                            let spec = s.spec.clone().unwrap_or_default();
                            json!({
                                "id": s.id,
                                "name": spec.name,
                                "image": spec.image,
                                "replicas": replicas_of(s),
                                "running": running(&s.id),
                            })
                        })
                        .collect(),
                ))?,
                Format::Table => output::table(
                    &["ID", "NAME", "MODE/REPLICAS", "RUNNING", "IMAGE"],
                    &services
                        .iter()
                        .map(|s| {
                            let spec = s.spec.clone().unwrap_or_default();
                            vec![
                                s.id.clone(),
                                spec.name,
                                replicas_of(s),
                                running(&s.id).to_string(),
                                spec.image,
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        ServiceCmd::Ps { name, format } => {
            let tasks = client
                .list_tasks(ListTasksRequest {
                    service: name,
                    node: String::new(),
                })
                .await
                .map_err(explain)?
                .into_inner()
                .tasks;
            let nodes = node_names(client).await?;
            match format {
                Format::Json => output::json(&serde_json::Value::Array(
                    tasks.iter().map(|t| task_json(t, &nodes)).collect(),
                ))?,
                Format::Table => output::table(
                    &["ID", "SLOT", "NODE", "DESIRED", "STATE", "MESSAGE"],
                    &tasks
                        .iter()
                        .map(|t| {
                            let s = t.status.clone().unwrap_or_default();
                            let state = state_with_health(&s);
                            let why = if s.health == TaskHealth::Unhealthy as i32
                                && s.state == TaskState::Running as i32
                            {
                                s.message.clone()
                            } else if !s.error.is_empty() {
                                s.error
                            } else if let Some(code) = s.exit_code.filter(|c| *c != 0) {
                                format!("exit code {code}")
                            } else if s.state == TaskState::Running as i32 {
                                // "running" says nothing the STATE column doesn't.
                                String::new()
                            } else {
                                s.message
                            };
                            vec![
                                t.id.clone(),
                                t.slot.to_string(),
                                nodes.get(&t.node_id).cloned().unwrap_or_default(),
                                state_name(t.desired_state).into(),
                                state,
                                why,
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        ServiceCmd::Inspect { name } => {
            let service = client
                .get_service(GetServiceRequest { service: name })
                .await
                .map_err(explain)?
                .into_inner();
            println!("{}", serde_json::to_string_pretty(&service)?);
        }
        ServiceCmd::Scale { target } => {
            let Some((name, n)) = target.split_once('=') else {
                bail!("scale takes NAME=REPLICAS, got {target:?}");
            };
            let replicas: u64 = n
                .parse()
                .map_err(|_| anyhow::anyhow!("replicas {n:?} is not a number"))?;
            client
                .scale_service(ScaleServiceRequest {
                    service: name.to_string(),
                    replicas,
                })
                .await
                .map_err(explain)?;
            println!("{name} scaled to {replicas}");
        }
        ServiceCmd::Rm { name } => {
            client
                .remove_service(RemoveServiceRequest {
                    service: name.clone(),
                })
                .await
                .map_err(explain)?;
            println!("removed service {name}");
        }
        ServiceCmd::Logs { name, follow, tail } => {
            let mut stream = client
                .service_logs(ServiceLogsRequest {
                    service: name,
                    follow,
                    tail,
                })
                .await
                .map_err(explain)?
                .into_inner();
            while let Some(line) = stream.message().await.map_err(explain)? {
                let text = String::from_utf8_lossy(&line.line);
                println!(
                    "{}.{}@{} | {}",
                    line.task_id,
                    line.slot,
                    line.node_name,
                    text.trim_end()
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: ServiceCmd,
    }

    fn create(argv: &[&str]) -> ServiceSpec {
        let cli = Cli::try_parse_from(["service", "create"].iter().chain(argv)).expect("parse");
        let ServiceCmd::Create(args) = cli.cmd else {
            panic!("not create: {:?}", cli.cmd);
        };
        spec_from(*args).expect("spec")
    }

    #[test]
    fn security_flags_reach_the_spec() {
        let spec = create(&[
            "web",
            "--image",
            "busybox",
            "--user",
            "1000:1000",
            "--cap-add",
            "NET_ADMIN",
            "--cap-add",
            "sys_time",
            "--cap-drop",
            "CAP_CHOWN",
            "--read-only",
            "--security-opt",
            "seccomp=unconfined",
        ]);
        assert_eq!(spec.user, "1000:1000");
        assert_eq!(spec.cap_add, vec!["NET_ADMIN", "sys_time"]);
        assert_eq!(spec.cap_drop, vec!["CAP_CHOWN"]);
        assert!(spec.read_only_rootfs);
        let seccomp = spec.seccomp.expect("seccomp");
        assert_eq!(
            seccomp.mode,
            berth_proto::v1::seccomp::Mode::Unconfined as i32
        );
        // Without them: Docker's defaults (no user, default caps and profile).
        let plain = create(&["web", "--image", "busybox"]);
        assert!(plain.user.is_empty() && plain.cap_add.is_empty() && plain.cap_drop.is_empty());
        assert!(!plain.read_only_rootfs);
        assert_eq!(plain.seccomp, None);
    }

    #[test]
    fn stop_flags_reach_the_spec() {
        let spec = create(&[
            "web",
            "--image",
            "busybox",
            "--stop-signal",
            "SIGQUIT",
            "--stop-grace-period",
            "1m30s",
        ]);
        assert_eq!(spec.stop_signal, "SIGQUIT");
        assert_eq!(spec.stop_grace_seconds, 90);
        assert_eq!(
            create(&["w", "--image", "b", "--stop-grace-period", "500ms"]).stop_grace_seconds,
            1
        );
        assert_eq!(
            create(&["w", "--image", "b", "--stop-grace-period", "3"]).stop_grace_seconds,
            3
        );
        let plain = create(&["web", "--image", "busybox"]);
        assert_eq!(
            (plain.stop_signal.as_str(), plain.stop_grace_seconds),
            ("", 0)
        );
        for bad in [
            ["--stop-signal", "SIGNOPE"],
            ["--stop-grace-period", "0s"],
            ["--stop-grace-period", "ten"],
        ] {
            let argv = [
                "service", "create", "web", "--image", "busybox", bad[0], bad[1],
            ];
            let err = Cli::try_parse_from(argv).expect_err("refused");
            assert!(err.to_string().contains(bad[1]), "{err}");
        }
    }

    #[test]
    fn health_flags_reach_the_spec() {
        let spec = create(&[
            "web",
            "--image",
            "busybox",
            "--health-cmd",
            "wget -q -O- localhost:80",
            "--health-interval",
            "1m30s",
            "--health-timeout",
            "500ms",
            "--health-retries",
            "5",
            "--health-start-period",
            "10",
        ]);
        let check = spec.healthcheck.expect("a check");
        assert_eq!(
            check.probe,
            Some(berth_proto::v1::health_check::Probe::Exec(
                berth_proto::v1::ExecProbe {
                    command: vec![
                        "/bin/sh".into(),
                        "-c".into(),
                        "wget -q -O- localhost:80".into()
                    ]
                }
            ))
        );
        assert_eq!(
            (
                check.interval_ms,
                check.timeout_ms,
                check.retries,
                check.start_period_ms
            ),
            (90_000, 500, 5, 10_000)
        );
        let tcp = create(&["web", "--image", "busybox", "--health-tcp", "6379"]);
        assert_eq!(
            tcp.healthcheck.and_then(|c| c.probe),
            Some(berth_proto::v1::health_check::Probe::Tcp(
                berth_proto::v1::TcpProbe { port: 6379 }
            ))
        );
        let off = create(&["web", "--image", "busybox", "--no-healthcheck"]);
        assert!(off.healthcheck.expect("a check").disable);
        assert_eq!(create(&["web", "--image", "busybox"]).healthcheck, None);
        // One probe at a time; no timings with --no-healthcheck.
        for argv in [
            &[
                "web",
                "--image",
                "b",
                "--health-cmd",
                "true",
                "--health-tcp",
                "1",
            ][..],
            &[
                "web",
                "--image",
                "b",
                "--no-healthcheck",
                "--health-retries",
                "2",
            ][..],
        ] {
            assert!(
                Cli::try_parse_from(["service", "create"].iter().chain(argv)).is_err(),
                "{argv:?}"
            );
        }
    }
}
