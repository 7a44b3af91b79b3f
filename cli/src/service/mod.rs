//! `berth service ...`: declare services, roll them out, and look at their
//! tasks.

mod history;
pub(crate) mod progress;
mod rollout_flags;
pub(crate) mod settings;
pub(crate) mod task_flags;
mod update;
pub(crate) mod watch;

pub use progress::RolloutEnded;

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use berth_proto::v1::service_spec::Mode;
use berth_proto::v1::{
    CreateServiceRequest, GetServiceRequest, GlobalMode, ListNodesRequest, ListServicesRequest,
    ListTasksRequest, Placement, RemoveServiceRequest, ReplicatedMode, ScaleServiceRequest,
    Service, ServiceLogsRequest, ServiceSpec, Task, TaskHealth, TaskState, TaskStatus,
};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::client::{Client, explain};
use crate::output::{self, Format};
use crate::registry_auth;
use berth_proto::v1::update_status::State as UpdateState;
use berth_proto::v1::{PromoteServiceRequest, UpdateServiceRequest};
use watch::Goal;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Replicated,
    Global,
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
    #[command(flatten)]
    pub resources: task_flags::ResourceFlags,
    #[command(flatten)]
    pub restart: task_flags::RestartFlags,
    /// Placement constraint such as node.labels.zone==a or node.name!=n3; repeatable.
    #[arg(long)]
    pub constraint: Vec<String>,
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
    /// Leave the image's tag unpinned: the nodes resolve it when they pull
    /// (by default the controller pins the service to the digest the tag
    /// names now, so every node runs the same image).
    #[arg(long)]
    pub no_resolve_image: bool,
    #[command(flatten)]
    pub mounts: crate::mount_flags::MountFlags,
    #[command(flatten)]
    pub health: crate::health::HealthArgs,
    #[command(flatten)]
    pub stop: task_flags::StopFlags,
    #[command(flatten)]
    pub settings: settings::SettingsFlags,
    #[command(flatten)]
    pub update: rollout_flags::UpdateFlags,
    #[command(flatten)]
    pub rollback: rollout_flags::RollbackFlags,
    /// Return at once instead of waiting for every task to run (--detach=false waits).
    #[arg(long, short = 'd', num_args = 0..=1, default_missing_value = "true", require_equals = true, value_name = "BOOL")]
    pub detach: Option<bool>,
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
    /// The service as stored, as JSON: the spec, the previous spec and the
    /// rollout's status.
    Inspect { name: String },
    /// Change the replica count: NAME=N.
    Scale {
        target: String,
        /// Return at once instead of waiting for the tasks.
        #[arg(long, short = 'd', num_args = 0..=1, default_missing_value = "true", require_equals = true, value_name = "BOOL")]
        detach: Option<bool>,
    },
    /// Change a service and roll it out (waits until the rollout completed,
    /// paused or rolled back; exit 0 completed, 1 failed, 2 paused, 3 rolled
    /// back, 4 canaries wait for `promote`).
    Update(Box<update::UpdateArgs>),
    /// Go back to an earlier version (the one before, or --to-version).
    Rollback {
        name: String,
        /// The version to go back to (see `berth service history`).
        #[arg(long, value_name = "N")]
        to_version: Option<u64>,
        /// Return at once instead of waiting for the rollback.
        #[arg(long, short = 'd', num_args = 0..=1, default_missing_value = "true", require_equals = true, value_name = "BOOL")]
        detach: Option<bool>,
    },
    /// The last versions of a service: when, and what changed.
    History {
        name: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Continue a rollout paused for its canaries.
    Promote {
        name: String,
        /// Return at once instead of waiting for the rollout.
        #[arg(long, short = 'd', num_args = 0..=1, default_missing_value = "true", require_equals = true, value_name = "BOOL")]
        detach: Option<bool>,
    },
    /// Remove services (their tasks are stopped); each is tried, a failure
    /// does not stop the rest.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Output of the service's tasks.
    Logs {
        name: String,
        #[arg(long, short = 'f')]
        follow: bool,
        #[arg(long, default_value_t = 0)]
        tail: u64,
    },
}

pub(crate) fn key_values(items: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            bail!("{what} {item:?} is not KEY=VALUE");
        };
        map.insert(k.to_string(), v.to_string());
    }
    Ok(map)
}

pub fn spec_from(args: CreateArgs) -> Result<ServiceSpec> {
    let mode = match (args.mode, args.replicas) {
        (Some(ModeArg::Global), _) => Mode::Global(GlobalMode {}),
        (_, replicas) => Mode::Replicated(ReplicatedMode {
            replicas: replicas.unwrap_or(1),
        }),
    };
    let seccomp = crate::security_opt::seccomp_of(&args.security_opt)?;
    let healthcheck = crate::health::health_check_of(&args.health)?;
    let (command, cmd_args) = match args.command.split_first() {
        Some((first, rest)) => (vec![first.clone()], rest.to_vec()),
        None => (Vec::new(), Vec::new()),
    };
    let mut spec = ServiceSpec {
        name: args.name,
        image: args.image,
        command,
        args: cmd_args,
        env: args.env,
        mode: Some(mode),
        resources: Some(args.resources.apply(None)),
        placement: Some(Placement {
            constraints: args.constraint,
            ..Default::default()
        }),
        restart_policy: Some(args.restart.apply(None)),
        update_config: args.update.apply(None),
        rollback_config: args.rollback.apply(None),
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
        stop_signal: args.stop.stop_signal.clone().unwrap_or_default(),
        stop_grace_seconds: args.stop.stop_grace_period.unwrap_or(0),
        mounts: args.mounts.mounts()?,
        ..Default::default()
    };
    args.settings.apply(&mut spec)?;
    Ok(spec)
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

/// The rollout's state ("updating", "rollback_completed", "" for none).
fn update_state(service: &Service) -> &'static str {
    let state = service.update_status.as_ref().map_or(0, |s| s.state);
    UpdateState::try_from(state).map_or("", |s| s.short_name())
}

/// How many tasks of each service (by id) run now.
pub(crate) async fn running_counts(client: &mut Client) -> Result<BTreeMap<String, usize>> {
    let tasks = client
        .list_tasks(ListTasksRequest::default())
        .await
        .map_err(explain)?
        .into_inner()
        .tasks;
    let mut counts = BTreeMap::new();
    for task in tasks {
        if task.status.as_ref().map(|s| s.state) == Some(TaskState::Running as i32) {
            *counts.entry(task.service_id).or_default() += 1;
        }
    }
    Ok(counts)
}

pub(crate) fn replicas_of(service: &Service) -> String {
    match service.spec.as_ref().and_then(|s| s.mode.as_ref()) {
        Some(Mode::Replicated(r)) => r.replicas.to_string(),
        Some(Mode::Global(_)) => "global".into(),
        None => "?".into(),
    }
}

pub(crate) async fn node_names(client: &mut Client) -> Result<BTreeMap<String, String>> {
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
        "spec_version": task.spec_version,
        "created_ms": task.timestamps.as_ref().map_or(0, |t| t.created_ms),
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

/// The tasks meant to run (desired running: history and tasks on their way
/// out left aside), counted by state and health and listed.
fn tasks_summary(tasks: &[Task], nodes: &BTreeMap<String, String>) -> serde_json::Value {
    let current: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.desired_state == TaskState::Running as i32)
        .collect();
    let mut by_state = BTreeMap::<&str, u64>::new();
    let mut by_health = BTreeMap::<&str, u64>::new();
    for task in &current {
        let status = task.status.clone().unwrap_or_default();
        *by_state.entry(state_name(status.state)).or_default() += 1;
        let health = health_name(status.health);
        if !health.is_empty() {
            *by_health.entry(health).or_default() += 1;
        }
    }
    let list: Vec<serde_json::Value> = current
        .iter()
        .map(|t| {
            let status = t.status.clone().unwrap_or_default();
            json!({
                "id": t.id,
                "slot": t.slot,
                "node": nodes.get(&t.node_id).cloned().unwrap_or_default(),
                "spec_version": t.spec_version,
                "state": state_name(status.state),
                "health": health_name(status.health),
            })
        })
        .collect();
    json!({
        "desired": current.len(),
        "by_state": by_state,
        "by_health": by_health,
        "list": list,
    })
}

/// `service ps`'s line about the rollout under way or last ended ("" when
/// there was none): "web: rollout paused (version 2 -> 3): 1 of 2 new tasks
/// failed ...".
fn rollout_line(service: &Service) -> String {
    let Some(status) = service.update_status.as_ref() else {
        return String::new();
    };
    let state = update_state(service);
    if state.is_empty() {
        return String::new();
    }
    let name = service.spec.as_ref().map_or("", |s| s.name.as_str());
    let mut line = format!(
        "{name}: rollout {} (version {} -> {})",
        state.replace('_', " "),
        status.from_version,
        status.to_version
    );
    if !status.message.is_empty() {
        line.push_str(": ");
        line.push_str(&status.message);
    }
    line
}

/// When the controller wrote this version (its clock, as task times are).
pub(crate) fn written_at(service: &Service) -> i64 {
    service
        .history
        .last()
        .map(|v| v.created_ms)
        .or_else(|| service.timestamps.as_ref().map(|t| t.updated_ms))
        .unwrap_or(0)
}

/// The service of a write's answer; its warnings go to stderr.
fn written(service: Option<Service>, warnings: &[String]) -> Service {
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    service.unwrap_or_default()
}

/// The service named (or with the id) `name`, as stored now.
pub(crate) async fn fetch_service(client: &mut Client, name: &str) -> Result<Service> {
    Ok(client
        .get_service(GetServiceRequest {
            service: name.to_string(),
        })
        .await
        .map_err(explain)?
        .into_inner())
}

/// `service update`: the current spec with the flags applied, written at the
/// version read (a concurrent change is refused, not overwritten), then waited
/// for.
async fn update_service(client: &mut Client, args: update::UpdateArgs) -> Result<()> {
    let current = fetch_service(client, &args.name).await?;
    let mut spec = update::apply(current.spec.clone().unwrap_or_default(), &args)?;
    if args.with_registry_auth {
        let dir = registry_auth::docker_config_dir();
        let credentials = registry_auth::credentials_for(&spec.image, &dir)?;
        spec.registry_auth =
            Some(registry_auth::create_secret(client, &spec.name, &credentials).await?);
    }
    let registry_auth = spec
        .registry_auth
        .clone()
        .filter(|_| args.with_registry_auth);
    let answer = client
        .update_service(UpdateServiceRequest {
            service: current.id.clone(),
            spec: Some(spec),
            version: current.version,
            no_resolve_image: args.no_resolve_image,
            ..Default::default()
        })
        .await;
    let answer = match answer {
        Ok(answer) => answer.into_inner(),
        Err(status) => {
            if let Some(reference) = &registry_auth {
                registry_auth::remove_secret(client, reference).await;
            }
            return Err(explain(status));
        }
    };
    let service = written(answer.service, &answer.warnings);
    let change = service
        .history
        .last()
        .map(|v| v.change.clone())
        .unwrap_or_default();
    println!("{}: version {}: {change}", args.name, service.spec_version);
    if !args.detach.unwrap_or(false) {
        let goal = Goal::Update {
            version: service.spec_version,
        };
        progress::wait(client, &args.name, goal, written_at(&service)).await?;
    }
    Ok(())
}

/// `service inspect`: the service as JSON, enums by name, without the
/// history's specs (`service history` shows them).
/// Tasks as `service ps` prints them; `with_service` names each task's
/// service (`stack ps`, where tasks of several services are listed).
pub(crate) fn print_tasks(
    tasks: &[Task],
    nodes: &BTreeMap<String, String>,
    format: Format,
    with_service: bool,
) -> Result<()> {
    match format {
        Format::Json => output::json(&serde_json::Value::Array(
            tasks.iter().map(|t| task_json(t, nodes)).collect(),
        ))?,
        Format::Table => output::table(
            &[
                "ID",
                if with_service { "NAME" } else { "SLOT" },
                "VERSION",
                "NODE",
                "DESIRED",
                "STATE",
                "MESSAGE",
            ],
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
                    } else if let Some(code) = s
                        .exit_code
                        .filter(|c| *c != 0 && s.state != TaskState::Shutdown as i32)
                    {
                        // (A task stopped as asked exits on its stop
                        // signal: nothing to explain.)
                        format!("exit code {code}")
                    } else if s.state == TaskState::Running as i32 {
                        // "running" says nothing the STATE column doesn't.
                        String::new()
                    } else {
                        s.message
                    };
                    vec![
                        t.id.clone(),
                        if with_service {
                            // Global tasks have no slot: their node names them.
                            let node = nodes.get(&t.node_id).cloned().unwrap_or_default();
                            match t.slot {
                                0 => format!("{}.{node}", t.service_name),
                                slot => format!("{}.{slot}", t.service_name),
                            }
                        } else {
                            t.slot.to_string()
                        },
                        t.spec_version.to_string(),
                        nodes.get(&t.node_id).cloned().unwrap_or_default(),
                        state_name(t.desired_state).into(),
                        state,
                        why,
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
    Ok(())
}

/// `service inspect`'s JSON: the stored service (spec, previous spec,
/// rollout status) and `tasks`, what its tasks that should run are doing
/// now: counts by state and health, and each one's slot, node, version,
/// state and health.
fn inspect_json(
    service: &Service,
    tasks: &[Task],
    nodes: &BTreeMap<String, String>,
) -> Result<serde_json::Value> {
    let mut value = serde_json::to_value(service)?;
    if let Some(object) = value.as_object_mut() {
        object.insert("tasks".into(), tasks_summary(tasks, nodes));
        object.remove("history");
        for spec in ["spec", "previous_spec"] {
            if let Some(spec) = object.get_mut(spec) {
                settings::name_enums(spec);
            }
        }
        let status = service.update_status.clone().unwrap_or_default();
        if let Some(status_json) = object
            .get_mut("update_status")
            .and_then(|s| s.as_object_mut())
        {
            let state = UpdateState::try_from(status.state).unwrap_or(UpdateState::None);
            status_json.insert("state".into(), json!(state.short_name()));
        }
    }
    Ok(value)
}

pub async fn run(client: &mut Client, cmd: ServiceCmd) -> Result<()> {
    match cmd {
        ServiceCmd::Create(args) => {
            let with_registry_auth = args.with_registry_auth;
            let detach = args.detach.unwrap_or(false);
            let no_resolve_image = args.no_resolve_image;
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
                    no_resolve_image,
                })
                .await;
            let service = match created {
                Ok(answer) => {
                    let answer = answer.into_inner();
                    written(answer.service, &answer.warnings)
                }
                Err(status) => {
                    if let Some(reference) = &registry_auth {
                        registry_auth::remove_secret(client, reference).await;
                    }
                    return Err(explain(status));
                }
            };
            println!("{}", service.id);
            if !detach {
                let name = service.spec.clone().unwrap_or_default().name;
                progress::wait(client, &name, Goal::Converge, written_at(&service)).await?;
            }
        }
        ServiceCmd::Update(args) => update_service(client, *args).await?,
        ServiceCmd::Rollback {
            name,
            to_version,
            detach,
        } => {
            let answer = client
                .update_service(UpdateServiceRequest {
                    service: name.clone(),
                    rollback: true,
                    rollback_to_version: to_version.unwrap_or(0),
                    ..Default::default()
                })
                .await
                .map_err(explain)?
                .into_inner();
            let service = written(answer.service, &answer.warnings);
            let restores = service.history.last().map_or(0, |v| v.restores);
            println!(
                "{name}: rolling back to version {restores} (as version {})",
                service.spec_version
            );
            if !detach.unwrap_or(false) {
                let goal = Goal::Rollback {
                    version: service.spec_version,
                };
                progress::wait(client, &name, goal, written_at(&service)).await?;
            }
        }
        ServiceCmd::History { name, format } => history::show(client, &name, format).await?,
        ServiceCmd::Promote { name, detach } => {
            let service = client
                .promote_service(PromoteServiceRequest {
                    service: name.clone(),
                })
                .await
                .map_err(explain)?
                .into_inner();
            let version = service.update_status.as_ref().map_or(0, |s| s.to_version);
            println!("{name}: promoted; rolling out version {version} to every task");
            if !detach.unwrap_or(false) {
                let goal = if service
                    .update_status
                    .as_ref()
                    .is_some_and(|s| s.state == UpdateState::RollbackStarted as i32)
                {
                    Goal::Rollback { version }
                } else {
                    Goal::Update { version }
                };
                progress::wait(client, &name, goal, written_at(&service)).await?;
            }
        }
        ServiceCmd::Ls { format } => {
            let services = client
                .list_services(ListServicesRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .services;
            let running = running_counts(client).await?;
            let running = |id: &str| running.get(id).copied().unwrap_or(0);
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
                                "version": s.spec_version,
                                "update_state": update_state(s),
                                "update_message": s.update_status.clone().unwrap_or_default().message,
                                "settings": settings::json_of(&spec),
                            })
                        })
                        .collect(),
                ))?,
                Format::Table => output::table(
                    &["ID", "NAME", "MODE/REPLICAS", "RUNNING", "IMAGE", "VERSION", "UPDATE"],
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
                                s.spec_version.to_string(),
                                update_state(s).to_string(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        ServiceCmd::Ps { name, format } => {
            let tasks = client
                .list_tasks(ListTasksRequest {
                    service: name.clone(),
                    node: String::new(),
                })
                .await
                .map_err(explain)?
                .into_inner()
                .tasks;
            let nodes = node_names(client).await?;
            if matches!(format, Format::Table) {
                // The rollout's state and message above the tasks, on stderr
                // so the table stays the table for scripts.
                let service = fetch_service(client, &name).await?;
                let line = rollout_line(&service);
                if !line.is_empty() {
                    eprintln!("{line}");
                }
            }
            print_tasks(&tasks, &nodes, format, false)?;
        }
        ServiceCmd::Inspect { name } => {
            let service = fetch_service(client, &name).await?;
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
            output::json(&inspect_json(&service, &tasks, &nodes)?)?;
        }
        ServiceCmd::Scale { target, detach } => {
            let Some((name, n)) = target.split_once('=') else {
                bail!("scale takes NAME=REPLICAS, got {target:?}");
            };
            let replicas: u64 = n
                .parse()
                .map_err(|_| anyhow::anyhow!("replicas {n:?} is not a number"))?;
            let service = client
                .scale_service(ScaleServiceRequest {
                    service: name.to_string(),
                    replicas,
                })
                .await
                .map_err(explain)?
                .into_inner();
            println!("{name} scaled to {replicas}");
            let labels = service.spec.as_ref().map(|s| &s.labels);
            if let Some(stack) = labels.and_then(|l| berth_proto::stacks::stack_of(l)) {
                // Declarative: the file's count comes back with the next deploy.
                eprintln!(
                    "note: {name} belongs to stack {stack}: the next `berth stack deploy` puts                      its replicas back to what the stack's files say (`berth stack diff` shows                      the drift)"
                );
            }
            if !detach.unwrap_or(false) {
                progress::wait(client, name, Goal::Converge, written_at(&service)).await?;
            }
        }
        ServiceCmd::Rm { names } => {
            let mut removals = crate::removals::Removals::new("service");
            for name in names {
                let request = RemoveServiceRequest {
                    service: name.clone(),
                };
                removals.record(name, client.remove_service(request).await);
            }
            removals.finish()?;
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
    use berth_proto::v1::UpdateStatus;
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

    fn task(id: &str, desired: TaskState, state: TaskState, health: TaskHealth) -> Task {
        Task {
            id: id.into(),
            slot: 1,
            node_id: "n1".into(),
            spec_version: 2,
            desired_state: desired as i32,
            status: Some(TaskStatus {
                state: state as i32,
                health: health as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn inspect_counts_the_current_tasks_by_state_and_health() {
        use TaskState::{Failed, Running, Shutdown, Starting};
        let tasks = [
            task("a", Running, Running, TaskHealth::Healthy),
            task("b", Running, Running, TaskHealth::Unhealthy),
            task("c", Running, Starting, TaskHealth::Starting),
            task("old", Shutdown, Failed, TaskHealth::Unhealthy),
        ];
        let nodes = BTreeMap::from([("n1".to_string(), "host-1".to_string())]);
        let value = inspect_json(&Service::default(), &tasks, &nodes).expect("json");
        let summary = &value["tasks"];
        assert_eq!(summary["desired"], 3, "{summary}");
        assert_eq!(summary["by_state"]["running"], 2, "{summary}");
        assert_eq!(summary["by_state"]["starting"], 1, "{summary}");
        assert_eq!(summary["by_health"]["healthy"], 1, "{summary}");
        assert_eq!(summary["by_health"]["unhealthy"], 1, "{summary}");
        assert_eq!(summary["list"][1]["health"], "unhealthy", "{summary}");
        assert_eq!(summary["list"][0]["node"], "host-1", "{summary}");
    }

    #[test]
    fn ps_names_the_rollout_and_its_message() {
        let mut service = Service {
            spec: Some(ServiceSpec {
                name: "web".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(rollout_line(&service), "");
        service.update_status = Some(UpdateStatus {
            state: UpdateState::RollbackPaused as i32,
            message: "1 of 2 new tasks failed".into(),
            from_version: 3,
            to_version: 2,
            ..Default::default()
        });
        assert_eq!(
            rollout_line(&service),
            "web: rollout rollback paused (version 3 -> 2): 1 of 2 new tasks failed"
        );
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
