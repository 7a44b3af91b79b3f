//! The overlay across hosts, end to end: real controllers, agents and busybox
//! containers on test hosts; containers find services by name through the
//! agents' DNS, reach them by VIP, published ports answer on every host,
//! networks are isolated, and removing everything leaves nothing behind.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_testhost::cluster::Cluster;
use berth_testhost::netprobe::df_probe;
use berth_testhost::{Cut, http, wait_until};

const CONVERGE: Duration = Duration::from_secs(60);
/// A web server that answers with its container's hostname (the task id's
/// first 12 characters).
const WEB: &[&str] = &[
    "sh",
    "-c",
    "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www",
];
const SLEEP: &[&str] = &["sleep", "3600"];

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
    args.push("--");
    args.extend_from_slice(command);
    cluster.berth(&args)?;
    Ok(())
}

/// A running task: where it runs and its address in a network.
#[derive(Clone, Debug)]
struct Running {
    id: String,
    agent: usize,
    ip: Ipv4Addr,
}

impl Running {
    fn hostname(&self) -> String {
        self.id.chars().take(12).collect()
    }
}

fn running(cluster: &Cluster, service: &str, network: &str) -> Result<Vec<Running>> {
    let mut out = Vec::new();
    for t in cluster.ps(service)? {
        if t.state != "running" || t.desired_state != "running" {
            continue;
        }
        let ip = t
            .addresses
            .get(network)
            .with_context(|| format!("task {} has no address in {network}", t.id))?
            .addr();
        let agent = t.node.trim_start_matches('n').parse::<usize>()? - 1;
        out.push(Running {
            id: t.id,
            agent,
            ip,
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

fn only(tasks: Vec<Running>) -> Result<Running> {
    match <[Running; 1]>::try_from(tasks) {
        Ok([t]) => Ok(t),
        Err(v) => bail!("want one running task, got {v:?}"),
    }
}

/// The body of `GET /` from `host:port`, fetched inside `from`'s container
/// (None: no answer). With nc: Debian's busybox-static wget crashes.
fn fetch(cluster: &Cluster, from: &Running, host: &str, port: u16) -> Result<Option<String>> {
    get(cluster, from, host, port, "/")
}

fn get(
    cluster: &Cluster,
    from: &Running,
    host: &str,
    port: u16,
    path: &str,
) -> Result<Option<String>> {
    let script = http::get_script("nc", host, port, path);
    let out = cluster.exec(from.agent, &from.id, &["sh", "-c", &script])?;
    Ok(http::body_of(&out.stdout))
}

/// The distinct bodies of up to `tries` fetches of `host:port` from `from`,
/// stopping once `enough` were seen.
fn answers(
    cluster: &Cluster,
    from: &Running,
    host: &str,
    port: u16,
    tries: usize,
    enough: usize,
) -> Result<BTreeSet<String>> {
    let mut seen = BTreeSet::new();
    for _ in 0..tries {
        if let Some(body) = fetch(cluster, from, host, port)? {
            seen.insert(body);
        }
        if seen.len() >= enough {
            break;
        }
    }
    Ok(seen)
}

/// The body of `GET /` from `ip:port`, fetched from test host `host` itself
/// (None: refused or no answer).
fn fetch_from_host(
    cluster: &Cluster,
    host: usize,
    ip: Ipv4Addr,
    port: u16,
) -> Result<Option<String>> {
    cluster.c.net.host(host).http_get(ip, port, "/")
}

/// The IPv4 addresses `nslookup NAME` prints inside `from`'s container (through
/// the resolv.conf the agent gave it).
fn lookup(cluster: &Cluster, from: &Running, name: &str) -> Result<BTreeSet<Ipv4Addr>> {
    cluster.lookup(from.agent, &from.id, name)
}

fn ips(tasks: &[Running]) -> BTreeSet<Ipv4Addr> {
    tasks.iter().map(|t| t.ip).collect()
}

/// The netns file of a task's container, opened through its agent host's
/// mount namespace.
fn task_netns(cluster: &Cluster, task: &Running) -> Result<File> {
    let host = cluster.c.net.host(cluster.agent_hosts[task.agent]);
    let path = format!(
        "/proc/{}/root/run/berth/netns/{}",
        host.holder_pid(),
        task.id
    );
    File::open(&path).with_context(|| format!("open {path}"))
}

#[test]
fn containers_find_services_by_name_across_hosts() -> Result<()> {
    let cluster = Cluster::start("ovl_names", 1, 3, 0)?;
    create(
        &cluster,
        "web",
        &["--replicas", "2", "--constraint", "node.name!=n1"],
        WEB,
    )?;
    create(
        &cluster,
        "client",
        &["--constraint", "node.name==n1"],
        SLEEP,
    )?;
    cluster.wait_running("web", 2, CONVERGE)?;
    cluster.wait_running("client", 1, CONVERGE)?;
    let web = running(&cluster, "web", "berth")?;
    let client = only(running(&cluster, "client", "berth")?)?;
    let web_agents: BTreeSet<usize> = web.iter().map(|t| t.agent).collect();
    assert_eq!(web_agents, BTreeSet::from([1, 2]), "{web:?}");

    // Each replica answers across the VXLAN at its task address (once its
    // httpd listens: running means started, not ready).
    for t in &web {
        let ip = t.ip.to_string();
        let got = wait_until(
            &format!("{ip}:80 to answer"),
            Duration::from_secs(10),
            || fetch(&cluster, &client, &ip, 80).ok().flatten(),
        )?;
        assert_eq!(got, t.hostname(), "{ip}");
    }
    // tasks.web lists every replica; web is the service's VIP, and by name and
    // by VIP, connections spread over the replicas on both other hosts.
    assert_eq!(lookup(&cluster, &client, "tasks.web")?, ips(&web));
    let vips = lookup(&cluster, &client, "web")?;
    assert_eq!(vips.len(), 1, "{vips:?}");
    let vip = vips.iter().next().copied().context("a VIP")?;
    assert!(!ips(&web).contains(&vip));
    let hostnames: BTreeSet<String> = web.iter().map(Running::hostname).collect();
    for target in ["web".to_string(), vip.to_string()] {
        let seen = answers(&cluster, &client, &target, 80, 40, hostnames.len())?;
        assert_eq!(seen, hostnames, "answers through {target}");
    }

    // /etc/hosts names the container itself.
    let hosts = cluster.exec(0, &client.id, &["cat", "/etc/hosts"])?;
    let hosts = String::from_utf8_lossy(&hosts.stdout).to_string();
    let own = format!("{} {}", client.ip, client.hostname());
    assert!(hosts.lines().any(|l| l == own), "{hosts}");

    // Egress: a container reaches a host outside the overlay (the registry's)
    // from its host's address.
    let (registry_ip, registry_port) = cluster
        .registry
        .address()
        .split_once(':')
        .context("registry HOST:PORT")?;
    let got = get(
        &cluster,
        &client,
        registry_ip,
        registry_port.parse()?,
        "/v2/",
    )?;
    assert_eq!(got.as_deref(), Some("{}"), "GET /v2/ of the registry");

    // The container MTU is the underlay's minus 50, and a don't-fragment
    // datagram of exactly that size arrives across hosts.
    let mtu_out = cluster.exec(0, &client.id, &["cat", "/sys/class/net/eth0/mtu"])?;
    let mtu: usize = String::from_utf8_lossy(&mtu_out.stdout).trim().parse()?;
    // (`ip`, not /sys: the host shares the machine's sysfs.)
    let link = cluster
        .c
        .net
        .host(cluster.agent_hosts[0])
        .run("ip", &["-o", "link", "show", "eth0"])?;
    let link = String::from_utf8_lossy(&link.stdout).to_string();
    let underlay: usize = link
        .split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .with_context(|| format!("no mtu in {link:?}"))?
        .parse()?;
    assert_eq!(mtu + 50, underlay);
    df_probe(
        &task_netns(&cluster, &client)?,
        &task_netns(&cluster, &web[0])?,
        web[0].ip,
        mtu - 28,
    )?;

    // Scale down: the stopped replica leaves the answers (how fast is printed,
    // not asserted: timing belongs in benchmarks).
    cluster.berth(&["service", "scale", "--detach", "web=1"])?;
    let scaled_at = Instant::now();
    let left = wait_until(
        "a replica to leave tasks.web",
        Duration::from_secs(10),
        || {
            let now = lookup(&cluster, &client, "tasks.web").ok()?;
            (now.len() == 1).then_some(now)
        },
    )?;
    let took = scaled_at.elapsed();
    eprintln!("a scaled-down replica left DNS after {took:?}");
    let stays = left.iter().next().copied().context("one left")?;
    let survivor = web
        .iter()
        .find(|t| t.ip == stays)
        .context("survivor")?
        .clone();

    // ... and the VIP: soon every new connection goes to the survivor. (The
    // stopped replica drains: it keeps answering until every node's load
    // balancer left it, so connections that reach it meanwhile succeed.)
    let only_survivor = BTreeSet::from([survivor.hostname()]);
    wait_until(
        "the VIP to send every connection to the survivor",
        Duration::from_secs(3),
        || {
            let seen = answers(&cluster, &client, &vip.to_string(), 80, 10, 2).ok()?;
            (seen == only_survivor).then_some(())
        },
    )?;

    // Cut the survivor's host off: its task leaves the answers once the node
    // is declared down, and the replacement on the other node takes its place.
    let cut_host = cluster.agent_hosts[survivor.agent];
    cluster.c.net.host(cut_host).cut(Cut::Both)?;
    wait_until(
        "the cut host's task to leave tasks.web",
        Duration::from_secs(30),
        || {
            let now = lookup(&cluster, &client, "tasks.web").ok()?;
            (!now.contains(&survivor.ip) && now.len() == 1).then_some(())
        },
    )?;
    cluster.c.net.host(cut_host).heal()?;
    Ok(())
}

#[test]
fn published_ports_answer_on_every_host_or_only_where_a_task_runs() -> Result<()> {
    let mut cluster = Cluster::start("ovl_publish", 1, 3, 0)?;
    create(
        &cluster,
        "web",
        &[
            "--replicas",
            "2",
            "--constraint",
            "node.name!=n1",
            "--publish",
            "8080:80",
        ],
        WEB,
    )?;
    create(
        &cluster,
        "solo",
        &[
            "--constraint",
            "node.name==n2",
            "--publish",
            "published=8081,target=80,mode=host",
        ],
        WEB,
    )?;
    cluster.wait_running("web", 2, CONVERGE)?;
    cluster.wait_running("solo", 1, CONVERGE)?;
    let web = running(&cluster, "web", "berth")?;
    let solo = only(running(&cluster, "solo", "berth")?)?;
    let hostnames: BTreeSet<String> = web.iter().map(Running::hostname).collect();
    let client = cluster.c.client_host();
    // Ingress: every host answers 8080, also n1 where no web task runs.
    for i in 0..3 {
        let addr = cluster.c.net.host(cluster.agent_hosts[i]).address();
        let body = wait_until(
            &format!("{addr}:8080 to answer"),
            Duration::from_secs(15),
            || fetch_from_host(&cluster, client, addr, 8080).ok().flatten(),
        )?;
        assert!(hostnames.contains(&body), "{addr}:8080 answered {body:?}");
    }
    // Loopback: `curl localhost:8080` on any host answers too (the agent's
    // proxy on 127.0.0.1 relays into the same rules).
    for i in 0..3 {
        let body = wait_until(
            &format!("127.0.0.1:8080 on host {i} to answer"),
            Duration::from_secs(15),
            || {
                fetch_from_host(&cluster, cluster.agent_hosts[i], Ipv4Addr::LOCALHOST, 8080)
                    .ok()
                    .flatten()
            },
        )?;
        assert!(
            hostnames.contains(&body),
            "127.0.0.1:8080 answered {body:?}"
        );
    }
    // Host mode: only n2, where solo runs, answers 8081, with solo itself.
    let n2 = cluster.c.net.host(cluster.agent_hosts[1]).address();
    let body = wait_until("n2:8081 to answer", Duration::from_secs(15), || {
        fetch_from_host(&cluster, client, n2, 8081).ok().flatten()
    })?;
    assert_eq!(body, solo.hostname());
    let n2_loopback = wait_until(
        "n2's 127.0.0.1:8081 to answer",
        Duration::from_secs(15),
        || {
            fetch_from_host(&cluster, cluster.agent_hosts[1], Ipv4Addr::LOCALHOST, 8081)
                .ok()
                .flatten()
        },
    )?;
    assert_eq!(n2_loopback, solo.hostname());
    for i in [0, 2] {
        let addr = cluster.c.net.host(cluster.agent_hosts[i]).address();
        assert_eq!(
            fetch_from_host(&cluster, client, addr, 8081)?,
            None,
            "{addr}:8081"
        );
        let loopback =
            fetch_from_host(&cluster, cluster.agent_hosts[i], Ipv4Addr::LOCALHOST, 8081)?;
        assert_eq!(loopback, None, "127.0.0.1:8081 on {addr}");
    }

    // kill -9 of n2's agent and a restart: the same container keeps answering
    // on both ports (the agent re-adopts it and rebuilds its rules and DNS).
    cluster.agent(1)?.kill9()?;
    cluster.agent(1)?.restart()?;
    for port in [8080, 8081] {
        wait_until(
            &format!("n2:{port} after the agent restart"),
            Duration::from_secs(15),
            || fetch_from_host(&cluster, client, n2, port).ok().flatten(),
        )?;
    }
    let after = only(running(&cluster, "solo", "berth")?)?;
    assert_eq!(after.id, solo.id, "the task was re-adopted, not replaced");
    assert_eq!(
        fetch_from_host(&cluster, client, n2, 8081)?,
        Some(solo.hostname())
    );
    Ok(())
}

/// What of berth's is left on a host: links, routes, neighbour and FDB entries
/// on its devices, the nft table.
fn leftovers(cluster: &Cluster, i: usize) -> Result<Vec<String>> {
    let host = cluster.c.net.host(cluster.agent_hosts[i]);
    let text = |program: &str, args: &[&str]| -> Result<String> {
        Ok(String::from_utf8_lossy(&host.run_unchecked(program, args)?.stdout).to_string())
    };
    let mut left = Vec::new();
    for line in text("ip", &["-o", "link"])?.lines() {
        let name = line.split(':').nth(1).unwrap_or_default().trim();
        if ["bb-", "bv-", "bh-"].iter().any(|p| name.starts_with(p)) {
            left.push(format!("link {name}"));
        }
    }
    left.extend(
        text("ip", &["route", "show", "proto", "213"])?
            .lines()
            .map(|l| format!("route {l}")),
    );
    let neigh = text("ip", &["neigh"])?;
    let fdb = text("bridge", &["fdb"])?;
    for line in neigh.lines().chain(fdb.lines()) {
        if [" dev bv-", " dev bb-", " dev bh-"]
            .iter()
            .any(|d| line.contains(d))
        {
            left.push(format!("neigh/fdb {line}"));
        }
    }
    if text("nft", &["list", "tables"])?.contains("ip berth") {
        left.push("nft table ip berth".into());
    }
    Ok(left)
}

#[test]
fn networks_are_isolated_and_removing_everything_leaves_nothing() -> Result<()> {
    let cluster = Cluster::start("ovl_isolation", 1, 2, 0)?;
    cluster.berth(&["network", "create", "front"])?;
    cluster.berth(&["network", "create", "back"])?;
    create(
        &cluster,
        "site",
        &["--network", "front", "--replicas", "2"],
        WEB,
    )?;
    create(
        &cluster,
        "friend",
        &["--network", "front", "--constraint", "node.name==n1"],
        SLEEP,
    )?;
    create(
        &cluster,
        "stranger",
        &["--network", "back", "--constraint", "node.name==n1"],
        SLEEP,
    )?;
    for (service, n) in [("site", 2), ("friend", 1), ("stranger", 1)] {
        cluster.wait_running(service, n, CONVERGE)?;
    }
    let site = running(&cluster, "site", "front")?;
    let friend = only(running(&cluster, "friend", "front")?)?;
    let stranger = only(running(&cluster, "stranger", "back")?)?;
    let agents: BTreeSet<usize> = site.iter().map(|t| t.agent).collect();
    assert_eq!(agents, BTreeSet::from([0, 1]), "site spreads: {site:?}");
    for t in &site {
        let ip = t.ip.to_string();
        // Same network: on the same host and across hosts.
        let got = wait_until(
            &format!("{ip}:80 from front"),
            Duration::from_secs(10),
            || fetch(&cluster, &friend, &ip, 80).ok().flatten(),
        )?;
        assert_eq!(got, t.hostname());
        // Another network: nothing, neither on the same host nor across.
        assert_eq!(
            fetch(&cluster, &stranger, &ip, 80)?,
            None,
            "back reached {ip}"
        );
    }
    assert_eq!(lookup(&cluster, &friend, "tasks.site")?, ips(&site));

    // Someone deletes n2's bridge: the agent's periodic resync re-creates it
    // and puts the container back on it.
    let n2 = cluster.c.net.host(cluster.agent_hosts[1]);
    let links = String::from_utf8_lossy(&n2.run("ip", &["-o", "link"])?.stdout).to_string();
    let bridge = links
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(str::trim)
        .find(|name| name.starts_with("bb-"))
        .context("n2 has a bridge")?
        .to_string();
    n2.run("ip", &["link", "del", &bridge])?;
    let remote = site.iter().find(|t| t.agent == 1).context("site on n2")?;
    let ip = remote.ip.to_string();
    let got = wait_until(
        "n2's task to be reachable again",
        Duration::from_secs(30),
        || fetch(&cluster, &friend, &ip, 80).ok().flatten(),
    )?;
    assert_eq!(got, remote.hostname());

    // Several at once, as `docker service rm a b`: a name that is no
    // service's fails the command, named, and the others go anyway.
    let missing = cluster
        .berth(&["service", "rm", "site", "nope", "friend", "stranger"])
        .expect_err("nope is no service");
    assert!(
        format!("{missing:#}").contains("not removed: nope"),
        "{missing:#}"
    );
    for network in ["front", "back"] {
        wait_until(
            &format!("network {network} removable"),
            Duration::from_secs(30),
            || cluster.berth(&["network", "rm", network]).ok(),
        )?;
    }
    for i in 0..2 {
        let clean = wait_until(
            &format!("n{} to be clean", i + 1),
            Duration::from_secs(30),
            || leftovers(&cluster, i).ok().filter(|l| l.is_empty()),
        );
        if clean.is_err() {
            bail!("n{} keeps {:?}", i + 1, leftovers(&cluster, i)?);
        }
    }
    Ok(())
}

#[test]
fn a_network_out_of_vips_says_so_in_service_ps() -> Result<()> {
    let cluster = Cluster::start("ovl_exhaust", 1, 1, 0)?;
    // A /24 keeps its top sixteenth for VIPs: 16 addresses, 15 without the
    // subnet's broadcast address.
    cluster.berth(&["network", "create", "tiny", "--subnet", "10.99.0.0/24"])?;
    for i in 0..15 {
        let name = format!("idle{i}");
        create(
            &cluster,
            &name,
            &["--network", "tiny", "--replicas", "0"],
            SLEEP,
        )?;
    }
    // VIPs go out in service-id order within one allocation round: let the
    // idle services hold theirs before the late one asks.
    wait_until("15 services to hold a VIP", CONVERGE, || {
        (0..15)
            .all(|i| {
                let out = cluster.berth(&["service", "inspect", &format!("idle{i}")]);
                let service: Option<serde_json::Value> =
                    out.ok().and_then(|o| serde_json::from_str(&o).ok());
                service.is_some_and(|s| !s["virtual_ips"]["tiny"].is_null())
            })
            .then_some(())
    })?;
    create(&cluster, "late", &["--network", "tiny"], SLEEP)?;
    let row = wait_until("late's task to say why it waits", CONVERGE, || {
        let rows = cluster.ps("late").ok()?;
        rows.into_iter().find(|t| t.message.contains("no free VIP"))
    })?;
    assert_eq!(row.state, "pending", "{row:?}");
    assert!(row.message.contains("network tiny"), "{}", row.message);
    // Removing one service frees its VIP: the task gets one and runs.
    cluster.berth(&["service", "rm", "idle0"])?;
    cluster.wait_running("late", 1, CONVERGE)?;
    Ok(())
}

/// The data-plane conflict `berth node ls --format json` shows for node `name`.
fn conflict_of(cluster: &Cluster, name: &str) -> Option<String> {
    cluster
        .nodes()
        .ok()?
        .iter()
        .find(|n| n["name"] == name)
        .map(|n| {
            n["dataplane_conflict"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
}

#[test]
fn a_vxlan_conflict_is_a_node_condition_and_tasks_wait_instead_of_failing() -> Result<()> {
    let cluster = Cluster::start("ovl_conflict", 1, 2, 0)?;
    create(&cluster, "warm", &["--replicas", "2"], SLEEP)?;
    cluster.wait_running("warm", 2, CONVERGE)?;
    // What Docker Swarm's ingress does to a host: another VXLAN device takes
    // the cluster's VNI on its port (here after berth's own is gone, as on a
    // host where Swarm was there first).
    let n1 = cluster.c.net.host(cluster.agent_hosts[0]);
    n1.run(
        "sh",
        &[
            "-c",
            "ip link del bv-4096 && ip link add vxforeign type vxlan id 4096 dstport 7420",
        ],
    )?;
    let want = "UDP 7420 VNI 4096 is used by another VXLAN device";
    wait_until("n1's data-plane conflict", Duration::from_secs(30), || {
        (conflict_of(&cluster, "n1")? == want).then_some(())
    })?;
    assert!(
        cluster.berth(&["node", "ls"])?.contains(want),
        "node ls names the conflict"
    );
    assert_eq!(conflict_of(&cluster, "n2").as_deref(), Some(""));

    // A task that may only run on n1 waits, saying why; nothing crash-loops.
    create(
        &cluster,
        "pinned",
        &["--constraint", "node.name==n1"],
        SLEEP,
    )?;
    let reason = wait_until("pinned to wait with a reason", CONVERGE, || {
        let tasks = cluster.ps("pinned").ok()?;
        tasks
            .iter()
            .find(|t| t.message.contains("data plane"))
            .map(|t| t.message.clone())
    })?;
    assert!(reason.contains(want), "{reason}");
    std::thread::sleep(Duration::from_secs(2));
    let tasks = cluster.ps("pinned")?;
    assert_eq!(tasks.len(), 1, "no crash loop: {tasks:?}");
    assert_eq!(tasks[0].state, "pending", "{tasks:?}");

    // The other device goes: the condition clears and the task runs.
    n1.run("ip", &["link", "del", "vxforeign"])?;
    wait_until("n1's conflict to clear", Duration::from_secs(30), || {
        conflict_of(&cluster, "n1")?.is_empty().then_some(())
    })?;
    cluster.wait_running("pinned", 1, CONVERGE)?;
    Ok(())
}

#[test]
fn the_overlay_works_behind_a_forward_drop_policy() -> Result<()> {
    let cluster = Cluster::start("ovl_fwdrop", 1, 2, 0)?;
    // What Docker does to a host's firewall, after berth started.
    for &h in &cluster.agent_hosts {
        cluster
            .c
            .net
            .host(h)
            .run("iptables", &["-P", "FORWARD", "DROP"])?;
    }
    create(
        &cluster,
        "web",
        &["--constraint", "node.name==n2", "--publish", "8090:80"],
        WEB,
    )?;
    cluster.wait_running("web", 1, CONVERGE)?;
    let web = only(running(&cluster, "web", "berth")?)?;
    // n1 has no web task: its published port forwards over the VXLAN to n2.
    let n1 = cluster.c.net.host(cluster.agent_hosts[0]).address();
    let client = cluster.c.client_host();
    let body = wait_until(
        "n1:8090 through FORWARD DROP",
        Duration::from_secs(30),
        || fetch_from_host(&cluster, client, n1, 8090).ok().flatten(),
    )?;
    assert_eq!(body, web.hostname());
    let rules = cluster
        .c
        .net
        .host(cluster.agent_hosts[0])
        .run("iptables", &["-S", "FORWARD"])?;
    let rules = String::from_utf8_lossy(&rules.stdout).to_string();
    assert!(rules.contains("-P FORWARD DROP"), "{rules}");
    assert!(
        rules.contains("-A FORWARD -i bb-+ -m comment --comment berth -j ACCEPT"),
        "{rules}"
    );
    Ok(())
}
