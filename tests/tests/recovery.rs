//! Backup and restore, and quorum-loss recovery, on real controllers and
//! agents: the cluster comes back with every service and secret, writes work,
//! and no container restarts (the same processes run before and after).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_testhost::bin_path;
use berth_testhost::cluster::{Cluster, TaskRow};
use berth_testhost::wait_until;

const CONVERGE: Duration = Duration::from_secs(60);

/// The containers' commands are `sleep 36<tag><n>`: each test has its own
/// (the suites' tests run at once and count processes machine-wide).
fn sleep(tag: u32, n: u32) -> Vec<String> {
    vec!["sleep".to_string(), format!("36{tag}{n}")]
}

/// What `sleep(tag, _)` commands look like in a process list.
fn needle(tag: u32) -> String {
    format!("sleep 36{tag}")
}

fn create(cluster: &Cluster, name: &str, extra: &[&str], command: &[String]) -> Result<()> {
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    cluster.create_service(name, extra, &command)
}

/// Two services (one reads a secret, one a config), running on both agents;
/// returns the secret's value.
fn deploy(cluster: &Cluster, tag: u32) -> Result<String> {
    let value = format!("berth-recovery-{:016x}", rand::random::<u64>());
    let file = cluster.c.net.workdir().join("secret-value");
    std::fs::write(&file, &value)?;
    cluster.berth(&["secret", "create", "dbpass", &file.to_string_lossy()])?;
    std::fs::remove_file(&file)?;
    cluster.berth(&["config", "create", "appconf", "--data", "v1"])?;
    create(
        cluster,
        "app",
        &[
            "--replicas",
            "2",
            "--secret",
            "dbpass",
            "--config",
            "source=appconf,target=/etc/app.conf",
        ],
        &sleep(tag, 1),
    )?;
    create(cluster, "side", &["--replicas", "1"], &sleep(tag, 2))?;
    cluster.wait_running("app", 2, CONVERGE)?;
    cluster.wait_running("side", 1, CONVERGE)?;
    Ok(value)
}

/// The running tasks of `service`, by id.
fn running(cluster: &Cluster, service: &str) -> Result<Vec<TaskRow>> {
    let mut rows: Vec<TaskRow> = cluster
        .ps(service)?
        .into_iter()
        .filter(|t| t.state == "running" && t.desired_state == "running")
        .collect();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(rows)
}

/// The task ids of both services and the pids of their containers' commands.
fn workload(cluster: &Cluster, tag: u32) -> Result<(Vec<String>, Vec<u32>)> {
    let mut ids: Vec<String> = running(cluster, "app")?
        .into_iter()
        .chain(running(cluster, "side")?)
        .map(|t| t.id)
        .collect();
    ids.sort();
    let pids = Cluster::wait_processes(&needle(tag), 3)?;
    Ok((ids, pids))
}

/// Every service, config and secret is back, writes work, both agents are
/// connected (a new service runs on each), the tasks of before still run in
/// the same containers, and the secret opens in a task.
fn check_recovered(
    cluster: &Cluster,
    tag: u32,
    value: &str,
    before: &(Vec<String>, Vec<u32>),
) -> Result<()> {
    let services = cluster.berth(&["service", "ls", "--format", "json"])?;
    for name in ["app", "side"] {
        assert!(
            services.contains(&format!("\"{name}\"")),
            "{name} is gone: {services}"
        );
    }
    assert!(cluster.berth(&["secret", "ls"])?.contains("dbpass"));
    assert!(cluster.berth(&["config", "ls"])?.contains("appconf"));
    // Placed on both nodes: both agents are back with the recovered cluster.
    create(
        cluster,
        "after",
        &["--replicas", "2", "--replicas-max-per-node", "1"],
        &sleep(tag, 3),
    )?;
    cluster.wait_running("after", 2, CONVERGE)?;
    let mut now: Vec<String> = running(cluster, "app")?
        .into_iter()
        .chain(running(cluster, "side")?)
        .map(|t| t.id)
        .collect();
    now.sort();
    assert_eq!(now, before.0, "tasks were replaced");
    for pid in &before.1 {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&cmdline).contains("sleep"),
            "container process {pid} is gone: a container restarted"
        );
    }
    Cluster::wait_processes(&needle(tag), 5)?;
    let task = running(cluster, "app")?
        .into_iter()
        .next()
        .context("a running app task")?;
    let agent = (0..cluster.agent_hosts.len())
        .find(|&i| Cluster::agent_name(i) == task.node)
        .with_context(|| format!("task {} runs on unknown node {}", task.id, task.node))?;
    let out = cluster.exec(agent, &task.id, &["cat", "/run/secrets/dbpass"])?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), value);
    // A task placed now opens the secret with the recovered key.
    cluster.berth(&["service", "scale", "--detach", "app=3"])?;
    cluster.wait_running("app", 3, CONVERGE)?;
    let fresh = running(cluster, "app")?
        .into_iter()
        .find(|t| !before.0.contains(&t.id))
        .context("the new app task")?;
    let agent = (0..cluster.agent_hosts.len())
        .find(|&i| Cluster::agent_name(i) == fresh.node)
        .context("the new task's node")?;
    let out = cluster.exec(agent, &fresh.id, &["cat", "/run/secrets/dbpass"])?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), value);
    Ok(())
}

/// `berth cluster backup --format json FILE`: the summary it prints.
fn backup_summary(cluster: &Cluster, file: &Path) -> Result<serde_json::Value> {
    let json = cluster.berth(&[
        "cluster",
        "backup",
        "--format",
        "json",
        &file.to_string_lossy(),
    ])?;
    Ok(serde_json::from_str(&json)?)
}

/// `berth-controller --init --restore FILE --data-dir DIR` on this machine;
/// its stderr, expecting a refusal.
fn restore_refused(file: &Path, data_dir: &Path) -> Result<String> {
    let out = std::process::Command::new(bin_path("berth-controller"))
        .args(["--listen", "127.0.0.1:0", "--init", "--restore"])
        .arg(file)
        .arg("--data-dir")
        .arg(data_dir)
        .output()?;
    if out.status.success() {
        bail!(
            "a restore of {} into {} succeeded",
            file.display(),
            data_dir.display()
        );
    }
    Ok(String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn a_backup_restores_a_wiped_cluster_and_no_container_restarts() -> Result<()> {
    const TAG: u32 = 1;
    let mut cluster = Cluster::start("rec_restore", 1, 2, 0)?;
    let value = deploy(&cluster, TAG)?;
    let before = workload(&cluster, TAG)?;

    let backup = cluster.c.net.workdir().join("cluster.bak");
    let printed = cluster.berth(&["cluster", "backup", &backup.to_string_lossy()])?;
    assert!(
        printed.contains("services") && printed.contains("root CA"),
        "{printed}"
    );
    let mode = std::fs::metadata(&backup)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup holds keys");
    let summary = backup_summary(&cluster, &backup)?;
    assert_eq!(summary["counts"]["service"], 2, "{summary}");
    assert_eq!(summary["counts"]["secret"], 1, "{summary}");
    assert_eq!(summary["counts"]["node"], 2, "{summary}");
    assert_eq!(summary["counts"]["pki"], 1, "{summary}");
    assert_eq!(summary["secrets_key_locked"], false, "{summary}");
    // The secret's value is sealed in it, never in clear.
    let bytes = std::fs::read(&backup)?;
    assert!(!bytes.windows(value.len()).any(|w| w == value.as_bytes()));

    // Every controller gone, data and all.
    cluster.c.wipe(0)?;

    // A damaged copy is refused before anything is written.
    let scratch = tempfile::tempdir()?;
    let corrupt = scratch.path().join("corrupt.bak");
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    std::fs::write(&corrupt, &damaged)?;
    let target = scratch.path().join("data");
    let why = restore_refused(&corrupt, &target)?;
    assert!(why.contains("checksum"), "{why}");
    std::fs::write(&corrupt, &bytes[..bytes.len() - 10])?;
    let why = restore_refused(&corrupt, &target)?;
    assert!(why.contains("truncated"), "{why}");
    assert!(
        !target.exists() || std::fs::read_dir(&target)?.next().is_none(),
        "a refused restore wrote into its data dir"
    );

    // Restored on the same address: the agents find it by themselves and
    // re-register as the nodes they were (the CA is the backup's).
    let restore = vec![
        "--init".to_string(),
        "--restore".into(),
        backup.to_string_lossy().to_string(),
    ];
    cluster.c.spawn_with(0, &restore)?;
    cluster.c.wait_voters(1)?;
    check_recovered(&cluster, TAG, &value, &before)?;

    // A restore never overwrites a member's data dir.
    let data_dir = cluster.c.data_dir(0);
    let why = restore_refused(&backup, &data_dir)?;
    assert!(why.contains("needs an empty data dir"), "{why}");
    Ok(())
}

/// The join token a `--force-new-cluster` controller printed in its log.
fn printed_token(log: &str) -> Option<String> {
    let after = log.split("new controllers join with:").nth(1)?;
    after
        .split_whitespace()
        .next()
        .filter(|t| t.starts_with("BERTH-1-"))
        .map(str::to_string)
}

#[test]
fn force_new_cluster_recovers_from_losing_two_of_three_controllers() -> Result<()> {
    const TAG: u32 = 2;
    let mut cluster = Cluster::start("rec_force", 3, 2, 0)?;
    let value = deploy(&cluster, TAG)?;
    let before = workload(&cluster, TAG)?;
    let old_token = std::fs::read_to_string(cluster.c.token_file("controller")?)?;
    // A follower passes a backup call on to the leader.
    let leader = cluster.c.wait_leader(CONVERGE)?;
    let follower = (0..3).find(|h| *h != leader).context("a follower")?;
    let file = cluster.c.net.workdir().join("via-follower.bak");
    let json = cluster.berth_via(
        follower,
        &[
            "cluster",
            "backup",
            "--format",
            "json",
            &file.to_string_lossy(),
        ],
    )?;
    let summary: serde_json::Value = serde_json::from_str(&json)?;
    assert_eq!(summary["counts"]["service"], 2, "{json}");
    assert_eq!(summary["counts"]["task"], 3, "{json}");

    // Two of three gone for good: no quorum is left.
    for host in [0, 1] {
        cluster.c.wipe(host)?;
    }
    // The survivor, restarted alone on its data.
    cluster.c.kill(2)?;
    cluster
        .c
        .spawn_with(2, &["--force-new-cluster".to_string()])?;
    let new_token = wait_until("the new controller token", CONVERGE, || {
        printed_token(&cluster.c.proc(2).ok()?.log())
    })?;
    assert_ne!(new_token.trim(), old_token.trim());
    cluster.c.wait_leader_among(&[2], CONVERGE)?;
    check_recovered(&cluster, TAG, &value, &before)?;

    // The old token no longer joins; a refused joiner writes nothing.
    let address = cluster.c.address(2);
    cluster.c.spawn_with(
        0,
        &[
            "--join".to_string(),
            address.clone(),
            "--token".into(),
            old_token.trim().to_string(),
        ],
    )?;
    let status = cluster.c.proc(0)?.wait_exit(CONVERGE)?;
    assert!(!status.success(), "a join with the old token succeeded");
    let log = cluster.c.proc(0)?.log();
    assert!(log.contains("cannot join"), "{log}");
    assert!(!cluster.c.data_dir(0).join("berth-controller.json").exists());
    if cluster.c.data_dir(0).exists() {
        std::fs::remove_dir_all(cluster.c.data_dir(0))?;
    }

    // Two fresh controllers join with the new token and become voters.
    let token_file = cluster.c.net.workdir().join("new-controller.token");
    std::fs::write(&token_file, &new_token)?;
    for host in [0, 1] {
        cluster.c.spawn_with(
            host,
            &[
                "--join".to_string(),
                address.clone(),
                "--token-file".into(),
                token_file.to_string_lossy().to_string(),
            ],
        )?;
        cluster.c.wait_voters_at(2, 2 + host)?;
    }
    let status = cluster.c.status(2)?;
    assert_eq!(status.members.len(), 3, "{status:?}");
    // Writes go through the new three-member group.
    create(&cluster, "later", &[], &sleep(TAG, 4))?;
    cluster.wait_running("later", 1, CONVERGE)?;
    for pid in &before.1 {
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "container {pid} stopped"
        );
    }
    Ok(())
}

#[test]
fn an_autolocked_backup_restores_only_with_its_unlock_key() -> Result<()> {
    const TAG: u32 = 3;
    let mut cluster = Cluster::start_with("rec_locked", 1, 2, 0, &["--autolock"])?;
    let log = cluster.c.proc(0)?.log();
    let unlock = log
        .split_whitespace()
        .find(|w| w.starts_with("BERTH-UNLOCK-"))
        .with_context(|| format!("init printed no unlock key:\n{log}"))?
        .to_string();
    let value = deploy(&cluster, TAG)?;
    let before = workload(&cluster, TAG)?;

    let backup = cluster.c.net.workdir().join("locked.bak");
    let summary = backup_summary(&cluster, &backup)?;
    assert_eq!(summary["secrets_key_locked"], true, "{summary}");
    cluster.c.wipe(0)?;

    // Without the unlock key the backup's secrets cannot be opened: refused
    // before anything is written.
    let scratch = tempfile::tempdir()?;
    let target = scratch.path().join("data");
    let why = restore_refused(&backup, &target)?;
    assert!(why.contains("unlock key"), "{why}");
    assert!(
        !target.exists() || std::fs::read_dir(&target)?.next().is_none(),
        "a refused restore wrote into its data dir"
    );

    // With it (from a file, out of `ps`): the cluster is back, unlocked, and
    // its tasks open the secret.
    let key_file = scratch.path().join("unlock-key");
    std::fs::write(&key_file, format!("{unlock}\n"))?;
    let restore = vec![
        "--init".to_string(),
        "--restore".into(),
        backup.to_string_lossy().to_string(),
        "--unlock-key-file".into(),
        key_file.to_string_lossy().to_string(),
    ];
    // (`--autolock` belongs to a new cluster's `--init`: the restored member
    // keeps the backup's key, wrapped as it was.)
    cluster.c.extra_args.retain(|a| a != "--autolock");
    cluster.c.spawn_with(0, &restore)?;
    cluster.c.wait_voters(1)?;
    check_recovered(&cluster, TAG, &value, &before)
}
