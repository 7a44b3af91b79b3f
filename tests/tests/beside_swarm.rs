//! berth beside a real one-node Docker Swarm on the same host: Swarm's ingress
//! holds VXLAN id 4096 on UDP 4789 in the host's network namespace, which is
//! where berth's overlay lives too. With its defaults (UDP 7420) berth's tasks
//! run and its published ports answer; no data-plane conflict is reported.
//! Needs Debian's docker.io (deploy/install-deps.sh installs it).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_testhost::cluster::Cluster;
use berth_testhost::wait_until;

const CONVERGE: Duration = Duration::from_secs(60);
const DOCKERD: &str = "/usr/sbin/dockerd";

/// The body of `GET /` from `ip:port`, asked from test host `from`.
fn fetch(cluster: &Cluster, from: usize, ip: std::net::Ipv4Addr, port: u16) -> Option<String> {
    cluster
        .c
        .net
        .host(from)
        .http_get(ip, port, "/")
        .ok()
        .flatten()
}

#[test]
fn berth_runs_beside_a_docker_swarm_on_the_same_host() -> Result<()> {
    if !Path::new(DOCKERD).exists() {
        bail!("{DOCKERD} is missing: install docker.io (deploy/install-deps.sh does)");
    }
    // The agent's host is a spare: Swarm is there first, as on the reported host.
    let mut cluster = Cluster::start("swarm_beside", 1, 0, 1)?;
    let h = cluster.agent_hosts[0];
    let dir = cluster.c.net.workdir().join("docker");
    std::fs::create_dir_all(&dir)?;
    let sock = format!("unix://{}", dir.join("docker.sock").display());
    let path = |name: &str| dir.join(name).to_string_lossy().to_string();
    let args = [
        "--data-root".to_string(),
        path("data"),
        "--exec-root".into(),
        path("exec"),
        "--pidfile".into(),
        path("docker.pid"),
        "-H".into(),
        sock.clone(),
    ];
    // dockerd lives in the host's namespaces: its mounts and netns go with them.
    cluster.c.net.host_mut(h).spawn("dockerd", DOCKERD, &args)?;
    let docker = |cluster: &Cluster, args: &[&str]| {
        let mut full = vec!["-H", sock.as_str()];
        full.extend_from_slice(args);
        cluster.c.net.host(h).run("docker", &full)
    };
    wait_until("dockerd to answer", Duration::from_secs(60), || {
        docker(&cluster, &["info"]).ok().map(|_| ())
    })?;
    let address = cluster.c.net.host(h).address();
    docker(
        &cluster,
        &["swarm", "init", "--advertise-addr", &address.to_string()],
    )?;
    // Swarm's ingress soon holds VNI 4096 on UDP 4789 here (its sandbox is
    // set up after `swarm init` returns).
    wait_until(
        "Swarm's ingress to hold VNI 4096 on UDP 4789",
        // dockerd sets its ingress sandbox up slowly on a loaded machine.
        Duration::from_secs(90),
        || {
            let host = cluster.c.net.host(h);
            let probe = host
                .run_unchecked(
                    "ip",
                    &[
                        "link", "add", "vxprobe", "type", "vxlan", "id", "4096", "dstport", "4789",
                    ],
                )
                .ok()?;
            if probe.status.success() {
                let _ = host.run_unchecked("ip", &["link", "del", "vxprobe"]);
                return None;
            }
            String::from_utf8_lossy(&probe.stderr)
                .contains("already exists")
                .then_some(())
        },
    )?;

    cluster.start_agent(0)?;
    cluster.wait_nodes_ready(1)?;
    cluster.berth(&[
        "service",
        "create",
        "--detach",
        "web",
        "--image",
        &cluster.image,
        "--replicas",
        "2",
        "--publish",
        "8097:80",
        "--",
        "sh",
        "-c",
        "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www",
    ])?;
    cluster.wait_running("web", 2, CONVERGE)?;
    let tasks = cluster.ps("web")?;
    assert!(
        tasks.iter().all(|t| t.error.is_empty()),
        "no task failed: {tasks:?}"
    );
    let client = cluster.c.client_host();
    let body = wait_until(
        "web to answer beside Swarm",
        Duration::from_secs(30),
        || fetch(&cluster, client, address, 8097),
    )?;
    assert!(
        tasks.iter().any(|t| t.id.starts_with(&body)),
        "answered {body:?}"
    );
    let nodes = cluster.nodes()?;
    let conflict = nodes[0]["dataplane_conflict"]
        .as_str()
        .context("dataplane_conflict")?;
    assert_eq!(conflict, "", "no conflict with the default port");

    // Swarm out before dockerd goes (the harness kills the processes).
    docker(&cluster, &["swarm", "leave", "--force"])?;
    Ok(())
}
