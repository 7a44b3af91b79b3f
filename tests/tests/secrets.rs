//! Secrets and configs in containers, across real controllers and agents:
//! a secret reaches its task on a tmpfs and nowhere else, a changed config
//! rolls its service, bad input changes nothing, and an autolocked controller
//! waits for its unlock key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_testhost::cluster::{Cluster, TaskRow};
use berth_testhost::controllers::Controllers;
use berth_testhost::leaks::{files_holding, processes_holding};
use berth_testhost::{bin_path, wait_until};

const CONVERGE: Duration = Duration::from_secs(60);

/// The running task of `service` (the only one) and its agent's index.
fn running_task(cluster: &Cluster, service: &str) -> Result<(TaskRow, usize)> {
    let row = cluster
        .ps(service)?
        .into_iter()
        .find(|t| t.state == "running" && t.desired_state == "running")
        .with_context(|| format!("no running task of {service}"))?;
    let agent = (0..cluster.agent_hosts.len())
        .find(|&i| Cluster::agent_name(i) == row.node)
        .with_context(|| format!("task {} runs on unknown node {}", row.id, row.node))?;
    Ok((row, agent))
}

/// Runs `command` in the task's container; its stdout, or why it failed.
fn exec(cluster: &Cluster, task: &TaskRow, agent: usize, command: &[&str]) -> Result<String> {
    let out = cluster.exec(agent, &task.id, command)?;
    if !out.status.success() {
        bail!(
            "{command:?} in task {} failed: {}",
            task.id,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Whether `path` is a mount point in the mount namespace of process `pid`
/// (a test host has its own).
fn mounted(pid: u32, path: &Path) -> bool {
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let path = path.to_string_lossy();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path.as_ref()))
}

/// `path` of the host whose holder process is `pid`, seen from here (a test
/// host has its own mount namespace).
fn in_host(pid: u32, path: &Path) -> PathBuf {
    Path::new(&format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap_or(path))
}

#[test]
fn a_secret_reaches_its_task_on_a_tmpfs_and_appears_nowhere_else() -> Result<()> {
    // Three controllers: the leader may be one that joined, whose key came
    // with its JoinResponse.
    let mut cluster = Cluster::start("sec_flow", 3, 2, 0)?;
    let value = format!("berth-test-secret-{:016x}", rand::random::<u64>());
    let outside = tempfile::tempdir()?;
    let file = outside.path().join("value");
    std::fs::write(&file, &value)?;
    cluster.berth(&["secret", "create", "dbpass", &file.to_string_lossy()])?;
    std::fs::remove_file(&file)?;

    cluster.berth(&[
        "service",
        "create",
        "--detach",
        "app",
        "--image",
        &cluster.image,
        "--secret",
        "dbpass",
        "--secret",
        "source=dbpass,target=copy,uid=1000,mode=0400",
        "--",
        "sleep",
        "3600",
    ])?;
    cluster.wait_running("app", 1, CONVERGE)?;
    let (task, agent) = running_task(&cluster, "app")?;

    // The task reads it at /run/secrets/NAME, and at its own target with its
    // owner and mode, on a read-only tmpfs without devices, setuid or exec.
    assert_eq!(
        exec(&cluster, &task, agent, &["cat", "/run/secrets/dbpass"])?,
        value
    );
    let copy = exec(
        &cluster,
        &task,
        agent,
        &["stat", "-c", "%a %u", "/run/secrets/copy"],
    )?;
    assert_eq!(copy.trim(), "400 1000");
    let mounts = exec(&cluster, &task, agent, &["cat", "/proc/mounts"])?;
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/run/secrets"))
        .with_context(|| format!("no mount at /run/secrets:\n{mounts}"))?;
    assert!(line.starts_with("tmpfs "), "{line}");
    for option in ["ro", "nosuid", "nodev", "noexec"] {
        let options: Vec<&str> = line.split(' ').nth(3).unwrap_or("").split(',').collect();
        assert!(options.contains(&option), "{option} missing: {line}");
    }
    let host = cluster.c.net.host(cluster.agent_hosts[agent]).holder_pid();
    let host_dir = Path::new("/run/berth/secrets").join(&task.id);
    assert!(
        mounted(host, &host_dir),
        "{} is no mount",
        host_dir.display()
    );
    let seen = in_host(host, &host_dir);

    // The value is nowhere else: not in any file of the test's hosts (every
    // controller's and agent's data dir, every process log), not in inspect,
    // not in any berth process's environment or arguments.
    let mut on_tmpfs = Vec::new();
    files_holding(&seen, value.as_bytes(), &mut on_tmpfs);
    assert_eq!(
        on_tmpfs.len(),
        2,
        "the search finds the task's own files: {on_tmpfs:?}"
    );
    let mut found = Vec::new();
    files_holding(cluster.c.net.workdir(), value.as_bytes(), &mut found);
    assert!(found.is_empty(), "the secret is in {found:?}");
    for args in [
        &["secret", "inspect", "dbpass"][..],
        &["secret", "ls", "--format", "json"],
        &["service", "inspect", "app"],
    ] {
        let out = cluster.berth(args)?;
        assert!(!out.contains(&value), "{args:?} shows the value: {out}");
    }
    assert!(
        cluster
            .berth(&["secret", "inspect", "dbpass"])?
            .contains("\"dbpass\"")
    );
    let (checked, found) = processes_holding(value.as_bytes());
    assert!(checked >= 5, "only {checked} berth processes seen");
    assert!(found.is_empty(), "the secret is in {found:?}");

    // Refused while a service uses it, naming the service.
    let err = cluster
        .berth(&["secret", "rm", "dbpass"])
        .expect_err("in use");
    assert!(
        format!("{err:#}").contains("in use by service app"),
        "{err:#}"
    );

    // The controller that made the key goes; one that joined leads, and its
    // copy of the key opens the secret for a new task on the other node.
    cluster.c.kill(0)?;
    cluster.c.wait_leader_among(&[1, 2], CONVERGE)?;
    cluster.berth(&["service", "scale", "--detach", "app=2"])?;
    cluster.wait_running("app", 2, CONVERGE)?;
    let mut tmpfs = vec![(host, host_dir.clone())];
    for row in cluster.ps("app")? {
        if row.state != "running" || row.id == task.id {
            continue;
        }
        let other = (0..cluster.agent_hosts.len())
            .find(|&i| Cluster::agent_name(i) == row.node)
            .context("the new task's node")?;
        assert_ne!(other, agent, "the second replica runs on the other node");
        assert_eq!(
            exec(&cluster, &row, other, &["cat", "/run/secrets/dbpass"])?,
            value
        );
        let pid = cluster.c.net.host(cluster.agent_hosts[other]).holder_pid();
        tmpfs.push((pid, Path::new("/run/berth/secrets").join(&row.id)));
    }
    assert_eq!(tmpfs.len(), 2, "{tmpfs:?}");

    // When the tasks end their tmpfs are gone; then the secret can go.
    cluster.berth(&["service", "rm", "app"])?;
    wait_until("the secrets tmpfs to go", CONVERGE, || {
        tmpfs
            .iter()
            .all(|(pid, dir)| !mounted(*pid, dir) && !in_host(*pid, dir).exists())
            .then_some(())
    })?;
    cluster.berth(&["secret", "rm", "dbpass"])?;
    let left = cluster.berth(&["secret", "ls", "--format", "json"])?;
    assert!(!left.contains("dbpass"), "{left}");
    Ok(())
}

#[test]
fn a_changed_config_rolls_the_service() -> Result<()> {
    let cluster = Cluster::start("sec_config", 1, 1, 0)?;
    cluster.berth(&["config", "create", "appconf", "--data", "v1"])?;
    cluster.berth(&[
        "service",
        "create",
        "--detach",
        "web",
        "--image",
        &cluster.image,
        "--replicas",
        "2",
        "--config",
        "source=appconf,target=/etc/app.conf,mode=0440",
        "--",
        "sleep",
        "3600",
    ])?;
    cluster.wait_running("web", 2, CONVERGE)?;
    let (task, agent) = running_task(&cluster, "web")?;
    assert_eq!(
        exec(&cluster, &task, agent, &["cat", "/etc/app.conf"])?,
        "v1"
    );
    let mode = exec(
        &cluster,
        &task,
        agent,
        &["stat", "-c", "%a", "/etc/app.conf"],
    )?;
    assert_eq!(mode.trim(), "440");
    let write = cluster.exec(agent, &task.id, &["sh", "-c", "echo x > /etc/app.conf"])?;
    assert!(!write.status.success(), "the config file is writable");
    let before: Vec<String> = cluster
        .ps("web")?
        .into_iter()
        .filter(|t| t.state == "running")
        .map(|t| t.id)
        .collect();

    cluster.berth(&["config", "update", "appconf", "--data", "v2"])?;
    let fresh = wait_until("2 new running tasks", CONVERGE, || {
        let rows = cluster.ps("web").ok()?;
        let running: Vec<TaskRow> = rows
            .into_iter()
            .filter(|t| t.state == "running" && t.desired_state == "running")
            .collect();
        (running.len() == 2 && running.iter().all(|t| !before.contains(&t.id))).then_some(running)
    })?;
    assert_eq!(
        exec(&cluster, &fresh[0], agent, &["cat", "/etc/app.conf"])?,
        "v2"
    );

    let err = cluster
        .berth(&["config", "rm", "appconf"])
        .expect_err("in use");
    assert!(
        format!("{err:#}").contains("in use by service web"),
        "{err:#}"
    );
    Ok(())
}

#[test]
fn bad_secret_and_config_input_is_refused_and_nothing_is_created() -> Result<()> {
    let cluster = Cluster::start("sec_bad", 1, 0, 0)?;
    cluster.berth(&["config", "create", "cfg", "--data", "x"])?;
    let outside = tempfile::tempdir()?;
    let small = outside.path().join("small");
    std::fs::write(&small, "s3cret")?;
    cluster.berth(&["secret", "create", "pw", &small.to_string_lossy()])?;

    let service = |extra: &[&str]| {
        let mut args = vec![
            "service",
            "create",
            "--detach",
            "bad",
            "--image",
            &cluster.image,
        ];
        args.extend_from_slice(extra);
        cluster.berth(&args).expect_err("refused")
    };
    for (extra, says) in [
        (&["--secret", "nope"][..], "secret \"nope\" does not exist"),
        (&["--config", "nope"], "config \"nope\" does not exist"),
        (
            &["--secret", "source=pw,mode=0999"],
            "not an octal file mode",
        ),
        (&["--secret", "source=pw,target=a/b"], "must be a file name"),
        (
            &["--config", "source=cfg,target=etc/x"],
            "must be an absolute file path",
        ),
        (
            &["--secret", "pw", "--secret", "source=pw,target=pw"],
            "two secrets have the target /run/secrets/pw",
        ),
    ] {
        let err = format!("{:#}", service(extra));
        assert!(err.contains(says), "{extra:?}: {err}");
    }
    let services = cluster.berth(&["service", "ls", "--format", "json"])?;
    assert!(!services.contains("\"bad\""), "{services}");

    let large = outside.path().join("large");
    std::fs::write(&large, vec![b'x'; 600 * 1024])?;
    let err = cluster
        .berth(&["secret", "create", "big", &large.to_string_lossy()])
        .expect_err("too large");
    assert!(
        format!("{err:#}").contains("more than the limit"),
        "{err:#}"
    );
    let err = cluster
        .berth(&["secret", "create", "Bad Name", &small.to_string_lossy()])
        .expect_err("bad name");
    assert!(
        format!("{err:#}").contains("invalid secret name"),
        "{err:#}"
    );
    let err = cluster
        .berth(&["secret", "create", "pw", &small.to_string_lossy()])
        .expect_err("taken");
    assert!(format!("{err:#}").contains("pw"), "{err:#}");
    let secrets = cluster.berth(&["secret", "ls", "--format", "json"])?;
    assert!(
        !secrets.contains("big") && !secrets.contains("Bad"),
        "{secrets}"
    );
    Ok(())
}

/// The `berth` CLI on the client host against the controller on host 0.
fn berth_cli(c: &Controllers, args: &[&str]) -> Result<String> {
    let addr = c.address(0);
    let tls_dir = c.admin_dir().to_string_lossy().to_string();
    let mut full = vec!["--controller", &addr, "--tls-dir", &tls_dir];
    full.extend_from_slice(args);
    let out = c
        .net
        .host(c.client_host())
        .run_unchecked(&bin_path("berth").to_string_lossy(), &full)?;
    if !out.status.success() {
        bail!(
            "berth {} ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn an_autolocked_controller_waits_for_its_unlock_key() -> Result<()> {
    let mut c = Controllers::start_with("sec_lock", 1, 0, &["--autolock"])?;
    let log = c.proc(0)?.log();
    let unlock = log
        .split_whitespace()
        .find(|w| w.starts_with("BERTH-UNLOCK-"))
        .with_context(|| format!("init printed no unlock key:\n{log}"))?
        .to_string();
    let outside = tempfile::tempdir()?;
    let value = outside.path().join("value");
    std::fs::write(&value, "locked-away")?;
    berth_cli(&c, &["secret", "create", "pw", &value.to_string_lossy()])?;
    let key_file = c.net.host(0).dir().join("controller/keys/secrets.key");
    assert!(
        std::fs::read(&key_file)?.starts_with(b"BKW1"),
        "the key file is not wrapped"
    );

    // Restarted, it serves nothing until it is unlocked.
    c.restart(0)?;
    let right = outside.path().join("right");
    std::fs::write(&right, format!("{unlock}\n"))?;
    let wrong = outside.path().join("wrong");
    std::fs::write(&wrong, format!("BERTH-UNLOCK-{}", "ab".repeat(32)))?;
    wait_until("the locked controller to answer", CONVERGE, || {
        let err = berth_cli(
            &c,
            &["cluster", "unlock", "--key-file", &wrong.to_string_lossy()],
        )
        .err()?;
        format!("{err:#}")
            .contains("wrong unlock key")
            .then_some(())
    })?;
    assert!(
        berth_cli(&c, &["secret", "ls"]).is_err(),
        "a locked controller serves the API"
    );
    berth_cli(
        &c,
        &["cluster", "unlock", "--key-file", &right.to_string_lossy()],
    )?;
    wait_until("the unlocked controller to serve", CONVERGE, || {
        berth_cli(&c, &["secret", "ls"])
            .ok()?
            .contains("pw")
            .then_some(())
    })?;
    let again = berth_cli(
        &c,
        &["cluster", "unlock", "--key-file", &right.to_string_lossy()],
    )
    .expect_err("not locked");
    assert!(format!("{again:#}").contains("not locked"), "{again:#}");
    Ok(())
}
