//! Services across hosts: 3 controllers, agents on their own hosts, images from
//! a registry on the fabric. Real processes and containers throughout.

use std::time::{Duration, Instant};

use anyhow::Result;
use berth_testhost::Cut;
use berth_testhost::cluster::Cluster;
use berth_testhost::wait_until;

const CONVERGE: Duration = Duration::from_secs(60);

fn create(cluster: &Cluster, name: &str, extra: &[&str], command: &[&str]) -> Result<()> {
    let mut args = vec![
        "service",
        "create",
        "--detach",
        name,
        "--image",
        &cluster.image,
    ];
    args.extend_from_slice(extra);
    if !command.is_empty() {
        args.push("--");
        args.extend_from_slice(command);
    }
    cluster.berth(&args)?;
    Ok(())
}

#[test]
fn replicas_spread_move_off_a_cut_node_and_never_duplicate_when_it_heals() -> Result<()> {
    let cluster = Cluster::start("svc_spread", 3, 3, 0)?;
    create(
        &cluster,
        "web",
        &["--replicas", "6", "--restart-delay", "0.2"],
        &["sleep", "3600"],
    )?;
    cluster.wait_running("web", 6, CONVERGE)?;
    let per_node = cluster.running_per_node("web")?;
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{per_node:?}"
    );

    // Cut n3 off: its tasks run elsewhere within the down period (4 s) + 5 s.
    let n3_host = cluster.agent_hosts[2];
    cluster.c.net.host(n3_host).cut(Cut::Both)?;
    let cut_at = Instant::now();
    wait_until(
        "6 tasks running on n1 and n2",
        Duration::from_secs(4 + 5 + 10),
        || {
            let per_node = cluster.running_per_node("web").ok()?;
            let elsewhere: usize = per_node
                .iter()
                .filter(|(n, _)| n.as_str() != "n3")
                .map(|(_, c)| *c)
                .sum();
            (elsewhere == 6).then_some(())
        },
    )?;
    let moved_after = cut_at.elapsed();
    eprintln!("tasks moved off the cut node after {moved_after:?}");

    // Heal: n3's stale tasks are stopped, never more than 6 keep running.
    cluster.c.net.host(n3_host).heal()?;
    wait_until("n3's stale tasks to stop", Duration::from_secs(30), || {
        let rows = cluster.ps("web").ok()?;
        let running = rows.iter().filter(|t| t.state == "running").count();
        let stale_on_n3 = rows
            .iter()
            .filter(|t| t.node == "n3" && t.desired_state != "running" && t.state == "running")
            .count();
        (running == 6 && stale_on_n3 == 0).then_some(())
    })?;
    Ok(())
}

#[test]
fn drain_moves_tasks_and_a_global_service_follows_nodes() -> Result<()> {
    let mut cluster = Cluster::start("svc_drain_global", 3, 2, 1)?;
    create(&cluster, "app", &["--replicas", "2"], &["sleep", "3600"])?;
    create(
        &cluster,
        "agentd",
        &["--mode", "global"],
        &["sleep", "3600"],
    )?;
    cluster.wait_running("app", 2, CONVERGE)?;
    cluster.wait_running("agentd", 2, CONVERGE)?;

    // A node that joins later gets the global task too.
    cluster.start_agent(2)?;
    cluster.wait_nodes_ready(3)?;
    cluster.wait_running("agentd", 3, CONVERGE)?;
    let per_node = cluster.running_per_node("agentd")?;
    assert_eq!(per_node.len(), 3, "{per_node:?}");

    // Drain n1: its replicated tasks move, the global one stops there.
    cluster.berth(&["node", "update", "--availability", "drain", "n1"])?;
    wait_until("app off n1", CONVERGE, || {
        let per_node = cluster.running_per_node("app").ok()?;
        let total: usize = per_node.values().sum();
        (total == 2 && !per_node.contains_key("n1")).then_some(())
    })?;
    wait_until("agentd off n1", CONVERGE, || {
        let per_node = cluster.running_per_node("agentd").ok()?;
        (!per_node.contains_key("n1") && per_node.len() == 2).then_some(())
    })?;
    Ok(())
}

#[test]
fn a_crash_looping_task_follows_its_restart_policy() -> Result<()> {
    let cluster = Cluster::start("svc_crashloop", 3, 1, 0)?;
    create(
        &cluster,
        "crash",
        &[
            "--restart-condition",
            "on-failure",
            "--restart-delay",
            "0.2",
            "--restart-max-attempts",
            "3",
        ],
        &["sh", "-c", "exit 3"],
    )?;
    // The first run and 3 restarts fail, then nothing more.
    wait_until("4 failed attempts", CONVERGE, || {
        let rows = cluster.ps("crash").ok()?;
        (rows.iter().filter(|t| t.state == "failed").count() == 4).then_some(())
    })?;
    std::thread::sleep(Duration::from_secs(3));
    let rows = cluster.ps("crash")?;
    assert_eq!(rows.len(), 4, "a 5th attempt was made: {rows:?}");
    assert!(rows.iter().all(|t| t.state == "failed"), "{rows:?}");
    assert!(
        rows.iter().all(|t| t.desired_state != "running"),
        "{rows:?}"
    );
    // The failures carry the task's own exit code.
    assert!(rows.iter().any(|t| t.exit_code == Some(3)), "{rows:?}");
    Ok(())
}

#[test]
fn restarting_an_agent_or_killing_the_leader_restarts_no_container() -> Result<()> {
    let mut cluster = Cluster::start("svc_no_restart", 3, 2, 0)?;
    create(&cluster, "steady", &["--replicas", "4"], &["sleep", "3601"])?;
    cluster.wait_running("steady", 4, CONVERGE)?;
    let before = Cluster::wait_processes("sleep 3601", 4)?;
    let tasks_before: Vec<String> = cluster.ps("steady")?.into_iter().map(|t| t.id).collect();

    // Agent restart: containers are re-adopted, not restarted.
    cluster.agent(0)?.kill9()?;
    cluster.agent(0)?.restart()?;
    cluster.wait_nodes_ready(2)?;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(Cluster::processes_matching("sleep 3601"), before);

    // kill -9 of the leader: the API answers again, containers stay. How fast
    // it answers is measured against etcd by bench-controller --failovers,
    // not asserted here (a loaded CI machine would make it flaky).
    let leader = cluster.c.wait_leader(Duration::from_secs(10))?;
    cluster.c.kill(leader)?;
    let others: Vec<usize> = cluster
        .c
        .members()
        .iter()
        .copied()
        .filter(|h| *h != leader)
        .collect();
    wait_until("the API to answer", Duration::from_secs(10), || {
        others
            .iter()
            .any(|h| cluster.berth_via(*h, &["service", "ls"]).is_ok())
            .then_some(())
    })?;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(Cluster::processes_matching("sleep 3601"), before);
    let mut tasks_after: Vec<String> = cluster.ps("steady")?.into_iter().map(|t| t.id).collect();
    tasks_after.sort();
    let mut tasks_before = tasks_before;
    tasks_before.sort();
    assert_eq!(tasks_after, tasks_before, "tasks were replaced");
    cluster.c.restart(leader)?;
    Ok(())
}

#[test]
fn a_task_too_big_for_every_node_stays_pending_with_a_reason() -> Result<()> {
    let cluster = Cluster::start("svc_pending", 3, 2, 0)?;
    create(&cluster, "huge", &["--memory", "64t"], &["sleep", "3600"])?;
    let row = wait_until("a pending task with a reason", CONVERGE, || {
        let rows = cluster.ps("huge").ok()?;
        rows.into_iter()
            .find(|t| t.state == "pending" && !t.message.is_empty())
    })?;
    assert!(row.message.contains("memory"), "{row:?}");
    assert!(row.message.contains("2 nodes"), "{row:?}");
    Ok(())
}

#[test]
fn a_short_network_blip_replaces_nothing() -> Result<()> {
    let cluster = Cluster::start("svc_blip", 3, 2, 0)?;
    create(&cluster, "calm", &["--replicas", "4"], &["sleep", "3602"])?;
    cluster.wait_running("calm", 4, CONVERGE)?;
    let before: Vec<String> = cluster.ps("calm")?.into_iter().map(|t| t.id).collect();
    // Shorter than the down period (4 s in these tests).
    let host = cluster.agent_hosts[0];
    cluster.c.net.host(host).cut(Cut::Both)?;
    std::thread::sleep(Duration::from_secs(2));
    cluster.c.net.host(host).heal()?;
    std::thread::sleep(Duration::from_secs(4));
    let after = cluster.ps("calm")?;
    assert_eq!(after.len(), 4, "tasks were added: {after:?}");
    assert!(
        after
            .iter()
            .all(|t| before.contains(&t.id) && t.state == "running"),
        "{after:?}"
    );
    let nodes = cluster.nodes()?;
    assert!(nodes.iter().all(|n| n["status"] == "ready"), "{nodes:?}");
    Ok(())
}

#[test]
fn service_logs_stream_task_output_through_the_controller() -> Result<()> {
    let cluster = Cluster::start("svc_logs", 3, 2, 0)?;
    create(
        &cluster,
        "talker",
        &["--replicas", "2"],
        &[
            "sh",
            "-c",
            "i=0; while true; do echo \"line $i from $(hostname)\"; i=$((i+1)); sleep 0.2; done",
        ],
    )?;
    cluster.wait_running("talker", 2, CONVERGE)?;
    // Through a follower as well as the leader: every controller serves logs.
    let out = wait_until("lines from both replicas", Duration::from_secs(20), || {
        let out = cluster
            .berth(&["service", "logs", "talker", "--tail", "3"])
            .ok()?;
        let slots: std::collections::BTreeSet<&str> = out
            .lines()
            .filter(|l| l.contains("| line "))
            .filter_map(|l| l.split('|').next())
            .collect();
        (slots.len() == 2).then_some(out)
    })?;
    for line in out.lines() {
        // task.slot@node | line N from HOSTNAME
        assert!(line.contains("@n") && line.contains("| line "), "{line}");
    }
    assert!(out.lines().count() <= 6, "--tail 3 per task gave:\n{out}");
    Ok(())
}

/// The task's output lines of `service`, once `want` lines have come.
fn service_lines(cluster: &Cluster, service: &str, want: usize) -> Result<Vec<String>> {
    wait_until("the task's output", Duration::from_secs(30), || {
        let out = cluster.berth(&["service", "logs", service]).ok()?;
        let lines: Vec<String> = out
            .lines()
            .filter_map(|l| l.split_once(" | ").map(|(_, text)| text.to_string()))
            .collect();
        (lines.len() >= want).then_some(lines)
    })
}

#[test]
fn security_flags_reach_the_container_and_a_bad_capability_is_refused() -> Result<()> {
    let cluster = Cluster::start("svc_security", 1, 1, 0)?;
    let err = cluster
        .berth(&[
            "service",
            "create",
            "--detach",
            "bad",
            "--image",
            &cluster.image,
            "--cap-add",
            "FLY",
        ])
        .expect_err("an unknown capability is refused");
    assert!(
        format!("{err:#}").contains("unknown capability \"FLY\" in cap_add"),
        "{err:#}"
    );
    let listed = cluster.berth(&["service", "ls", "--format", "json"])?;
    assert!(!listed.contains("\"bad\""), "{listed}");

    let probe = "echo uid=$(id -u); echo seccomp=$(grep '^Seccomp:' /proc/self/status | cut -f2); \
         echo bounding=$(grep '^CapBnd:' /proc/self/status | cut -f2); \
         touch /probe 2>/dev/null && echo root=writable || echo root=refused; \
         unshare -U true 2>/dev/null && echo unshare=ok || echo unshare=refused; \
         while true; do sleep 1; done";
    create(
        &cluster,
        "locked",
        &[
            "--user",
            "1000:1000",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "net_bind_service",
        ],
        &["sh", "-c", probe],
    )?;
    create(
        &cluster,
        "open",
        &["--security-opt", "seccomp=unconfined"],
        &["sh", "-c", probe],
    )?;
    cluster.wait_running("locked", 1, CONVERGE)?;
    cluster.wait_running("open", 1, CONVERGE)?;
    assert_eq!(
        service_lines(&cluster, "locked", 5)?,
        [
            "uid=1000",
            "seccomp=2",
            // CAP_NET_BIND_SERVICE (10) alone.
            "bounding=0000000000000400",
            "root=refused",
            "unshare=refused",
        ]
    );
    assert_eq!(
        service_lines(&cluster, "open", 5)?,
        [
            "uid=0",
            "seccomp=0",
            "bounding=00000000a80425fb",
            "root=writable",
            "unshare=ok",
        ]
    );
    Ok(())
}
