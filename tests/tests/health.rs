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
        .berth(&[
            "service",
            "create",
            "bad",
            "--image",
            &cluster.image,
            "--health-tcp",
            "80",
            "--health-interval",
            "10ms",
        ])
        .expect_err("a 10 ms interval is refused")
        .to_string();
    assert!(err.contains("interval 10 ms is below 100 ms"), "{err}");
    Ok(())
}
