//! Stacks end to end (#15), with real controllers, agents, containers and a
//! registry on three test hosts: the Compose files under deploy/examples/
//! deploy and serve; an unchanged redeploy restarts nothing; a changed
//! variable, replica count or secret updates only what changed; `stack diff`
//! predicts exactly what the deploy then does (exit 0 / 1 / 2); `--prune`
//! removes what the files no longer name and nothing else; bad files and
//! foreign objects are refused with nothing written; ls/services/ps/rm.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_testhost::cluster::Cluster;
use berth_testhost::wait_until;
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(90);

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples")
}

fn example(name: &str) -> String {
    examples()
        .join(name)
        .join("compose.yaml")
        .to_string_lossy()
        .into_owned()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `berth ARGS` on the client host with REGISTRY set to the cluster's
/// registry and the variables in `env`; its output, whatever its exit.
fn berth(cluster: &Cluster, env: &[&str], args: &[&str]) -> Result<Output> {
    let registry = format!("REGISTRY={}", cluster.registry.address());
    let mut all = vec![registry.as_str()];
    all.extend_from_slice(env);
    cluster.berth_env(0, &all, args)
}

/// `berth ARGS`, which must succeed; its stdout.
fn berth_ok(cluster: &Cluster, env: &[&str], args: &[&str]) -> Result<String> {
    let out = berth(cluster, env, args)?;
    if !out.status.success() {
        bail!("berth {} failed: {}", args.join(" "), text(&out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The ids of the running tasks of `service`.
fn running_ids(cluster: &Cluster, service: &str) -> Result<BTreeSet<String>> {
    Ok(cluster
        .ps(service)?
        .into_iter()
        .filter(|t| t.state == "running" && t.desired_state == "running")
        .map(|t| t.id)
        .collect())
}

/// Waits until `GET path` on agent host 0's published `port` answers with a
/// body for which `good` holds; returns it.
fn wait_for_body(
    cluster: &Cluster,
    port: u16,
    path: &str,
    good: impl Fn(&str) -> bool,
) -> Result<String> {
    let ip = cluster.c.net.host(cluster.agent_hosts[0]).address();
    let last = std::cell::RefCell::new(None);
    wait_until(
        &format!("{ip}:{port}{path} to answer as expected"),
        CONVERGE,
        || {
            let client = cluster.c.net.host(cluster.c.client_host());
            let body = client.http_get(ip, port, path).ok().flatten();
            last.replace(body.clone());
            body.filter(|b| good(b))
        },
    )
    .with_context(|| format!("the last answer was {:?}", last.borrow()))
}

fn json(text: &str) -> Result<Value> {
    serde_json::from_str(text).with_context(|| format!("not JSON: {text}"))
}

/// The plan `stack diff --format json` prints: (kind, name, action) per object.
fn planned(out: &Output) -> Result<Vec<(String, String, String)>> {
    let value = json(&String::from_utf8_lossy(&out.stdout))?;
    Ok(value["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap_or_default().to_string(),
                c["name"].as_str().unwrap_or_default().to_string(),
                c["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// What changes: the (kind, name, action) entries that are not "unchanged".
fn changes(plan: &[(String, String, String)]) -> Vec<(String, String, String)> {
    plan.iter()
        .filter(|(_, _, action)| action != "unchanged")
        .cloned()
        .collect()
}

fn entry(kind: &str, name: &str, action: &str) -> (String, String, String) {
    (kind.into(), name.into(), action.into())
}

#[test]
fn a_web_app_with_a_database_and_a_cache_deploys_serves_and_updates_only_what_changed() -> Result<()>
{
    let cluster = Cluster::start("stk_web", 1, 3, 0)?;
    let file = example("webapp");
    // Nothing deployed yet: the diff is the whole file, exit 1.
    let diff = berth(
        &cluster,
        &[],
        &["stack", "diff", "-c", &file, "--format", "json", "demo"],
    )?;
    assert_eq!(diff.status.code(), Some(1), "{}", text(&diff));
    let plan = planned(&diff)?;
    for (kind, name) in [
        ("network", "demo_front"),
        ("network", "demo_back"),
        ("config", "demo_status"),
        ("service", "demo_web"),
        ("service", "demo_db"),
        ("service", "demo_cache"),
    ] {
        assert!(
            plan.contains(&entry(kind, name, "create")),
            "{kind} {name} not planned: {plan:?}"
        );
    }
    // The deploy waits until every service converged.
    let out = berth_ok(&cluster, &[], &["stack", "deploy", "-c", &file, "demo"])?;
    assert!(out.contains("+ service  demo_web"), "{out}");
    let body = wait_for_body(&cluster, 8088, "/cgi-bin/status", |b| {
        b.contains("db: db-ok") && b.contains("cache: cache-ok")
    })?;
    assert!(body.contains("hello from berth"), "{body}");
    assert_eq!(running_ids(&cluster, "demo_web")?.len(), 3);
    let db = running_ids(&cluster, "demo_db")?;
    let cache = running_ids(&cluster, "demo_cache")?;
    let web = running_ids(&cluster, "demo_web")?;

    // The same files again: nothing to do, nothing restarted.
    let diff = berth(&cluster, &[], &["stack", "diff", "-c", &file, "demo"])?;
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff));
    let out = berth_ok(&cluster, &[], &["stack", "deploy", "-c", &file, "demo"])?;
    assert!(out.contains("0 created, 0 updated, 0 removed"), "{out}");
    assert_eq!(running_ids(&cluster, "demo_web")?, web);
    assert_eq!(running_ids(&cluster, "demo_db")?, db);
    assert_eq!(running_ids(&cluster, "demo_cache")?, cache);

    // A changed variable: the diff names the web service's env and nothing
    // else; the deploy rolls web only.
    let greeting = ["GREETING=changed by a deploy"];
    let diff = berth(
        &cluster,
        &greeting,
        &["stack", "diff", "-c", &file, "--format", "json", "demo"],
    )?;
    assert_eq!(diff.status.code(), Some(1), "{}", text(&diff));
    assert_eq!(
        changes(&planned(&diff)?),
        vec![entry("service", "demo_web", "update")]
    );
    let fields = json(&String::from_utf8_lossy(&diff.stdout))?;
    let web_change = fields["changes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "demo_web").cloned())
        .context("demo_web in the plan")?;
    assert!(
        web_change["fields"]
            .to_string()
            .contains("changed by a deploy"),
        "{web_change}"
    );
    berth_ok(
        &cluster,
        &greeting,
        &["stack", "deploy", "-c", &file, "demo"],
    )?;
    wait_for_body(&cluster, 8088, "/cgi-bin/status", |b| {
        b.contains("changed by a deploy")
    })?;
    let web_after = running_ids(&cluster, "demo_web")?;
    assert!(
        web_after.is_disjoint(&web),
        "web was replaced: {web_after:?}"
    );
    assert_eq!(running_ids(&cluster, "demo_db")?, db, "db untouched");
    assert_eq!(
        running_ids(&cluster, "demo_cache")?,
        cache,
        "cache untouched"
    );
    // The diff after a deploy is empty: it predicted exactly what happened.
    let diff = berth(&cluster, &greeting, &["stack", "diff", "-c", &file, "demo"])?;
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff));

    // Declarative scaling: the file's count wins; `service scale` drifts and
    // says so, the diff shows the drift, a deploy puts it back.
    let scaled = berth(&cluster, &[], &["service", "scale", "demo_web=4"])?;
    assert!(scaled.status.success(), "{}", text(&scaled));
    assert!(
        String::from_utf8_lossy(&scaled.stderr).contains("belongs to stack demo"),
        "{}",
        text(&scaled)
    );
    let two = ["GREETING=changed by a deploy", "WEB_REPLICAS=2"];
    let diff = berth(&cluster, &two, &["stack", "diff", "-c", &file, "demo"])?;
    assert_eq!(diff.status.code(), Some(1), "{}", text(&diff));
    let shown = String::from_utf8_lossy(&diff.stdout);
    assert!(shown.contains("replicas: 4 -> 2"), "{shown}");
    berth_ok(&cluster, &two, &["stack", "deploy", "-c", &file, "demo"])?;
    wait_until("2 web tasks", CONVERGE, || {
        (running_ids(&cluster, "demo_web").ok()?.len() == 2).then_some(())
    })?;
    assert_eq!(running_ids(&cluster, "demo_db")?, db, "db untouched");

    // The listings.
    let stacks = json(&berth_ok(
        &cluster,
        &[],
        &["stack", "ls", "--format", "json"],
    )?)?;
    let demo = stacks
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "demo").cloned())
        .context("demo in stack ls")?;
    assert_eq!(demo["services"], 3, "{demo}");
    assert_eq!(demo["networks"], 2, "{demo}");
    let services = berth_ok(&cluster, &[], &["stack", "services", "demo"])?;
    for name in ["demo_web", "demo_db", "demo_cache"] {
        assert!(services.contains(name), "{services}");
    }
    assert!(services.contains("*:8088->80/tcp"), "{services}");
    let ps = berth_ok(&cluster, &[], &["stack", "ps", "demo"])?;
    assert!(ps.contains("demo_db.1"), "{ps}");

    // Removal: services, networks and the config go; the volume stays.
    let out = berth_ok(&cluster, &[], &["stack", "rm", "demo"])?;
    assert!(out.contains("Removing service demo_web"), "{out}");
    let left = json(&berth_ok(
        &cluster,
        &[],
        &["stack", "ls", "--format", "json"],
    )?)?;
    assert_eq!(left, Value::Array(Vec::new()));
    let volumes = berth_ok(&cluster, &[], &["volume", "ls"])?;
    assert!(volumes.contains("demo_dbdata"), "{volumes}");
    Ok(())
}

#[test]
fn a_global_monitor_and_a_service_with_secrets_and_configs_deploy_and_roll_on_new_content()
-> Result<()> {
    let cluster = Cluster::start("stk_files", 1, 3, 0)?;
    // A global service: one task per node.
    berth_ok(
        &cluster,
        &["INTERVAL=1"],
        &["stack", "deploy", "-c", &example("node-monitor"), "mon"],
    )?;
    let tasks = cluster.ps("mon_monitor")?;
    let nodes: BTreeSet<&str> = tasks
        .iter()
        .filter(|t| t.state == "running")
        .map(|t| t.node.as_str())
        .collect();
    assert_eq!(nodes.len(), 3, "{tasks:?}");

    // Secrets, configs and an env file, from a copy of the example (the
    // test changes the secret).
    let dir = cluster.c.net.workdir().join("secrets-example");
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(examples().join("secrets"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), dir.join(entry.file_name()))?;
    }
    let file = dir.join("compose.yaml").to_string_lossy().into_owned();
    berth_ok(&cluster, &[], &["stack", "deploy", "-c", &file, "app"])?;
    let body = wait_for_body(&cluster, 8081, "/cgi-bin/whoami", |b| b.contains("key:"))?;
    assert!(body.contains("mode: demo"), "{body}");
    assert!(body.contains("config: listen 8000"), "{body}");
    let old_key = body.clone();
    let api = running_ids(&cluster, "app_api")?;
    assert_eq!(api.len(), 2);

    // A new secret value: the diff names the secret and the service that
    // uses it (never the value); the deploy rolls the service onto it.
    std::fs::write(dir.join("api_key.txt"), "a-rotated-key\n")?;
    let diff = berth(
        &cluster,
        &[],
        &["stack", "diff", "-c", &file, "--format", "json", "app"],
    )?;
    assert_eq!(diff.status.code(), Some(1), "{}", text(&diff));
    let planned_changes = changes(&planned(&diff)?);
    assert!(
        planned_changes.contains(&entry("secret", "app_api_key", "update")),
        "{planned_changes:?}"
    );
    assert!(
        planned_changes.contains(&entry("service", "app_api", "update")),
        "{planned_changes:?}"
    );
    assert!(
        !String::from_utf8_lossy(&diff.stdout).contains("a-rotated-key"),
        "the plan shows a secret value: {}",
        text(&diff)
    );
    berth_ok(&cluster, &[], &["stack", "deploy", "-c", &file, "app"])?;
    let body = wait_for_body(&cluster, 8081, "/cgi-bin/whoami", |b| {
        b.contains("key:") && b != old_key
    })?;
    assert!(body.contains("mode: demo"), "{body}");
    let rolled = running_ids(&cluster, "app_api")?;
    assert!(rolled.is_disjoint(&api), "{rolled:?} vs {api:?}");
    // The monitor, in another stack, was not touched.
    assert_eq!(
        cluster
            .ps("mon_monitor")?
            .iter()
            .filter(|t| t.state == "running")
            .count(),
        3
    );
    Ok(())
}

/// A small stack of two services and a config, written by the test.
fn write_small_stack(dir: &Path, with_b: bool) -> Result<String> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("b.conf"), "b\n")?;
    let mut file = String::from(
        "services:\n  a:\n    image: ${REGISTRY}/busybox:1\n    command: [\"sleep\", \"3600\"]\n",
    );
    if with_b {
        file.push_str(
            "  b:\n    image: ${REGISTRY}/busybox:1\n    command: [\"sleep\", \"3600\"]\n    \
             configs: [bconf]\nconfigs:\n  bconf:\n    file: ./b.conf\n",
        );
    }
    let path = dir.join(if with_b { "full.yaml" } else { "small.yaml" });
    std::fs::write(&path, file)?;
    Ok(path.to_string_lossy().into_owned())
}

#[test]
fn prune_removes_what_the_files_no_longer_name_and_bad_input_changes_nothing() -> Result<()> {
    let cluster = Cluster::start("stk_prune", 1, 2, 0)?;
    let dir = cluster.c.net.workdir().join("small");
    let full = write_small_stack(&dir, true)?;
    let small = write_small_stack(&dir, false)?;
    // A service outside any stack, which no prune may touch.
    cluster.create_service("other", &[], &["sleep", "3600"])?;
    berth_ok(&cluster, &[], &["stack", "deploy", "-c", &full, "s"])?;
    let a = running_ids(&cluster, "s_a")?;

    // Without --prune, b stays and the diff says it is kept (no change).
    let diff = berth(&cluster, &[], &["stack", "diff", "-c", &small, "s"])?;
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff));
    assert!(
        String::from_utf8_lossy(&diff.stdout).contains("--prune removes it"),
        "{}",
        text(&diff)
    );
    berth_ok(&cluster, &[], &["stack", "deploy", "-c", &small, "s"])?;
    assert_eq!(running_ids(&cluster, "s_b")?.len(), 1, "b kept");
    // With --prune the diff counts the removals, and the deploy does them.
    let diff = berth(
        &cluster,
        &[],
        &[
            "stack", "diff", "--prune", "-c", &small, "--format", "json", "s",
        ],
    )?;
    assert_eq!(diff.status.code(), Some(1), "{}", text(&diff));
    let mut removed = changes(&planned(&diff)?);
    removed.sort();
    assert_eq!(
        removed,
        vec![
            entry("config", "s_bconf", "remove"),
            entry("service", "s_b", "remove"),
        ]
    );
    berth_ok(
        &cluster,
        &[],
        &["stack", "deploy", "--prune", "-c", &small, "s"],
    )?;
    let services = berth_ok(&cluster, &[], &["service", "ls"])?;
    assert!(!services.contains("s_b"), "{services}");
    assert!(services.contains("other"), "{services}");
    assert_eq!(running_ids(&cluster, "s_a")?, a, "a untouched");
    let configs = berth_ok(&cluster, &[], &["config", "ls"])?;
    assert!(!configs.contains("s_bconf"), "{configs}");

    // A bad file: the error names file, line and column; diff exits 2 and a
    // deploy writes nothing.
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "services:\n  web:\n    image: x\n    deploy:\n      replicas: many\n",
    )?;
    let bad = bad.to_string_lossy().into_owned();
    let diff = berth(&cluster, &[], &["stack", "diff", "-c", &bad, "t"])?;
    assert_eq!(diff.status.code(), Some(2), "{}", text(&diff));
    let err = String::from_utf8_lossy(&diff.stderr);
    assert!(err.contains("bad.yaml:5:"), "{}", text(&diff));
    let deploy = berth(&cluster, &[], &["stack", "deploy", "-c", &bad, "t"])?;
    assert!(!deploy.status.success(), "{}", text(&deploy));
    // An object of the same name that is not the stack's refuses the whole
    // deploy, and nothing of it is created.
    cluster.create_service("u_a", &[], &["sleep", "3600"])?;
    let taken = berth(&cluster, &[], &["stack", "deploy", "-c", &full, "u"])?;
    assert!(!taken.status.success(), "{}", text(&taken));
    assert!(
        String::from_utf8_lossy(&taken.stderr).contains("u_a"),
        "{}",
        text(&taken)
    );
    let stacks = json(&berth_ok(
        &cluster,
        &[],
        &["stack", "ls", "--format", "json"],
    )?)?;
    let names: Vec<&str> = stacks
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec!["s"], "{stacks}");
    let services = berth_ok(&cluster, &[], &["service", "ls"])?;
    assert!(!services.contains("u_b"), "{services}");
    Ok(())
}
