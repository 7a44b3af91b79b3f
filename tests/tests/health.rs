//! Health checks end to end: the agent runs the service's check in the
//! container (exec) or in its network namespace (http), `service ps` shows the
//! health, and an unhealthy task is stopped, reported failed and replaced.

use std::time::Duration;

use anyhow::Result;
use berth_testhost::cluster::Cluster;
use berth_testhost::wait_until;

const CONVERGE: Duration = Duration::from_secs(60);

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
    for service in ["ok", "web"] {
        wait_until(&format!("{service} healthy"), CONVERGE, || {
            let rows = cluster.ps(service).ok()?;
            rows.iter()
                .any(|t| t.state == "running" && t.health == "healthy")
                .then_some(())
        })?;
    }
    let table = cluster.berth(&["service", "ps", "ok"])?;
    assert!(table.contains("running (healthy)"), "{table}");

    wait_until("sick replaced after failing its check", CONVERGE, || {
        let rows = cluster.ps("sick").ok()?;
        let failed = rows
            .iter()
            .filter(|t| t.state == "failed" && t.health == "unhealthy")
            .count();
        (failed >= 2).then_some(rows)
    })
    .map(|rows| {
        let failed = rows
            .iter()
            .find(|t| t.state == "failed")
            .expect("a failed task");
        assert!(
            failed.error.contains("2 health checks failed in a row")
                && failed.error.contains("not ready"),
            "{failed:?}"
        );
        assert_ne!(failed.slot, 0);
        assert!(rows.iter().all(|t| t.slot == failed.slot), "{rows:?}");
    })?;

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
