//! Health checks end to end: the agent runs the service's check in the
//! container (exec) or in its network namespace (http), `service ps` shows the
//! health, and an unhealthy task is stopped, reported failed and replaced.
//! Without a check of its own a service runs its image's `HEALTHCHECK`.

use std::time::{Duration, Instant};

use anyhow::Result;
use berth_testhost::cluster::Cluster;
use berth_testhost::images::{ImageHealthcheck, layout_with_healthcheck};
use berth_testhost::wait_until;

const CONVERGE: Duration = Duration::from_secs(60);

/// Waits until two tasks of `service` have failed as unhealthy, each after
/// 2 failed checks in a row whose output says `reason`, and were replaced in
/// the same slot.
fn wait_replaced_after_failing(cluster: &Cluster, service: &str, reason: &str) -> Result<()> {
    let rows = wait_until(
        &format!("{service} replaced after failing its check"),
        CONVERGE,
        || {
            let rows = cluster.ps(service).ok()?;
            let failed = rows
                .iter()
                .filter(|t| t.state == "failed" && t.health == "unhealthy")
                .count();
            (failed >= 2).then_some(rows)
        },
    )?;
    let failed = rows
        .iter()
        .find(|t| t.state == "failed")
        .expect("a failed task");
    assert!(
        failed.error.contains("2 health checks failed in a row") && failed.error.contains(reason),
        "{failed:?}"
    );
    assert_ne!(failed.slot, 0);
    assert!(rows.iter().all(|t| t.slot == failed.slot), "{rows:?}");
    Ok(())
}

#[test]
fn passing_checks_make_tasks_healthy_and_a_failing_one_is_replaced() -> Result<()> {
    let cluster = Cluster::start("health", 1, 1, 0)?;
    // exec: a command that exits 0 in the container.
    cluster.create_service(
        "ok",
        &[
            "--health-cmd",
            "test -x /bin/sh",
            "--health-interval",
            "500ms",
        ],
        &["sleep", "3600"],
    )?;
    // http: busybox httpd answers GET / from the task's network namespace.
    cluster.create_service(
        "web",
        &["--health-http", "8080/", "--health-interval", "500ms"],
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo up > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
    )?;
    // tcp: a connect to the task's port, from its network namespace.
    cluster.create_service(
        "tcp",
        &["--health-tcp", "8081", "--health-interval", "500ms"],
        &["sh", "-c", "mkdir -p /www && exec httpd -f -p 8081 -h /www"],
    )?;
    // A check that never passes: unhealthy after 2 failures, then replaced.
    cluster.create_service(
        "sick",
        &[
            "--health-cmd",
            "echo not ready >&2; exit 1",
            "--health-interval",
            "500ms",
            "--health-retries",
            "2",
            "--restart-delay",
            "0.2",
        ],
        &["sleep", "3600"],
    )?;
    for service in ["ok", "web", "tcp"] {
        wait_until(&format!("{service} healthy"), CONVERGE, || {
            let rows = cluster.ps(service).ok()?;
            rows.iter()
                .any(|t| t.state == "running" && t.health == "healthy")
                .then_some(())
        })?;
    }
    let table = cluster.berth(&["service", "ps", "ok"])?;
    assert!(table.contains("running (healthy)"), "{table}");
    // `service inspect` tells the tasks' health too.
    let inspect: serde_json::Value =
        serde_json::from_str(&cluster.berth(&["service", "inspect", "ok"])?)?;
    let tasks = &inspect["tasks"];
    assert_eq!(tasks["by_health"]["healthy"], 1, "{tasks}");
    assert_eq!(tasks["list"][0]["health"], "healthy", "{tasks}");

    wait_replaced_after_failing(&cluster, "sick", "not ready")?;

    // A bad value is refused with the reason, before anything is created.
    let err = cluster
        .create_service(
            "bad",
            &["--health-tcp", "80", "--health-interval", "10ms"],
            &[],
        )
        .expect_err("a 10 ms interval is refused")
        .to_string();
    assert!(err.contains("interval 10 ms is below 100 ms"), "{err}");
    Ok(())
}

#[test]
fn a_task_answers_by_name_only_once_healthy() -> Result<()> {
    let cluster = Cluster::start("health_dns", 1, 1, 0)?;
    // Healthy once /ready exists; failures in the (long) start period do not
    // count, so it stays starting until then.
    cluster.create_service(
        "gate",
        &[
            "--health-cmd",
            "test -e /ready",
            "--health-interval",
            "300ms",
            "--health-start-period",
            "10m",
        ],
        &["sleep", "3600"],
    )?;
    cluster.create_service("client", &[], &["sleep", "3600"])?;
    cluster.wait_running("gate", 1, CONVERGE)?;
    cluster.wait_running("client", 1, CONVERGE)?;
    let task_of = |service: &str| -> Result<(String, Option<std::net::Ipv4Addr>)> {
        let rows = cluster.ps(service)?;
        let t = rows
            .into_iter()
            .find(|t| t.state == "running")
            .ok_or_else(|| anyhow::anyhow!("no running task of {service}"))?;
        Ok((t.id.clone(), t.addresses.get("berth").map(|a| a.addr())))
    };
    let (gate, gate_ip) = task_of("gate")?;
    let (client, _) = task_of("client")?;
    let gate_ip = gate_ip.ok_or_else(|| anyhow::anyhow!("gate has no address"))?;
    // The client answers for itself: the DNS is up.
    wait_until("client's own name to resolve", CONVERGE, || {
        (!cluster.lookup(0, &client, "tasks.client").ok()?.is_empty()).then_some(())
    })?;
    let rows = cluster.ps("gate")?;
    assert_eq!(rows[0].health, "starting", "{rows:?}");
    assert!(
        cluster.lookup(0, &client, "tasks.gate")?.is_empty(),
        "a starting task is not served"
    );

    let made = cluster.exec(0, &gate, &["touch", "/ready"])?;
    assert!(made.status.success(), "{made:?}");
    wait_until("gate healthy and served by name", CONVERGE, || {
        let healthy = cluster
            .ps("gate")
            .ok()?
            .iter()
            .any(|t| t.health == "healthy");
        let ips = cluster.lookup(0, &client, "tasks.gate").ok()?;
        (healthy && ips.contains(&gate_ip)).then_some(())
    })?;
    Ok(())
}

/// Pushes the cluster's busybox image with Docker's `HEALTHCHECK CMD <shell>`
/// (every 500 ms, unhealthy after 2 failures) as `<tag>:1`; returns its reference.
fn push_with_healthcheck(cluster: &Cluster, tag: &str, shell: &str) -> Result<String> {
    let layout = cluster.image_layout();
    let check = ImageHealthcheck {
        shell,
        interval: Duration::from_millis(500),
        timeout: Duration::from_secs(5),
        retries: 2,
        start_period: Duration::ZERO,
    };
    layout_with_healthcheck(&layout, "1", tag, &check)?;
    cluster
        .registry
        .push(&cluster.c.net, &layout, tag, &format!("{tag}:1"))
}

/// Waits until `service` has a healthy running task; returns how long that
/// took after its task was first seen running.
fn time_to_healthy(cluster: &Cluster, service: &str) -> Result<Duration> {
    let mut running_since = None;
    wait_until(&format!("{service} healthy"), CONVERGE, || {
        let rows = cluster.ps(service).ok()?;
        let task = rows.iter().find(|t| t.state == "running")?;
        let since = *running_since.get_or_insert_with(Instant::now);
        (task.health == "healthy").then(|| since.elapsed())
    })
}

#[test]
fn the_images_healthcheck_applies_unless_the_service_overrides_or_turns_it_off() -> Result<()> {
    let cluster = Cluster::start("health_img", 1, 1, 0)?;
    let passing = push_with_healthcheck(&cluster, "checked", "test -x /bin/sh")?;
    let failing =
        push_with_healthcheck(&cluster, "failing", "echo image check failed >&2; exit 1")?;
    let sleep = ["sleep", "3600"];
    // No health flag: the image's check with the image's timings.
    cluster.create_service_from("ok", &passing, &[], &sleep)?;
    cluster.create_service_from("sick", &failing, &["--restart-delay", "0.2"], &sleep)?;
    // No check at all, not even the image's.
    cluster.create_service_from("unchecked", &failing, &["--no-healthcheck"], &sleep)?;
    // The service's command instead of the image's, still at the image's interval.
    cluster.create_service_from(
        "overridden",
        &failing,
        &["--health-cmd", "test -x /bin/sh"],
        &sleep,
    )?;

    // Docker's default interval is 30 s: healthy sooner means the image's
    // 500 ms applied.
    for service in ["ok", "overridden"] {
        let took = time_to_healthy(&cluster, service)?;
        assert!(took < Duration::from_secs(15), "{service}: {took:?}");
    }
    let table = cluster.berth(&["service", "ps", "ok"])?;
    assert!(table.contains("running (healthy)"), "{table}");

    cluster.wait_running("unchecked", 1, CONVERGE)?;
    let unchecked = cluster.ps("unchecked")?;
    let unchecked_since = Instant::now();

    // The image's check fails twice in a row (its retries, not Docker's 3):
    // unhealthy, failed and replaced in the same slot.
    wait_replaced_after_failing(&cluster, "sick", "image check failed")?;

    // Long past the 2 failures at 500 ms that replaced sick's tasks, the
    // unchecked and the overridden tasks are the ones first started.
    std::thread::sleep(Duration::from_secs(3).saturating_sub(unchecked_since.elapsed()));
    let now = cluster.ps("unchecked")?;
    assert_eq!(
        now.iter().map(|t| &t.id).collect::<Vec<_>>(),
        unchecked.iter().map(|t| &t.id).collect::<Vec<_>>(),
        "{now:?}"
    );
    assert_eq!(now[0].state, "running", "{now:?}");
    let json: serde_json::Value = serde_json::from_str(&cluster.berth(&[
        "service",
        "ps",
        "unchecked",
        "--format",
        "json",
    ])?)?;
    assert_eq!(json[0]["health"], "", "{json}");
    let overridden = cluster.ps("overridden")?;
    assert!(
        overridden.len() == 1 && overridden[0].health == "healthy",
        "{overridden:?}"
    );
    Ok(())
}
