//! `berth ps`: tasks across every service, as `docker ps` lists containers:
//! id, image, command, created, status ("Up 3 minutes", "Exited (1) 2
//! seconds ago"), ports, node and name (`service.slot`; a one-off's own
//! name). Running tasks by default, all with `-a`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use berth_proto::v1::{ListTasksRequest, PortProtocol, PublishMode, Task, TaskHealth, TaskState};
use clap::Args;
use serde_json::json;

use crate::client::{Client, explain};
use crate::output::{self, Format};

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Every task, ended ones too (default: running ones).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// KEY=VALUE: id, name, service, node, status (created, running,
    /// exited), label (KEY or KEY=VALUE), one-off (true/false); repeatable
    /// (one key twice: either value; different keys: all of them).
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Task ids only.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Full ids and commands.
    #[arg(long)]
    pub no_trunc: bool,
}

/// Docker's word for a task's state: what `--filter status=` takes.
pub fn docker_state(task: &Task) -> &'static str {
    let state = task.status.as_ref().map_or(0, |s| s.state);
    match TaskState::try_from(state).unwrap_or(TaskState::New) {
        TaskState::New
        | TaskState::Pending
        | TaskState::Assigned
        | TaskState::Preparing
        | TaskState::Starting => "created",
        TaskState::Running => "running",
        TaskState::Complete
        | TaskState::Shutdown
        | TaskState::Failed
        | TaskState::Rejected
        | TaskState::Orphaned => "exited",
    }
}

/// Docker's `units.HumanDuration`: "Less than a second", "3 minutes", ...
pub fn human_duration(ms: i64) -> String {
    let seconds = ms.max(0) / 1000;
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match () {
        _ if seconds < 1 => "Less than a second".into(),
        _ if seconds == 1 => "1 second".into(),
        _ if seconds < 60 => plural(seconds, "second"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => plural(minutes, "minute"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => plural(hours, "hour"),
        _ if hours < 24 * 7 * 2 => plural(hours / 24, "day"),
        _ if hours < 24 * 30 * 2 => plural(hours / 24 / 7, "week"),
        _ if hours < 24 * 365 * 2 => plural(hours / 24 / 30, "month"),
        _ => plural(hours / 24 / 365, "year"),
    }
}

/// The STATUS column at `now_ms`.
pub fn status_text(task: &Task, now_ms: i64) -> String {
    let status = task.status.clone().unwrap_or_default();
    let ago = |at: i64| format!("{} ago", human_duration(now_ms - at));
    match docker_state(task) {
        "created" => "Created".into(),
        "running" => {
            let since = if task.running_since_ms > 0 {
                task.running_since_ms
            } else {
                status.timestamp_ms
            };
            let health = match TaskHealth::try_from(status.health) {
                Ok(TaskHealth::Starting) => " (health: starting)",
                Ok(TaskHealth::Healthy) => " (healthy)",
                Ok(TaskHealth::Unhealthy) => " (unhealthy)",
                _ => "",
            };
            format!("Up {}{health}", human_duration(now_ms - since))
        }
        _ => match status.exit_code {
            Some(code) => format!("Exited ({code}) {}", ago(status.timestamp_ms)),
            // It never ran a process that could exit (image, network, node).
            None => {
                let state = TaskState::try_from(status.state).map_or("unknown", |s| s.short_name());
                let mut word = state.to_string();
                if let Some(first) = word.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                format!("{word} {}", ago(status.timestamp_ms))
            }
        },
    }
}

fn command_of(task: &Task, no_trunc: bool) -> String {
    let spec = task.spec.clone().unwrap_or_default();
    let words: Vec<String> = spec.command.into_iter().chain(spec.args).collect();
    if words.is_empty() {
        return String::new();
    }
    let text = words.join(" ");
    let short = if !no_trunc && text.chars().count() > 20 {
        format!("{}…", text.chars().take(19).collect::<String>())
    } else {
        text
    };
    format!("\"{short}\"")
}

fn ports_of(task: &Task) -> String {
    ports_text(&task.spec.clone().unwrap_or_default().ports)
}

/// Published ports as `docker ps` writes them: `*:8080->80/tcp`.
pub fn ports_text(ports: &[berth_proto::v1::PortConfig]) -> String {
    ports
        .iter()
        .map(|p| {
            let protocol = if p.protocol == PortProtocol::Udp as i32 {
                "udp"
            } else {
                "tcp"
            };
            let host = if p.publish_mode == PublishMode::Host as i32 {
                " (host)"
            } else {
                ""
            };
            format!("*:{}->{}/{protocol}{host}", p.published_port, p.target_port)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One `--filter` term.
struct Filter {
    key: String,
    value: String,
}

fn parse_filters(items: &[String]) -> Result<Vec<Filter>> {
    items
        .iter()
        .map(|item| {
            let Some((key, value)) = item.split_once('=') else {
                bail!("--filter {item:?} is not KEY=VALUE");
            };
            match key {
                "id" | "name" | "service" | "node" | "label" | "one-off" => {}
                "status" => {
                    if !["created", "running", "exited"].contains(&value) {
                        bail!("--filter status={value:?}: one of created, running, exited");
                    }
                }
                other => bail!(
                    "--filter {other:?} is unknown: id, name, service, node, status, label, one-off"
                ),
            }
            Ok(Filter {
                key: key.to_string(),
                value: value.to_string(),
            })
        })
        .collect()
}

fn term_matches(f: &Filter, task: &Task, name: &str, node: (&str, &str)) -> bool {
    let spec = task.spec.clone().unwrap_or_default();
    match f.key.as_str() {
        "id" => task.id.starts_with(&f.value),
        "name" => name.contains(&f.value),
        "service" => task.service_name == f.value || task.service_id.starts_with(&f.value),
        "node" => node.0 == f.value || node.1 == f.value,
        "status" => docker_state(task) == f.value,
        "label" => match f.value.split_once('=') {
            Some((k, v)) => spec.labels.get(k).is_some_and(|x| x == v),
            None => spec.labels.contains_key(&f.value),
        },
        "one-off" => spec.one_off == (f.value == "true"),
        _ => false,
    }
}

/// Terms with the same key: any of them; different keys: all.
fn matches(filters: &[Filter], task: &Task, name: &str, node: (&str, &str)) -> bool {
    let mut by_key: BTreeMap<&str, bool> = BTreeMap::new();
    for f in filters {
        let hit = term_matches(f, task, name, node);
        *by_key.entry(f.key.as_str()).or_insert(false) |= hit;
    }
    by_key.values().all(|hit| *hit)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub async fn run(client: &mut Client, args: PsArgs) -> Result<()> {
    let filters = parse_filters(&args.filter)?;
    let tasks = client
        .list_tasks(ListTasksRequest::default())
        .await
        .map_err(explain)?
        .into_inner()
        .tasks;
    let nodes = crate::service::node_names(client).await?;
    let now = now_ms();
    let mut shown: Vec<(Task, String, String)> = tasks
        .into_iter()
        .filter_map(|task| {
            let node = nodes.get(&task.node_id).cloned().unwrap_or_default();
            let name = task.display_name(&node);
            let wanted = (args.all || docker_state(&task) == "running")
                && matches(&filters, &task, &name, (&node, &task.node_id));
            wanted.then_some((task, name, node))
        })
        .collect();
    // Newest first, as docker ps.
    shown.sort_by_key(|(t, _, _)| {
        std::cmp::Reverse((
            t.timestamps.as_ref().map_or(0, |ts| ts.created_ms),
            t.id.clone(),
        ))
    });
    if args.quiet {
        for (task, _, _) in &shown {
            println!("{}", short_id(&task.id, args.no_trunc));
        }
        return Ok(());
    }
    match args.format {
        Format::Json => output::json(&serde_json::Value::Array(
            shown
                .iter()
                .map(|(task, name, node)| {
                    json!({
                        "name": name,
                        "node": node,
                        "state": docker_state(task),
                        "status": status_text(task, now),
                        "task": task,
                    })
                })
                .collect(),
        ))?,
        Format::Table => output::table(
            &[
                "TASK ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NODE", "NAMES",
            ],
            &shown
                .iter()
                .map(|(task, name, node)| {
                    let created = task.timestamps.as_ref().map_or(0, |t| t.created_ms);
                    vec![
                        short_id(&task.id, args.no_trunc),
                        task.spec
                            .as_ref()
                            .map(|s| s.image.clone())
                            .unwrap_or_default(),
                        command_of(task, args.no_trunc),
                        format!("{} ago", human_duration(now - created)),
                        status_text(task, now),
                        ports_of(task),
                        node.clone(),
                        name.clone(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
    Ok(())
}

/// Ids shown as docker shows them: 12 characters unless --no-trunc.
fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.chars().take(12).collect()
    }
}

#[cfg(test)]
mod tests {
    use berth_proto::v1::{ServiceSpec, TaskStatus};

    use super::*;

    #[test]
    fn ports_read_as_dockers() {
        use berth_proto::v1::PortConfig;
        let ports = [
            PortConfig {
                published_port: 8080,
                target_port: 80,
                ..Default::default()
            },
            PortConfig {
                published_port: 5353,
                target_port: 53,
                protocol: PortProtocol::Udp as i32,
                publish_mode: PublishMode::Host as i32,
            },
        ];
        assert_eq!(ports_text(&ports), "*:8080->80/tcp, *:5353->53/udp (host)");
        assert_eq!(ports_text(&[]), "");
    }

    fn task(state: TaskState, exit: Option<i32>, at: i64) -> Task {
        Task {
            id: "abcdefghijklmnopqrst".into(),
            service_name: "web".into(),
            slot: 2,
            running_since_ms: if state == TaskState::Running { at } else { 0 },
            spec: Some(ServiceSpec {
                labels: [("team".to_string(), "x".to_string())].into(),
                ..Default::default()
            }),
            status: Some(TaskStatus {
                state: state as i32,
                exit_code: exit,
                timestamp_ms: at,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn statuses_read_as_dockers() {
        let now = 1_000_000_000;
        assert_eq!(
            status_text(&task(TaskState::Running, None, now - 180_000), now),
            "Up 3 minutes"
        );
        assert_eq!(
            status_text(&task(TaskState::Failed, Some(1), now - 2_000), now),
            "Exited (1) 2 seconds ago"
        );
        assert_eq!(
            status_text(&task(TaskState::Pending, None, now), now),
            "Created"
        );
        assert_eq!(
            status_text(&task(TaskState::Rejected, None, now - 61_000), now),
            "Rejected About a minute ago"
        );
        assert_eq!(human_duration(500), "Less than a second");
        assert_eq!(human_duration(3 * 3_600_000), "3 hours");
        assert_eq!(human_duration(3 * 86_400_000), "3 days");
    }

    #[test]
    fn filters_and_names() {
        let t = task(TaskState::Running, None, 0);
        assert_eq!(t.display_name("n1"), "web.2");
        let f = |items: &[&str]| {
            parse_filters(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("filters")
        };
        let m = |items: &[&str]| matches(&f(items), &t, "web.2", ("n1", "id1"));
        assert!(m(&["status=running", "label=team", "node=n1"]));
        assert!(m(&["status=exited", "status=running"]), "same key: either");
        assert!(
            !m(&["status=running", "label=team=y"]),
            "different keys: all"
        );
        assert!(m(&["id=abc", "name=web", "service=web", "one-off=false"]));
        assert!(parse_filters(&["colour=red".to_string()]).is_err());
        assert!(parse_filters(&["status=up".to_string()]).is_err());
    }
}
