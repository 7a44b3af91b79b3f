//! The rest of what a Compose service says, end to end with real agents and
//! containers: ulimits, `--init`, container labels, the dnsrr endpoint mode,
//! placement preferences and the limit of replicas per node.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_testhost::cluster::Cluster;
use berth_testhost::wait_until;
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(60);

/// One controller and `agents` agents. Placements are asserted exactly, so a
/// node must not be declared down by a heartbeat late on a loaded machine
/// (its tasks would move): 30 s instead of the harness's 4.
fn start(test: &str, agents: usize) -> Result<Cluster> {
    Cluster::start_with(test, 1, agents, 0, &["--node-down-after", "30"])
}

fn inspect(cluster: &Cluster, name: &str) -> Result<Value> {
    let out = cluster.berth(&["service", "inspect", name])?;
    serde_json::from_str(&out).context("service inspect JSON")
}

/// The one running task of `service`: its id and its agent's number.
fn only_running(cluster: &Cluster, service: &str) -> Result<(String, usize)> {
    let rows: Vec<_> = cluster
        .ps(service)?
        .into_iter()
        .filter(|t| t.state == "running" && t.desired_state == "running")
        .collect();
    let [t] = <[_; 1]>::try_from(rows).map_err(|v| anyhow::anyhow!("want one task: {v:?}"))?;
    let agent = t.node.trim_start_matches('n').parse::<usize>()? - 1;
    Ok((t.id, agent))
}

/// stdout of `command` in the task's container.
fn exec_out(cluster: &Cluster, agent: usize, task: &str, command: &[&str]) -> Result<String> {
    let out = cluster.exec(agent, task, command)?;
    if !out.status.success() {
        bail!(
            "{command:?} in {task}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The states (third field of /proc/PID/stat) of the container's processes.
fn process_states(cluster: &Cluster, agent: usize, task: &str) -> Result<Vec<String>> {
    let stat = exec_out(
        cluster,
        agent,
        task,
        &["sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null"],
    )?;
    Ok(stat
        .lines()
        .filter_map(|l| l.rsplit_once(") ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_whitespace().next().map(str::to_string))
        .collect())
}

#[test]
fn ulimits_init_and_container_labels_reach_the_container() -> Result<()> {
    let cluster = start("svcset_process", 1)?;

    // The command records its limits as it starts: the process's own, not
    // an exec's.
    cluster.create_service(
        "limited",
        &["--ulimit", "nofile=123:456"],
        &[
            "sh",
            "-c",
            "echo $(ulimit -Sn) $(ulimit -Hn) > /limits; exec sleep 3600",
        ],
    )?;
    cluster.wait_running("limited", 1, CONVERGE)?;
    let (task, agent) = only_running(&cluster, "limited")?;
    let limits = wait_until("the limits recorded", Duration::from_secs(10), || {
        exec_out(&cluster, agent, &task, &["cat", "/limits"])
            .inspect_err(|e| eprintln!("not yet: {e:#}"))
            .ok()
    })?;
    assert_eq!(limits.trim(), "123 456");
    // A bad one is refused naming it, and nothing is created.
    let bad = cluster.berth(&[
        "service",
        "create",
        "bad",
        "--image",
        &cluster.image,
        "--ulimit",
        "nofile=456:123",
    ]);
    let err = bad.expect_err("soft above hard").to_string();
    assert!(
        err.contains("ulimit nofile: the soft limit 456 is above the hard limit 123"),
        "{err}"
    );

    // --init: tini is PID 1, and an orphan that exits is reaped (without a
    // reaper it would stay a zombie). The orphan marks that it ended.
    cluster.create_service(
        "reaped",
        &["--init", "--container-label", "team=a"],
        &[
            "sh",
            "-c",
            "(sh -c 'sleep 1; touch /orphan-done' &); exec sleep 3600",
        ],
    )?;
    cluster.wait_running("reaped", 1, CONVERGE)?;
    let (task, agent) = only_running(&cluster, "reaped")?;
    let pid1 = exec_out(&cluster, agent, &task, &["cat", "/proc/1/cmdline"])?;
    let pid1: Vec<&str> = pid1.split('\0').filter(|a| !a.is_empty()).collect();
    assert_eq!(pid1[..2], ["/sbin/docker-init", "--"], "{pid1:?}");
    assert_eq!(pid1[2], "sh", "{pid1:?}");
    wait_until(
        "the orphan to end and be reaped",
        Duration::from_secs(20),
        || {
            exec_out(&cluster, agent, &task, &["ls", "/orphan-done"]).ok()?;
            let states = process_states(&cluster, agent, &task).ok()?;
            (!states.is_empty() && !states.iter().any(|s| s == "Z")).then_some(())
        },
    )?;

    // The container label: in the service's spec, and on the container.
    let service = inspect(&cluster, "reaped")?;
    assert_eq!(service["spec"]["container_labels"]["team"], "a");
    assert_eq!(service["spec"]["init"], true);
    let state = cluster
        .c
        .net
        .host(cluster.agent_hosts[agent])
        .run_unchecked(
            &berth_testhost::bin_path("berth-runtime").to_string_lossy(),
            &["--root", "/run/berth/runtime", "state", &task],
        )?;
    let state: Value = serde_json::from_slice(&state.stdout).context("runtime state JSON")?;
    assert_eq!(state["annotations"]["team"], "a", "{state}");

    // The history names what changed, as the flags write it.
    cluster.berth(&[
        "service",
        "update",
        "--detach",
        "--ulimit-add",
        "nproc=100",
        "--no-init",
        "--container-label-rm",
        "team",
        "reaped",
    ])?;
    let history = cluster.berth(&["service", "history", "reaped", "--format", "json"])?;
    assert!(
        history
            .contains("container_labels.team removed, init true -> false, ulimits +nproc=100:100"),
        "{history}"
    );
    Ok(())
}

/// The running tasks of `service`: id, agent and address in `berth`.
fn task_ips(cluster: &Cluster, service: &str) -> Result<BTreeMap<String, (usize, Ipv4Addr)>> {
    let mut out = BTreeMap::new();
    for t in cluster.ps(service)? {
        if t.state != "running" || t.desired_state != "running" {
            continue;
        }
        let ip = t
            .addresses
            .get("berth")
            .with_context(|| format!("task {} has no address", t.id))?
            .addr();
        let agent = t.node.trim_start_matches('n').parse::<usize>()? - 1;
        out.insert(t.id, (agent, ip));
    }
    Ok(out)
}

fn vips(cluster: &Cluster, service: &str) -> Result<usize> {
    let service = inspect(cluster, service)?;
    Ok(service["virtual_ips"].as_object().map_or(0, |m| m.len()))
}

#[test]
fn a_dnsrr_service_resolves_to_its_tasks_and_has_no_vip() -> Result<()> {
    let cluster = start("svcset_dnsrr", 2)?;
    cluster.create_service(
        "rr",
        &["--endpoint-mode", "dnsrr", "--replicas", "2"],
        &["sleep", "3600"],
    )?;
    cluster.create_service(
        "client",
        &["--constraint", "node.name==n1"],
        &["sleep", "3600"],
    )?;
    cluster.wait_running("rr", 2, CONVERGE)?;
    cluster.wait_running("client", 1, CONVERGE)?;
    let (client, agent) = only_running(&cluster, "client")?;
    let tasks: BTreeSet<Ipv4Addr> = task_ips(&cluster, "rr")?
        .values()
        .map(|(_, ip)| *ip)
        .collect();
    assert_eq!(tasks.len(), 2);
    let answered = wait_until("rr to resolve to its tasks", CONVERGE, || {
        let got = cluster.lookup(agent, &client, "rr").ok()?;
        (got == tasks).then_some(got)
    })?;
    assert_eq!(answered, tasks);
    assert_eq!(vips(&cluster, "rr")?, 0, "a dnsrr service has no VIP");
    assert_eq!(inspect(&cluster, "rr")?["spec"]["endpoint_mode"], "dnsrr");

    // Ingress publishing needs a VIP: refused, as Swarm does.
    let err = cluster
        .berth(&[
            "service",
            "update",
            "--detach",
            "--publish-add",
            "8080:80",
            "rr",
        ])
        .expect_err("ingress port on dnsrr")
        .to_string();
    assert!(
        err.contains("port 8080: a dnsrr service publishes only in mode=host"),
        "{err}"
    );

    // To vip: a VIP is allocated and the name answers it; the tasks stay.
    cluster.berth(&[
        "service",
        "update",
        "--detach",
        "--endpoint-mode",
        "vip",
        "rr",
    ])?;
    wait_until("rr's VIP", CONVERGE, || {
        (vips(&cluster, "rr").ok()? == 1).then_some(())
    })?;
    let vip = wait_until("rr to resolve to one VIP", CONVERGE, || {
        let got = cluster.lookup(agent, &client, "rr").ok()?;
        (got.len() == 1 && got.is_disjoint(&tasks)).then_some(got)
    })?;
    assert_eq!(cluster.lookup(agent, &client, "tasks.rr")?, tasks);
    let still: BTreeSet<Ipv4Addr> = task_ips(&cluster, "rr")?
        .values()
        .map(|(_, ip)| *ip)
        .collect();
    assert_eq!(still, tasks, "the endpoint mode replaces no task");

    // Back to dnsrr: the VIP is freed, the name answers the tasks again.
    cluster.berth(&[
        "service",
        "update",
        "--detach",
        "--endpoint-mode",
        "dnsrr",
        "rr",
    ])?;
    wait_until("rr's VIP freed", CONVERGE, || {
        (vips(&cluster, "rr").ok()? == 0).then_some(())
    })?;
    wait_until("rr to resolve to its tasks again", CONVERGE, || {
        let got = cluster.lookup(agent, &client, "rr").ok()?;
        (got == tasks && got.is_disjoint(&vip)).then_some(())
    })?;
    Ok(())
}

#[test]
fn spread_over_zones_puts_half_the_replicas_in_each_zone() -> Result<()> {
    let cluster = start("svcset_place", 3)?;
    for (node, zone) in [("n1", "a"), ("n2", "a"), ("n3", "b")] {
        cluster.berth(&[
            "node",
            "update",
            "--label-add",
            &format!("zone={zone}"),
            node,
        ])?;
    }
    cluster.create_service(
        "zoned",
        &[
            "--replicas",
            "4",
            "--placement-pref",
            "spread=node.labels.zone",
        ],
        &["sleep", "3600"],
    )?;
    cluster.wait_running("zoned", 4, CONVERGE)?;
    let per_node = cluster.running_per_node("zoned")?;
    let zone_a =
        per_node.get("n1").copied().unwrap_or(0) + per_node.get("n2").copied().unwrap_or(0);
    let zone_b = per_node.get("n3").copied().unwrap_or(0);
    assert_eq!((zone_a, zone_b), (2, 2), "{per_node:?}");

    Ok(())
}

#[test]
fn a_limit_per_node_leaves_a_replica_pending_with_the_reason() -> Result<()> {
    let cluster = start("svcset_cap", 2)?;
    // One per node on two nodes: the third replica waits, saying why.
    cluster.create_service(
        "capped",
        &["--replicas", "3", "--replicas-max-per-node", "1"],
        &["sleep", "3600"],
    )?;
    cluster.wait_running("capped", 2, CONVERGE)?;
    assert_eq!(
        cluster
            .running_per_node("capped")?
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![1, 1]
    );
    let waiting = wait_until("the third replica's reason", CONVERGE, || {
        let rows = cluster.ps("capped").ok()?;
        rows.into_iter()
            .find(|t| t.state == "pending" && !t.message.is_empty())
    })?;
    assert_eq!(waiting.message, "max 1 replica per node reached on 2 nodes");
    // Raising the limit places it.
    cluster.berth(&[
        "service",
        "update",
        "--detach",
        "--replicas-max-per-node",
        "2",
        "capped",
    ])?;
    cluster.wait_running("capped", 3, CONVERGE)?;
    Ok(())
}
