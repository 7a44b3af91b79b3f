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
use berth_testhost::{Cut, wait_until};

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
    let mut args = vec!["service", "create", name, "--image", &cluster.image];
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
        let address = t
            .addresses
            .get(network)
            .with_context(|| format!("task {} has no address in {network}", t.id))?;
        let ip = address
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("task {} address {address:?}", t.id))?;
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
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} {port}");
    let out = cluster.exec(from.agent, &from.id, &["sh", "-c", &script])?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim().to_string())
        .filter(|b| !b.is_empty()))
}

/// The IPv4 addresses `nslookup NAME` prints inside `from`'s container (through
/// the resolv.conf the agent gave it).
fn lookup(cluster: &Cluster, from: &Running, name: &str) -> Result<BTreeSet<Ipv4Addr>> {
    let out = cluster.exec(from.agent, &from.id, &["nslookup", name])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut seen_name = false;
    let mut ips = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("Name:") {
            seen_name = true;
        } else if seen_name
            && let Some(rest) = line.strip_prefix("Address:")
            && let Ok(ip) = rest.trim().parse()
        {
            ips.insert(ip);
        }
    }
    Ok(ips)
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
    // tasks.web lists every replica.
    assert_eq!(lookup(&cluster, &client, "tasks.web")?, ips(&web));

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

    // Scale down: the stopped replica leaves the answers within 1 s.
    cluster.berth(&["service", "scale", "web=1"])?;
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
    assert!(took < Duration::from_secs(1), "left DNS after {took:?}");
    let stays = left.iter().next().copied().context("one left")?;
    let survivor = web
        .iter()
        .find(|t| t.ip == stays)
        .context("survivor")?
        .clone();

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
