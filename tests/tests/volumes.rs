//! Mounts and named local volumes end to end, with real controllers, agents
//! and containers: a volume keeps its data across a task restart and a
//! service update, and keeps its service on its node through drains (a task
//! whose volume's node is drained waits, with the reason, instead of moving to
//! an empty volume); `volume rm` is refused while the volume is used; a bind
//! mount is read-only when asked; a tmpfs honours its size; bad mounts are
//! refused with the spec unchanged; a missing bind source shows in `service ps`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_testhost::cluster::Cluster;
use berth_testhost::{bin_path, wait_until};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(60);

/// Appends one line per start of the container to /data/starts.
const COUNT_STARTS: &[&str] = &["sh", "-c", "echo start >> /data/starts; exec sleep 3600"];

fn json(text: &str) -> Result<Value> {
    serde_json::from_str(text).with_context(|| format!("not JSON: {text}"))
}

/// The volume as `volume ls --format json` shows it.
fn listed(cluster: &Cluster, name: &str) -> Result<Value> {
    let all = json(&cluster.berth(&["volume", "ls", "--format", "json"])?)?;
    all.as_array()
        .and_then(|a| a.iter().find(|v| v["name"] == name).cloned())
        .with_context(|| format!("volume {name} is not listed: {all}"))
}

/// The running task of `service` (id, node name).
fn running_task(cluster: &Cluster, service: &str) -> Option<(String, String)> {
    let rows = cluster.ps(service).ok()?;
    rows.into_iter()
        .find(|t| t.state == "running" && t.desired_state == "running")
        .map(|t| (t.id, t.node))
}

/// Agent index of node `name` ("n2" → 1).
fn agent_index(name: &str) -> Result<usize> {
    let n: usize = name.trim_start_matches('n').parse()?;
    Ok(n - 1)
}

fn starts(path: &PathBuf) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Kills the container of `task` on agent `i` from the host (SIGKILL to its
/// init), as a crash would.
fn kill_container(cluster: &Cluster, i: usize, task: &str) -> Result<()> {
    let runtime = bin_path("berth-runtime");
    let host = cluster.c.net.host(cluster.agent_hosts[i]);
    let out = host.run_unchecked(
        &runtime.to_string_lossy(),
        &["--root", "/run/berth/runtime", "state", task],
    )?;
    let state = json(&String::from_utf8_lossy(&out.stdout))?;
    let pid = state["pid"]
        .as_i64()
        .with_context(|| format!("no pid in the state of {task}: {state}"))?;
    let pid = i32::try_from(pid)?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    Ok(())
}

/// Waits until db's replacement task is pending because volume `data`'s
/// node is `why` (drained, down), placed nowhere else.
fn wait_for_node(cluster: &Cluster, node: &str, why: &str) -> Result<()> {
    let waiting = wait_until("db waits for its node", CONVERGE, || {
        let rows = cluster.ps("db").ok()?;
        rows.into_iter()
            .find(|t| t.state == "pending" && t.desired_state == "running")
    })?;
    assert_eq!(
        waiting.message,
        format!(
            "volume data is on node {node}, which is {why}: the task waits for that node \
             (it does not move to an empty volume elsewhere)"
        )
    );
    assert!(waiting.node.is_empty(), "{waiting:?}");
    Ok(())
}

#[test]
fn a_named_volume_keeps_its_data_and_its_service_on_its_node() -> Result<()> {
    let cluster = Cluster::start("volumes_data", 1, 2, 0)?;

    // `volume create --node` makes the data directory on that node at once.
    cluster.berth(&["volume", "create", "--node", "n2", "--label", "k=v", "made"])?;
    let made = cluster.agent_dir(1).join("volumes/made/_data");
    assert!(made.is_dir(), "{} was not made", made.display());
    let inspect = json(&cluster.berth(&["volume", "inspect", "made"])?)?;
    assert_eq!(
        inspect[0]["mountpoint"],
        made.to_string_lossy().as_ref(),
        "{inspect}"
    );
    assert_eq!(inspect[0]["node"], "n2");
    assert_eq!(inspect[0]["labels"]["k"], "v");

    // First use: the volume is made on the node the task is placed on.
    cluster.create_service(
        "db",
        &[
            "--mount",
            "type=volume,source=data,target=/data",
            "--restart-delay",
            "0.2",
        ],
        COUNT_STARTS,
    )?;
    cluster.wait_running("db", 1, CONVERGE)?;
    let (task, node) = running_task(&cluster, "db").context("db runs")?;
    let i = agent_index(&node)?;
    let other = if node == "n1" { "n2" } else { "n1" };
    let file = cluster.agent_dir(i).join("volumes/data/_data/starts");
    wait_until("the first start is written", CONVERGE, || {
        (starts(&file) == 1).then_some(())
    })?;
    let volume = listed(&cluster, "data")?;
    assert_eq!(volume["node"], node.as_str(), "{volume}");
    assert_eq!(volume["created_at_first_use"], true, "{volume}");
    assert_eq!(volume["services"], serde_json::json!(["db"]), "{volume}");
    assert_eq!(volume["tasks"][0]["name"], "db.1", "{volume}");
    let table = cluster.berth(&["volume", "ls"])?;
    assert!(table.contains("db.1 (running)"), "{table}");

    // A crash: the restart policy's new task finds the data (same node).
    kill_container(&cluster, i, &task)?;
    wait_until("db restarted", CONVERGE, || {
        let (now, on) = running_task(&cluster, "db")?;
        (now != task && starts(&file) == 2).then_some(on)
    })
    .map(|on| assert_eq!(on, node))?;

    // An update replaces the task; the volume stays.
    cluster.berth(&["service", "update", "db", "--env-add", "V=2", "--detach"])?;
    wait_until("db updated", CONVERGE, || {
        let rows = cluster.ps("db").ok()?;
        rows.iter()
            .any(|t| t.spec_version == 2 && t.state == "running" && t.node == node)
            .then_some(())
    })?;
    wait_until("the third start is written", CONVERGE, || {
        (starts(&file) == 3).then_some(())
    })?;

    // Draining the other node changes nothing for db.
    cluster.berth(&["node", "update", "--availability", "drain", other])?;
    std::thread::sleep(Duration::from_secs(2));
    let (_, on) = running_task(&cluster, "db").context("db still runs")?;
    assert_eq!(on, node);
    cluster.berth(&["node", "update", "--availability", "active", other])?;

    // Draining db's own node: the task stops and its replacement waits,
    // saying why, instead of starting on an empty volume on the other node.
    cluster.berth(&["node", "update", "--availability", "drain", &node])?;
    wait_for_node(&cluster, &node, "drained")?;
    assert!(running_task(&cluster, "db").is_none());
    cluster.berth(&["node", "update", "--availability", "active", &node])?;
    cluster.wait_running("db", 1, CONVERGE)?;
    let (_, on) = running_task(&cluster, "db").context("db runs again")?;
    assert_eq!(on, node);
    wait_until("the fourth start is written", CONVERGE, || {
        (starts(&file) == 4).then_some(())
    })?;
    let other_dir = cluster.agent_dir(agent_index(other)?).join("volumes/data");
    assert!(!other_dir.exists(), "a volume was made on {other}");

    // rm is refused while used, naming the users; works once unused.
    let err = cluster
        .berth(&["volume", "rm", "data"])
        .expect_err("data is in use")
        .to_string();
    assert!(err.contains("volume data is in use by service db"), "{err}");
    assert!(file.exists());
    cluster.berth(&["service", "rm", "db"])?;
    wait_until("data removed once unused", CONVERGE, || {
        cluster.berth(&["volume", "rm", "data"]).ok()
    })?;
    assert!(!cluster.agent_dir(i).join("volumes/data").exists());
    let names = cluster.berth(&["volume", "ls", "-q"])?;
    assert_eq!(names.trim(), "made");
    cluster.berth(&["volume", "rm", "made"])?;
    assert!(!made.exists());
    // --force, as Docker's: a missing volume is no error.
    let err = cluster.berth(&["volume", "rm", "made"]).expect_err("gone");
    assert!(err.to_string().contains("not found"), "{err}");
    cluster.berth(&["volume", "rm", "--force", "made"])?;
    Ok(())
}

/// `cluster.exec` that must succeed; its stdout.
fn exec_ok(cluster: &Cluster, task: &str, command: &[&str]) -> Result<String> {
    let out = cluster.exec(0, task, command)?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn mounts_are_checked_at_create_and_honoured_in_the_container() -> Result<()> {
    let cluster = Cluster::start("volumes_mounts", 1, 1, 0)?;
    let host_dir = cluster.c.net.workdir().join("bind");
    std::fs::create_dir_all(&host_dir)?;
    std::fs::write(host_dir.join("f"), "from the host\n")?;
    let host = host_dir.to_string_lossy().to_string();
    let ro = format!("{host}:/ro:ro");
    let rw = format!("type=bind,source={host},target=/rw");
    cluster.create_service(
        "files",
        &[
            "-v",
            &ro,
            "--mount",
            &rw,
            "--mount",
            "type=tmpfs,target=/scratch,tmpfs-size=1m,tmpfs-mode=700",
        ],
        &["sleep", "3600"],
    )?;
    cluster.wait_running("files", 1, CONVERGE)?;
    let (task, _) = running_task(&cluster, "files").context("files runs")?;

    // Read-only bind: readable, a write fails inside.
    assert_eq!(
        exec_ok(&cluster, &task, &["cat", "/ro/f"])?,
        "from the host\n"
    );
    let write = cluster.exec(0, &task, &["sh", "-c", "echo x > /ro/new"])?;
    assert!(
        !write.status.success(),
        "a write to a read-only bind worked"
    );
    assert!(
        String::from_utf8_lossy(&write.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&write.stderr)
    );
    assert!(!host_dir.join("new").exists());
    // The same directory bound read-write takes it.
    exec_ok(&cluster, &task, &["sh", "-c", "echo x > /rw/new"])?;
    assert!(host_dir.join("new").exists());

    // tmpfs: 1 MiB (1024 1K-blocks), mode 700; 2 MiB do not fit.
    let df = exec_ok(&cluster, &task, &["df", "-k", "/scratch"])?;
    let blocks = df
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .context("df output")?;
    assert_eq!(blocks, "1024", "{df}");
    let mode = exec_ok(&cluster, &task, &["stat", "-c", "%a", "/scratch"])?;
    assert_eq!(mode.trim(), "700");
    let fill = cluster.exec(
        0,
        &task,
        &[
            "dd",
            "if=/dev/zero",
            "of=/scratch/big",
            "bs=1024",
            "count=2048",
        ],
    )?;
    assert!(!fill.status.success(), "2 MiB fit in a 1 MiB tmpfs");
    assert!(
        String::from_utf8_lossy(&fill.stderr).contains("No space left on device"),
        "{}",
        String::from_utf8_lossy(&fill.stderr)
    );

    // Bad mounts are refused, naming the mount, and nothing is made.
    for (flags, says) in [
        (
            vec!["--mount", "type=volume,source=a..b,target=/d"],
            "volume name \"a..b\" must not contain '..'",
        ),
        (
            vec!["--mount", "type=volume,source=ok,target=d"],
            "mount type=volume,source=ok,target=d: the target must be an absolute path",
        ),
        (
            vec!["--mount", "type=tmpfs,target=/x/../etc"],
            "the target must not contain '..'",
        ),
        (
            vec!["--mount", "type=tmpfs,target=/t,tmpfs-size=lots"],
            "tmpfs-size \"lots\" is not a size",
        ),
        (
            vec!["--mount", "type=tmpfs,target=/t,tmpfs-mode=17777"],
            "tmpfs mode 17777 is not a permission mode",
        ),
        (
            vec!["-v", "a:/d", "-v", "b:/d/"],
            "target /d is already mounted by type=volume,source=a,target=/d",
        ),
    ] {
        let err = cluster
            .create_service("bad", &flags, &["true"])
            .expect_err(says)
            .to_string();
        assert!(err.contains(says), "{flags:?}: {err}");
    }
    let services = cluster.berth(&["service", "ls", "--format", "json"])?;
    assert!(!services.contains("\"bad\""), "{services}");
    assert!(!cluster.berth(&["volume", "ls", "-q"])?.contains("ok"));
    // An update with a bad mount changes nothing.
    let before = json(&cluster.berth(&["service", "inspect", "files"])?)?;
    let err = cluster
        .berth(&[
            "service",
            "update",
            "files",
            "--mount-add",
            "type=volume,source=v,target=rel",
        ])
        .expect_err("a relative target")
        .to_string();
    assert!(err.contains("the target must be an absolute path"), "{err}");
    let after = json(&cluster.berth(&["service", "inspect", "files"])?)?;
    assert_eq!(before["spec_version"], after["spec_version"]);
    assert_eq!(before["spec"]["mounts"], after["spec"]["mounts"]);

    // --mount-add rolls a mount in, --mount-rm TARGET takes it out again.
    let has_added = |want: bool| {
        let (task, _) = running_task(&cluster, "files")?;
        let mounts = exec_ok(&cluster, &task, &["cat", "/proc/mounts"]).ok()?;
        (mounts.contains(" /added tmpfs ") == want).then_some(())
    };
    cluster.berth(&[
        "service",
        "update",
        "files",
        "--mount-add",
        "type=tmpfs,target=/added",
    ])?;
    wait_until("a task of files with /added", CONVERGE, || has_added(true))?;
    cluster.berth(&["service", "update", "files", "--mount-rm", "/added"])?;
    wait_until("a task of files without /added", CONVERGE, || {
        has_added(false)
    })?;

    // A bind source missing on the node: the task fails with a clear error
    // in `service ps`, before any container is made.
    cluster.create_service(
        "nobind",
        &[
            "--mount",
            "type=bind,source=/nonexistent/berth-volumes-test,target=/x",
        ],
        &["sleep", "3600"],
    )?;
    let failed = wait_until("nobind fails", CONVERGE, || {
        let rows = cluster.ps("nobind").ok()?;
        rows.into_iter().find(|t| t.state == "failed")
    })?;
    assert_eq!(
        failed.error,
        "bind source /nonexistent/berth-volumes-test does not exist on node n1"
    );
    let table = cluster.berth(&["service", "ps", "nobind"])?;
    assert!(
        table.contains("bind source /nonexistent/berth-volumes-test does not exist on node n1"),
        "{table}"
    );
    Ok(())
}

#[test]
fn a_task_whose_volume_node_is_down_waits_for_it() -> Result<()> {
    let mut cluster = Cluster::start("volumes_down", 1, 2, 0)?;
    cluster.create_service(
        "db",
        &["-v", "data:/data", "--restart-delay", "0.2"],
        COUNT_STARTS,
    )?;
    cluster.wait_running("db", 1, CONVERGE)?;
    let (task, node) = running_task(&cluster, "db").context("db runs")?;
    let i = agent_index(&node)?;
    let file = cluster.agent_dir(i).join("volumes/data/_data/starts");
    wait_until("the first start is written", CONVERGE, || {
        (starts(&file) == 1).then_some(())
    })?;

    // The node goes down (its agent dies; the container lives on): the task
    // is replaced, and the replacement waits for the node, saying so.
    cluster.agent(i)?.kill9()?;
    wait_for_node(&cluster, &node, "down")?;
    // A task on a node that is down may still run there: it still uses the
    // volume, so even --force leaves the volume alone.
    let err = cluster
        .berth(&["volume", "rm", "--force", "data"])
        .expect_err("data is in use")
        .to_string();
    assert!(err.contains(&format!("db.1 ({task}, running)")), "{err}");

    // Back up: the old container stops, the waiting task runs on the data.
    cluster.agent(i)?.restart()?;
    cluster.wait_running("db", 1, CONVERGE)?;
    let (now, on) = running_task(&cluster, "db").context("db runs again")?;
    assert_ne!(now, task);
    assert_eq!(on, node);
    wait_until("the second start is written", CONVERGE, || {
        (starts(&file) == 2).then_some(())
    })?;
    Ok(())
}
