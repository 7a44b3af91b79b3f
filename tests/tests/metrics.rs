//! Prometheus metrics end to end: a controller and an agent started with
//! `--metrics-listen` serve `/metrics` that `promtool check metrics` accepts
//! (Debian's `prometheus` package), and the figures move as tasks start and
//! fail: task counts per service and state on the controller, starts,
//! failures and per-task cgroup gauges on the agent.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_testhost::cluster::Cluster;
use berth_testhost::wait_until;

const CONTROLLER_METRICS: u16 = 9400;
const AGENT_METRICS: u16 = 9401;
const CONVERGE: Duration = Duration::from_secs(60);

/// `/metrics` of the daemon on `host` listening on 127.0.0.1:`port` in that
/// host's namespace.
fn scrape(cluster: &Cluster, host: usize, port: u16) -> Result<String> {
    let body = cluster
        .c
        .net
        .host(host)
        .http_get(Ipv4Addr::LOCALHOST, port, "/metrics")?
        .with_context(|| format!("no answer from 127.0.0.1:{port}/metrics on host {host}"))?;
    // The harness trims the body; the text format ends with a newline.
    Ok(body + "\n")
}

/// `promtool check metrics` on `text`: fails with promtool's words.
fn promtool_check(text: &str, whose: &str) -> Result<()> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run promtool (Debian's prometheus package; deploy/install-deps.sh)")?;
    child
        .stdin
        .take()
        .context("promtool's stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() || !out.stdout.is_empty() || !out.stderr.is_empty() {
        bail!(
            "promtool check metrics refused the {whose}'s metrics ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The samples of `name` whose labels include every one of `labels`.
fn samples(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, series_labels) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest),
                None => (series, ""),
            };
            let matches = metric == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse().ok()).flatten()
        })
        .collect()
}

/// The sum of `name`'s samples with `labels` (0 without any).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text, name, labels).iter().sum()
}

/// Scrapes until `done` holds for the text (a few times a second).
fn wait_scrape(
    cluster: &Cluster,
    host: usize,
    port: u16,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> Result<String> {
    wait_until(what, CONVERGE, || {
        std::thread::sleep(Duration::from_millis(200));
        scrape(cluster, host, port).ok().filter(|text| done(text))
    })
}

#[test]
fn metrics_pass_promtool_and_move_as_tasks_start_and_fail() -> Result<()> {
    let controller_listen = format!("127.0.0.1:{CONTROLLER_METRICS}");
    // Both daemons log JSON lines (`--log-format json`), checked at the end.
    let mut cluster = Cluster::start_with(
        "metrics",
        1,
        0,
        1,
        &[
            "--metrics-listen",
            &controller_listen,
            "--log-format",
            "json",
        ],
    )?;
    cluster.agent_args = vec![
        "--metrics-listen".into(),
        format!("127.0.0.1:{AGENT_METRICS}"),
        "--log-format".into(),
        "json".into(),
    ];
    cluster.start_agent(0)?;
    cluster.wait_nodes_ready(1)?;
    let controller = cluster.c.members()[0];
    let agent = cluster.agent_hosts[0];

    // Before any task: both endpoints are well-formed, with the process collector.
    let text = wait_scrape(&cluster, controller, CONTROLLER_METRICS, "a leader", |t| {
        value(t, "berth_raft_is_leader", &[]) == 1.0
    })?;
    promtool_check(&text, "controller")?;
    assert!(
        value(&text, "process_resident_memory_bytes", &[]) > 0.0,
        "{text}"
    );
    assert!(value(&text, "berth_raft_term", &[]) >= 1.0, "{text}");
    assert!(
        value(&text, "berth_raft_leader_changes_total", &[]) >= 1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "berth_nodes", &[("status", "ready")]),
        1.0,
        "{text}"
    );
    let text = wait_scrape(&cluster, agent, AGENT_METRICS, "the agent's metrics", |t| {
        t.contains("berth_agent_task_starts_total")
    })?;
    promtool_check(&text, "agent")?;
    assert!(value(&text, "process_open_fds", &[]) > 0.0, "{text}");
    assert_eq!(
        value(&text, "berth_agent_task_starts_total", &[]),
        0.0,
        "{text}"
    );

    // Two tasks start: the controller counts them running, the agent counts
    // the starts and reads each task's cgroup.
    cluster.create_service("web", &["--replicas", "2"], &["sleep", "3600"])?;
    cluster.wait_running("web", 2, CONVERGE)?;
    let text = wait_scrape(
        &cluster,
        controller,
        CONTROLLER_METRICS,
        "2 web tasks running",
        |t| {
            value(
                t,
                "berth_tasks",
                &[("service", "web"), ("state", "running")],
            ) == 2.0
        },
    )?;
    promtool_check(&text, "controller")?;
    assert!(
        value(&text, "berth_scheduler_placements_total", &[]) >= 2.0,
        "{text}"
    );
    assert!(
        value(
            &text,
            "berth_leader_loop_rounds_total",
            &[("loop", "planner")]
        ) >= 1.0,
        "{text}"
    );
    assert!(
        value(&text, "berth_raft_proposal_duration_seconds_count", &[]) >= 1.0,
        "{text}"
    );
    assert!(
        value(&text, "berth_raft_applied_index", &[]) >= 1.0
            && value(&text, "berth_raft_commit_index", &[]) >= 1.0,
        "{text}"
    );
    let text = wait_scrape(&cluster, agent, AGENT_METRICS, "2 task starts", |t| {
        value(t, "berth_agent_task_starts_total", &[]) >= 2.0
            && samples(t, "berth_agent_task_pids", &[("service", "web")]).len() == 2
    })?;
    promtool_check(&text, "agent")?;
    assert_eq!(
        value(&text, "berth_agent_task_start_duration_seconds_count", &[]),
        value(&text, "berth_agent_task_starts_total", &[]),
        "{text}"
    );
    assert!(
        value(&text, "berth_agent_task_pids", &[("service", "web")]) >= 2.0,
        "{text}"
    );
    assert!(
        value(
            &text,
            "berth_agent_task_memory_bytes",
            &[("service", "web")]
        ) > 0.0,
        "{text}"
    );
    assert_eq!(
        samples(
            &text,
            "berth_agent_task_cpu_seconds_total",
            &[("service", "web")]
        )
        .len(),
        2,
        "{text}"
    );
    assert!(
        value(&text, "berth_agent_image_pulls_total", &[("outcome", "ok")]) >= 1.0,
        "{text}"
    );
    assert!(
        value(&text, "berth_agent_image_pull_bytes_total", &[]) > 0.0,
        "{text}"
    );
    assert!(
        value(&text, "berth_agent_dataplane_reconcile_rounds_total", &[]) >= 1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "berth_agent_task_failures_total", &[]),
        0.0,
        "{text}"
    );

    // A task whose command exits 3 fails after it ran; one whose command
    // does not exist fails before.
    cluster.create_service("crash", &[], &["sh", "-c", "exit 3"])?;
    cluster.create_service("missing", &[], &["/no/such/command"])?;
    let text = wait_scrape(
        &cluster,
        agent,
        AGENT_METRICS,
        "failures of both kinds",
        |t| {
            value(t, "berth_agent_task_failures_total", &[("stage", "run")]) >= 1.0
                && value(t, "berth_agent_task_failures_total", &[("stage", "start")]) >= 1.0
        },
    )?;
    promtool_check(&text, "agent")?;
    let text = wait_scrape(
        &cluster,
        controller,
        CONTROLLER_METRICS,
        "failed tasks",
        |t| {
            value(
                t,
                "berth_tasks",
                &[("service", "crash"), ("state", "failed")],
            ) >= 1.0
                && value(
                    t,
                    "berth_tasks",
                    &[("service", "missing"), ("state", "failed")],
                ) >= 1.0
        },
    )?;
    promtool_check(&text, "controller")?;

    // A task no node can take is pending, counted by why.
    cluster.create_service(
        "nowhere",
        &["--constraint", "node.labels.zone==nowhere"],
        &["sleep", "3600"],
    )?;
    wait_scrape(
        &cluster,
        controller,
        CONTROLLER_METRICS,
        "a task pending on its constraint",
        |t| value(t, "berth_tasks_pending", &[("reason", "constraint")]) >= 1.0,
    )?;
    // A rollout that completed is counted by its state.
    cluster.berth(&["service", "update", "web", "--env-add", "V=2"])?;
    let text = wait_scrape(
        &cluster,
        controller,
        CONTROLLER_METRICS,
        "web's rollout completed",
        |t| value(t, "berth_service_rollouts", &[("state", "completed")]) >= 1.0,
    )?;
    promtool_check(&text, "controller")?;

    // A removed service's per-task series go with its tasks.
    cluster.berth(&["service", "rm", "web"])?;
    wait_scrape(
        &cluster,
        agent,
        AGENT_METRICS,
        "web's task series gone",
        |t| samples(t, "berth_agent_task_pids", &[("service", "web")]).is_empty(),
    )?;

    // `berth pull` through the agent's API counts like a task's pull: a name
    // the registry does not have is a failed pull.
    let missing = format!("{}/no-such-image:1", cluster.registry.address());
    let out = cluster.berth_raw(
        0,
        &[
            "--tls-dir",
            &cluster.c.admin_dir().to_string_lossy(),
            "pull",
            &missing,
            "--all-nodes",
        ],
    )?;
    assert!(!out.status.success(), "pulling {missing} must fail");
    wait_scrape(
        &cluster,
        agent,
        AGENT_METRICS,
        "a failed pull through the API",
        |t| value(t, "berth_agent_image_pulls_total", &[("outcome", "failed")]) >= 1.0,
    )?;

    // --log-format json: every line either daemon logged is a JSON object
    // with its level and message, and ids are fields of their own.
    let controller_log = cluster.c.net.host_mut(controller).proc("controller")?.log();
    let agent_log = cluster.agent(0)?.log();
    for (whose, log, id) in [
        ("controller", &controller_log, "service"),
        ("agent", &agent_log, "task"),
    ] {
        let mut objects = Vec::new();
        // (The harness marks each start with a "==== start" line of its own.)
        for line in log
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("==== "))
        {
            let value: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("a {whose} log line that is not JSON: {line}"))?;
            assert!(
                value["level"].is_string() && value["message"].is_string(),
                "{whose}: {line}"
            );
            objects.push(value);
        }
        assert!(objects.len() >= 3, "{whose} logged: {log}");
        assert!(
            objects.iter().any(|o| o[id].is_string()),
            "no {whose} line has a top-level {id:?} field: {log}"
        );
    }
    Ok(())
}

#[test]
fn samples_are_found_by_name_and_labels() {
    let text = "# HELP x y\n# TYPE berth_tasks gauge\n\
                berth_tasks{service=\"web\",state=\"running\"} 2\n\
                berth_tasks{service=\"db\",state=\"running\"} 1\n\
                berth_tasks_pending{reason=\"cpu\"} 4\nberth_raft_term 7\n";
    assert_eq!(value(text, "berth_tasks", &[("state", "running")]), 3.0);
    assert_eq!(value(text, "berth_tasks", &[("service", "web")]), 2.0);
    assert_eq!(value(text, "berth_raft_term", &[]), 7.0);
    assert!(samples(text, "berth_tasks", &[("service", "api")]).is_empty());
}
