//! Rollouts from a pipeline's point of view, end to end with the `berth` CLI:
//! `service update` waits and exits with a code a pipeline can act on
//! (0 completed, 2 paused, 3 rolled back, 4 canaries await promotion), a
//! failing new version is rolled back by itself, `rollback` walks back through
//! `history` (and `--to-version` jumps), canaries wait for `promote`, and a
//! rollout that cannot progress fails loudly by its deadline.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_testhost::cluster::Cluster;
use berth_testhost::wait_until;
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(60);

/// A health check that fails at once: a version with it never turns healthy.
const FAILING_CHECK: [&str; 6] = [
    "--health-cmd",
    "exit 1",
    "--health-interval",
    "300ms",
    "--health-retries",
    "1",
];

/// `service update NAME ARGS... <FAILING_CHECK>`.
fn failing_update<'a>(name: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["service", "update", name];
    all.extend_from_slice(args);
    all.extend(FAILING_CHECK);
    all
}

/// What a pipeline sees of one CLI call.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(cluster: &Cluster, args: &[&str]) -> Result<Outcome> {
    let out = cluster.berth_env(0, &[], args)?;
    Ok(Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    })
}

/// Runs a CLI call that must exit with `code`.
fn expect(cluster: &Cluster, code: i32, args: &[&str]) -> Result<Outcome> {
    let outcome = run(cluster, args)?;
    if outcome.code != code {
        bail!(
            "berth {} exited {} (expected {code})\nstdout: {}\nstderr: {}",
            args.join(" "),
            outcome.code,
            outcome.stdout,
            outcome.stderr
        );
    }
    Ok(outcome)
}

fn inspect(cluster: &Cluster, name: &str) -> Result<Value> {
    let out = cluster.berth(&["service", "inspect", name])?;
    serde_json::from_str(&out).context("service inspect JSON")
}

/// The spec versions of the tasks that run (desired and observed).
fn running_versions(cluster: &Cluster, name: &str) -> Result<Vec<u64>> {
    let mut versions: Vec<u64> = cluster
        .ps(name)?
        .into_iter()
        .filter(|t| t.state == "running" && t.desired_state == "running")
        .map(|t| t.spec_version)
        .collect();
    versions.sort_unstable();
    Ok(versions)
}

fn env_of(service: &Value) -> Vec<String> {
    service["spec"]["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A service of `replicas` busybox tasks, created the way a pipeline does:
/// the command returns once every task runs.
fn create(cluster: &Cluster, name: &str, replicas: &str, extra: &[&str]) -> Result<()> {
    let mut args = vec![
        "service",
        "create",
        name,
        "--image",
        cluster.image.as_str(),
        "--replicas",
        replicas,
        "--env",
        "V=1",
        "--update-monitor",
        "1s",
        "--restart-delay",
        "200ms",
    ];
    args.extend_from_slice(extra);
    args.extend(["--", "sleep", "3600"]);
    expect(cluster, 0, &args)?;
    // No polling: create returned, so every task runs.
    let running = running_versions(cluster, name)?;
    let want: usize = replicas.parse()?;
    if running.len() != want {
        bail!(
            "create returned with {} of {want} tasks running",
            running.len()
        );
    }
    Ok(())
}

#[test]
fn update_exit_codes_tell_a_pipeline_what_happened() -> Result<()> {
    let cluster = Cluster::start("rollout-codes", 1, 2, 0)?;
    create(&cluster, "web", "4", &[])?;

    // A good version: waits until every task runs it, exit 0.
    let ok = expect(
        &cluster,
        0,
        &[
            "service",
            "update",
            "web",
            "--env-add",
            "V=2",
            "--update-parallelism",
            "2",
        ],
    )?;
    assert!(
        ok.stdout.contains("version 2: env +V=2 -V=1"),
        "{}",
        ok.stdout
    );
    assert!(
        ok.stderr.contains("slot 4:"),
        "one line per slot change: {}",
        ok.stderr
    );
    assert_eq!(running_versions(&cluster, "web")?, vec![2, 2, 2, 2]);
    let service = inspect(&cluster, "web")?;
    assert_eq!(service["update_status"]["state"], "completed");
    assert_eq!(env_of(&service), vec!["V=2"]);
    assert_eq!(service["previous_spec"]["env"][0], "V=1");

    // A version whose health check fails: rolled back by itself, exit 3.
    let bad = expect(
        &cluster,
        3,
        &failing_update(
            "web",
            &[
                "--env-add",
                "V=3",
                "--update-failure-action",
                "rollback",
                "--update-parallelism",
                "2",
            ],
        ),
    )?;
    assert!(bad.stderr.contains("rolled back"), "{}", bad.stderr);
    let service = inspect(&cluster, "web")?;
    assert_eq!(service["update_status"]["state"], "rollback_completed");
    assert_eq!(
        env_of(&service),
        vec!["V=2"],
        "the rollback restores version 2"
    );
    // Tasks that still run version 2's spec stay (version 4 restores it);
    // those of the failed version 3 are replaced.
    wait_until("every task back on the old spec", CONVERGE, || {
        let v = running_versions(&cluster, "web").ok()?;
        (v.len() == 4 && v.iter().all(|v| *v == 2 || *v == 4)).then_some(())
    })?;

    // The same failure with failure action pause: exit 2, the service says so.
    let paused = expect(
        &cluster,
        2,
        &failing_update(
            "web",
            &[
                "--env-add",
                "V=5",
                "--update-failure-action",
                "pause",
                "--update-parallelism",
                "1",
            ],
        ),
    )?;
    assert!(paused.stderr.contains("web"), "{}", paused.stderr);
    let ls = cluster.berth(&["service", "ls"])?;
    assert!(ls.contains("paused"), "{ls}");

    // --detach returns at once, before anything ran.
    let detached = expect(
        &cluster,
        0,
        &[
            "service",
            "update",
            "web",
            "--env-add",
            "V=6",
            "--no-healthcheck",
            "--detach",
        ],
    )?;
    assert!(!detached.stderr.contains("slot"), "{}", detached.stderr);
    // Bad input: a clear error, nothing changed.
    let before = inspect(&cluster, "web")?["spec_version"].clone();
    let refused = expect(
        &cluster,
        1,
        &["service", "update", "web", "--env-add", "NOVALUE"],
    )?;
    assert!(
        refused.stderr.contains("--env-add \"NOVALUE\""),
        "{}",
        refused.stderr
    );
    assert_eq!(inspect(&cluster, "web")?["spec_version"], before);
    Ok(())
}

#[test]
fn rollback_walks_back_through_history_and_jumps_to_a_version() -> Result<()> {
    let cluster = Cluster::start("rollout-back", 1, 1, 0)?;
    create(&cluster, "api", "2", &[])?;
    for v in ["V=2", "V=3"] {
        expect(&cluster, 0, &["service", "update", "api", "--env-add", v])?;
    }
    // Back once: version 2's spec (as version 4); back again: version 1's,
    // not forward to 3 as Swarm would.
    expect(&cluster, 0, &["service", "rollback", "api"])?;
    assert_eq!(env_of(&inspect(&cluster, "api")?), vec!["V=2"]);
    expect(&cluster, 0, &["service", "rollback", "api"])?;
    assert_eq!(env_of(&inspect(&cluster, "api")?), vec!["V=1"]);
    expect(
        &cluster,
        0,
        &["service", "rollback", "api", "--to-version", "3"],
    )?;
    let service = inspect(&cluster, "api")?;
    assert_eq!(env_of(&service), vec!["V=3"]);
    assert_eq!(service["spec_version"], 6);
    assert_eq!(running_versions(&cluster, "api")?, vec![6, 6]);

    let history: Value =
        serde_json::from_str(&cluster.berth(&["service", "history", "api", "--format", "json"])?)?;
    let rows = history.as_array().context("history rows")?;
    let versions: Vec<u64> = rows.iter().filter_map(|r| r["version"].as_u64()).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(rows[0]["change"], "created");
    assert_eq!(rows[3]["restores"], 2);
    assert!(
        rows[5]["change"]
            .as_str()
            .unwrap_or("")
            .starts_with("rollback to version 3"),
        "{history}"
    );
    assert_eq!(rows[5]["current"], true);
    let table = cluster.berth(&["service", "history", "api"])?;
    assert!(table.contains("6 *"), "{table}");

    let gone = expect(
        &cluster,
        1,
        &["service", "rollback", "api", "--to-version", "99"],
    )?;
    assert!(gone.stderr.contains("no version 99"), "{}", gone.stderr);
    Ok(())
}

#[test]
fn canaries_wait_for_promote_and_a_failing_canary_rolls_back() -> Result<()> {
    let cluster = Cluster::start("rollout-canary", 1, 2, 0)?;
    create(
        &cluster,
        "web",
        "3",
        &["--update-failure-action", "rollback"],
    )?;

    let canary = expect(
        &cluster,
        4,
        &[
            "service",
            "update",
            "web",
            "--env-add",
            "V=2",
            "--update-canary",
            "1",
        ],
    )?;
    assert!(canary.stderr.contains("promote"), "{}", canary.stderr);
    // The old tasks all run, and one canary beside them.
    let versions = running_versions(&cluster, "web")?;
    assert_eq!(versions, vec![1, 1, 1, 2], "{versions:?}");
    assert_eq!(
        inspect(&cluster, "web")?["update_status"]["awaiting_promotion"],
        true
    );

    expect(&cluster, 0, &["service", "promote", "web"])?;
    assert_eq!(running_versions(&cluster, "web")?, vec![2, 2, 2]);
    let again = expect(&cluster, 1, &["service", "promote", "web"])?;
    assert!(
        again.stderr.contains("no rollout waiting"),
        "{}",
        again.stderr
    );

    // A canary that turns unhealthy: rolled back, the old tasks never stopped.
    expect(&cluster, 3, &failing_update("web", &["--env-add", "V=3"]))?;
    let service = inspect(&cluster, "web")?;
    assert_eq!(env_of(&service), vec!["V=2"]);
    wait_until("the canary gone", CONVERGE, || {
        let v = running_versions(&cluster, "web").ok()?;
        (v.len() == 3).then_some(())
    })?;

    // Auto-promotion: once the canary has run for --update-min-healthy the
    // rollout goes on by itself, and the waiting update ends completed.
    expect(
        &cluster,
        0,
        &[
            "service",
            "update",
            "web",
            "--env-add",
            "V=4",
            "--update-canary",
            "1",
            "--update-auto-promote",
            "--update-min-healthy",
            "1s",
        ],
    )?;
    let service = inspect(&cluster, "web")?;
    assert_eq!(env_of(&service), vec!["V=4"]);
    assert_eq!(service["update_status"]["state"], "completed", "{service}");
    let v = running_versions(&cluster, "web")?;
    assert!(
        v.len() == 3 && v.windows(2).all(|w| w[0] == w[1]) && v[0] > 2,
        "{v:?}"
    );
    Ok(())
}

#[test]
fn a_rollout_without_progress_fails_loudly_by_its_deadline() -> Result<()> {
    let cluster = Cluster::start("rollout-deadline", 1, 1, 0)?;
    create(&cluster, "web", "2", &[])?;
    // No node has this label: the first replacement never leaves PENDING.
    let stuck = expect(
        &cluster,
        3,
        &[
            "service",
            "update",
            "web",
            "--constraint-add",
            "node.labels.zone==nowhere",
            "--update-progress-deadline",
            "3s",
            "--update-failure-action",
            "rollback",
        ],
    )?;
    assert!(stuck.stderr.contains("no progress"), "{}", stuck.stderr);
    wait_until("both replicas back", CONVERGE, || {
        let v = running_versions(&cluster, "web").ok()?;
        (v.len() == 2).then_some(())
    })?;
    Ok(())
}
