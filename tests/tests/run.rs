//! `berth run` and the verbs on one task (`logs`, `stop`, `kill`, `rm`) and
//! `berth ps`, end to end: real controllers, agents, containers and a
//! registry on test hosts, the CLI run as a user runs it.

use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_testhost::cluster::Cluster;
use berth_testhost::wait_until;
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(60);

/// `berth ARGS` against the first controller, whatever its exit.
fn berth(cluster: &Cluster, args: &[&str]) -> Result<Output> {
    cluster.berth_env(0, &[], args)
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

/// `berth ps -a --format json`: (name, task record, docker state, status).
fn ps_all(cluster: &Cluster, extra: &[&str]) -> Result<Vec<Value>> {
    let mut args = vec!["ps", "-a", "--format", "json"];
    args.extend_from_slice(extra);
    let out = cluster.berth(&args)?;
    let value: Value = serde_json::from_str(&out).context("ps JSON")?;
    Ok(value.as_array().cloned().unwrap_or_default())
}

fn named<'a>(rows: &'a [Value], name: &str) -> Option<&'a Value> {
    rows.iter().find(|r| r["name"] == name)
}

/// Whether `path` exists on agent host `i`.
fn exists_on(cluster: &Cluster, i: usize, path: &str) -> Result<bool> {
    let out = cluster
        .c
        .net
        .host(cluster.agent_hosts[i])
        .run_unchecked("test", &["-e", path])?;
    Ok(out.status.success())
}

#[test]
fn run_streams_output_exits_with_the_tasks_code_and_rm_leaves_nothing() -> Result<()> {
    let cluster = Cluster::start("run_attached", 1, 1, 0)?;
    let image = cluster.image.clone();

    // The cluster's `docker run hello-world`.
    let out = berth(
        &cluster,
        &["run", "--rm", "--name", "hello", &image, "echo", "hi"],
    )?;
    assert_eq!(code(&out), 0, "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");

    // stdout to stdout, stderr to stderr, the container's code.
    let out = berth(
        &cluster,
        &["run", &image, "sh", "-c", "echo out; echo err >&2; exit 3"],
    )?;
    assert_eq!(code(&out), 3, "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err\n"), "{}", text(&out.stderr));

    // A command that is not there: 127, and why.
    let out = berth(&cluster, &["run", &image, "no-such-command"])?;
    assert_eq!(code(&out), 127, "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );
    // One that is there but cannot be run (a directory): 126.
    let out = berth(&cluster, &["run", &image, "/bin"])?;
    assert_eq!(code(&out), 126, "stderr: {}", text(&out.stderr));

    // --rm: no service, no task record, no container or state on the node.
    wait_until("the --rm one-off to be gone", CONVERGE, || {
        let rows = ps_all(&cluster, &[]).ok()?;
        named(&rows, "hello").is_none().then_some(())
    })?;
    assert!(cluster.berth(&["service", "inspect", "hello"]).is_err());
    let id = cluster
        .berth(&[
            "run", "-d", "--rm", "--name", "brief", &image, "sh", "-c", "sleep 1",
        ])?
        .trim()
        .to_string();
    assert_eq!(id.len(), 20, "a task id: {id:?}");
    wait_until("the detached --rm one-off to be gone", CONVERGE, || {
        let rows = ps_all(&cluster, &[]).ok()?;
        rows.iter()
            .all(|r| r["task"]["id"] != id.as_str())
            .then_some(())
    })?;
    assert!(cluster.berth(&["service", "inspect", "brief"]).is_err());
    let agent_dir = cluster.agent_dir(0).to_string_lossy().to_string();
    for path in [
        format!("/run/berth/runtime/{id}"),
        format!("{agent_dir}/containers/{id}"),
        format!("{agent_dir}/logs/{id}"),
    ] {
        wait_until(&format!("{path} to go"), CONVERGE, || {
            (!exists_on(&cluster, 0, &path).ok()?).then_some(())
        })?;
    }

    // Berth's own failures: 125, and nothing is left behind.
    let before = ps_all(&cluster, &[])?.len();
    let missing = format!("{}/nothing-here:1", cluster.registry.address());
    let out = berth(&cluster, &["run", "--name", "ghost", &missing, "true"])?;
    assert_eq!(code(&out), 125, "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("has no image"),
        "the registry's word: {}",
        text(&out.stderr)
    );
    assert!(cluster.berth(&["service", "inspect", "ghost"]).is_err());
    let out = berth(&cluster, &["run", "--node", "n9", &image, "true"])?;
    assert_eq!(code(&out), 125);
    assert!(text(&out.stderr).contains("n9"), "{}", text(&out.stderr));
    let out = berth(&cluster, &["run", "--network", "nowhere", &image, "true"])?;
    assert_eq!(code(&out), 125);
    assert!(
        text(&out.stderr).contains("network nowhere not found"),
        "{}",
        text(&out.stderr)
    );
    let out = berth(&cluster, &["run", "-p", "99999:80", &image, "true"])?;
    assert_eq!(code(&out), 125);
    assert!(text(&out.stderr).contains("99999"), "{}", text(&out.stderr));
    let out = berth(&cluster, &["run", "--memory", "1t", &image, "true"])?;
    assert_eq!(code(&out), 125, "no node has 1 TiB: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no node can run"),
        "{}",
        text(&out.stderr)
    );
    let out = berth(&cluster, &["run", "--no-such-flag", &image])?;
    assert_eq!(code(&out), 125);
    assert_eq!(ps_all(&cluster, &[])?.len(), before, "nothing half-done");

    // Ctrl-C reaches the task (sig-proxy); berth exits with its code.
    let berth_bin = berth_testhost::bin_path("berth")
        .to_string_lossy()
        .to_string();
    let tls = cluster.c.admin_dir().to_string_lossy().to_string();
    let script = format!(
        "{berth_bin} --controller {} --tls-dir {tls} run --name sig {image} sh -c \
         'trap \"exit 42\" INT; echo ready; while :; do sleep 0.1; done' > sig.out & p=$!; \
         until grep -q ready sig.out; do sleep 0.1; done; kill -INT $p; wait $p",
        cluster.c.address(0)
    );
    let host = cluster.c.net.host(cluster.c.client_host());
    let out = host.run_unchecked("sh", &["-c", &script])?;
    assert_eq!(code(&out), 42, "stderr: {}", text(&out.stderr));

    // -v and --mount as service create takes them: a named volume outlives
    // the one-off that wrote it, and a tmpfs is there.
    let out = berth(
        &cluster,
        &[
            "run",
            "--rm",
            "-v",
            "scratch:/data",
            &image,
            "sh",
            "-c",
            "echo kept > /data/f",
        ],
    )?;
    assert_eq!(code(&out), 0, "stderr: {}", text(&out.stderr));
    let out = berth(
        &cluster,
        &[
            "run",
            "--rm",
            "-v",
            "scratch:/data",
            "--mount",
            "type=tmpfs,target=/scratch",
            &image,
            "sh",
            "-c",
            "cat /data/f && grep -q ' /scratch tmpfs ' /proc/mounts && echo tmpfs",
        ],
    )?;
    assert_eq!(code(&out), 0, "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "kept\ntmpfs\n");

    // A bind source the node does not have: 125, naming it.
    let out = berth(
        &cluster,
        &["run", "-v", "/nonexistent/berth-run:/x", &image, "true"],
    )?;
    assert_eq!(code(&out), 125, "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("bind source /nonexistent/berth-run does not exist"),
        "{}",
        text(&out.stderr)
    );

    // logs --tail N: the last N lines; logs -f: follows until the task ends.
    let out = berth(
        &cluster,
        &[
            "run",
            "--name",
            "counter",
            &image,
            "sh",
            "-c",
            "echo a; echo b; echo c",
        ],
    )?;
    assert_eq!(code(&out), 0, "stderr: {}", text(&out.stderr));
    let out = berth(&cluster, &["logs", "--tail", "1", "counter"])?;
    assert_eq!(text(&out.stdout), "c\n", "stderr: {}", text(&out.stderr));
    cluster.berth(&[
        "run",
        "-d",
        "--name",
        "slow",
        &image,
        "sh",
        "-c",
        "echo x; sleep 2; echo y",
    ])?;
    let out = berth(&cluster, &["logs", "-f", "slow"])?;
    assert_eq!(code(&out), 0, "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "x\ny\n");
    Ok(())
}

#[test]
fn verbs_on_one_off_tasks_and_ps_across_three_nodes() -> Result<()> {
    let cluster = Cluster::start("run_verbs", 1, 3, 0)?;
    let image = cluster.image.clone();
    cluster.create_service("web", &["--replicas", "3"], &["sleep", "3600"])?;

    // -d: the id at once; the task has not ended when run returns.
    let bg = cluster
        .berth(&[
            "run", "-d", "--name", "bg", "-l", "team=a", &image, "sleep", "300",
        ])?
        .trim()
        .to_string();
    let rows = ps_all(&cluster, &["--filter", &format!("id={bg}")])?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_ne!(rows[0]["state"], "exited", "{:?}", rows[0]);
    // As `docker run -d`: back once the task runs, so exec works at once.
    assert_eq!(rows[0]["state"], "running", "{:?}", rows[0]);
    assert_eq!(
        cluster.berth(&["exec", "bg", "echo", "at-once"])?.trim(),
        "at-once"
    );
    // A command that is not found fails `run -d` itself, with Docker's 127.
    let missing = berth(&cluster, &["run", "-d", &image, "no-such-command"])?;
    assert_eq!(code(&missing), 127, "stderr: {}", text(&missing.stderr));
    let talker = cluster
        .berth(&[
            "run",
            "-d",
            "--name",
            "talker",
            "--node",
            "n2",
            &image,
            "sh",
            "-c",
            "echo one; echo two >&2; sleep 300",
        ])?
        .trim()
        .to_string();
    // An unnamed one gets a Docker-like name.
    let anon = cluster
        .berth(&["run", "-d", &image, "sleep", "300"])?
        .trim()
        .to_string();
    cluster.wait_running("web", 3, CONVERGE)?;
    wait_until("the one-offs to run", CONVERGE, || {
        let out = cluster.berth(&["ps", "-q", "--no-trunc"]).ok()?;
        [&bg, &talker, &anon]
            .iter()
            .all(|id| out.lines().any(|l| l == id.as_str()))
            .then_some(())
    })?;

    // ps: running tasks of every service and the one-offs, Docker's columns.
    let table = cluster.berth(&["ps"])?;
    let header = table.lines().next().unwrap_or_default();
    for column in [
        "TASK ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NODE", "NAMES",
    ] {
        assert!(header.contains(column), "{header}");
    }
    assert_eq!(
        table.lines().filter(|l| l.contains(" web.")).count(),
        3,
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.ends_with(" bg") && l.contains("Up ")),
        "{table}"
    );
    let rows = ps_all(&cluster, &["--filter", "status=running"])?;
    assert_eq!(rows.len(), 6, "{rows:?}");
    let nodes: std::collections::BTreeSet<&str> =
        rows.iter().filter_map(|r| r["node"].as_str()).collect();
    assert_eq!(nodes.len(), 3, "web spread over 3 nodes: {nodes:?}");
    assert_eq!(
        named(&rows, "talker").map(|r| r["node"].clone()),
        Some("n2".into())
    );
    let anon_name = rows
        .iter()
        .find(|r| r["task"]["id"] == anon.as_str())
        .and_then(|r| r["name"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        anon_name
            .split_once('_')
            .is_some_and(|(a, s)| !a.is_empty() && !s.is_empty()),
        "adjective_surname: {anon_name:?}"
    );
    assert_eq!(ps_all(&cluster, &["--filter", "label=team=a"])?.len(), 1);
    assert_eq!(ps_all(&cluster, &["--filter", "service=web"])?.len(), 3);
    assert_eq!(ps_all(&cluster, &["--filter", "name=web.2"])?.len(), 1);
    assert_eq!(
        ps_all(
            &cluster,
            &["--filter", "node=n2", "--filter", "name=talker"]
        )?
        .len(),
        1
    );
    let web_on_n1 = ps_all(
        &cluster,
        &["--filter", "node=n1", "--filter", "service=web"],
    )?;
    assert!(web_on_n1.iter().all(|r| r["node"] == "n1"), "{web_on_n1:?}");
    assert!(bad_filter_fails(&cluster));
    // `service ls` lists real services only.
    let services = cluster.berth(&["service", "ls"])?;
    assert!(
        services.contains("web") && !services.contains("talker"),
        "{services}"
    );

    // logs: stdout and stderr apart, by name.
    wait_until("talker's output", CONVERGE, || {
        let out = berth(&cluster, &["logs", "talker"]).ok()?;
        (text(&out.stdout) == "one\n" && text(&out.stderr) == "two\n").then_some(())
    })?;
    let out = berth(&cluster, &["logs", "-t", "talker"])?;
    assert!(text(&out.stdout).contains("Z one"), "{}", text(&out.stdout));

    // stop: the stop signal (sh ends on it: 143), SIGKILL after -t if not
    // (137); a one-off is not started again.
    let out = cluster.berth(&["stop", "-t", "1", "talker"])?;
    assert!(out.contains("not started again"), "{out}");
    wait_until("talker to have exited", CONVERGE, || {
        let rows = ps_all(&cluster, &[]).ok()?;
        let row = named(&rows, "talker")?;
        (row["state"] == "exited").then(|| row["status"].as_str().unwrap_or_default().to_string())
    })
    .and_then(|status| {
        if status.starts_with("Exited (143)") || status.starts_with("Exited (137)") {
            Ok(())
        } else {
            bail!("talker: {status}")
        }
    })?;
    let out = cluster.berth(&["stop", "talker"])?;
    assert!(
        out.contains("already ended"),
        "a stop of an ended task: {out}"
    );
    // kill: SIGKILL through its agent by default; -s another signal.
    let out = berth(&cluster, &["kill", "-s", "NOPE", "bg"])?;
    assert_ne!(code(&out), 0);
    assert!(text(&out.stderr).contains("NOPE"), "{}", text(&out.stderr));
    cluster.berth(&["kill", "bg"])?;
    wait_until("bg to be killed", CONVERGE, || {
        let rows = ps_all(&cluster, &[]).ok()?;
        let row = named(&rows, "bg")?;
        (row["state"] == "exited" && row["task"]["status"]["exit_code"] == 137).then_some(())
    })?;

    // rm: an ended one-off goes; a running one only with -f; a service's
    // task never (the service is named, with what to do instead).
    cluster.berth(&["rm", "talker", "bg"])?;
    let rows = ps_all(&cluster, &[])?;
    assert!(named(&rows, "talker").is_none() && named(&rows, "bg").is_none());
    let out = berth(&cluster, &["rm", &anon])?;
    assert_ne!(code(&out), 0);
    assert!(
        text(&out.stderr).contains("is running"),
        "{}",
        text(&out.stderr)
    );
    let out = berth(&cluster, &["rm", "web.1"])?;
    assert_ne!(code(&out), 0);
    let why = text(&out.stderr);
    assert!(
        why.contains("service web") && why.contains("service scale web="),
        "{why}"
    );
    cluster.berth(&["rm", "-f", &anon])?;
    wait_until("the forced one-off to be gone", CONVERGE, || {
        let rows = ps_all(&cluster, &[]).ok()?;
        rows.iter()
            .all(|r| r["task"]["id"] != anon.as_str())
            .then_some(())
    })?;

    // stop on a service's task: its restart policy replaces it, as Swarm.
    let out = cluster.berth(&["stop", "-t", "1", "web.2"])?;
    assert!(out.contains("replaces it in slot 2"), "{out}");
    wait_until("web.2 replaced", CONVERGE, || {
        let rows = cluster.ps("web").ok()?;
        let slot2: Vec<_> = rows.iter().filter(|t| t.slot == 2).collect();
        (slot2.len() >= 2 && slot2.iter().any(|t| t.state == "running")).then_some(())
    })?;
    Ok(())
}

fn bad_filter_fails(cluster: &Cluster) -> bool {
    cluster.berth(&["ps", "--filter", "colour=red"]).is_err()
}
