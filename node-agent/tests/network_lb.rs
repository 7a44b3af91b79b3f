//! The nftables load balancer against the real kernel, inside test hosts: three
//! hosts with the overlay (networks A and B), backends answering with their own
//! address, a fourth host as a plain underlay client. VIPs spread over every
//! backend (also on the client's own bridge), a removed backend gets no new
//! connections, an empty VIP refuses at once, published ports answer on every
//! host (ingress) or only where a task runs (host mode), networks cannot reach
//! each other, apply is idempotent and remove leaves nothing.

#[path = "support/network.rs"]
mod network;
#[path = "support/lb.rs"]
mod serve;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Result, ensure};
use berth_agent::dataplane::lb::{self, LbPlan, LoadBalancer, Protocol, PublishedRule, VipRule};
use berth_agent::dataplane::{AttachRequest, LocalPlan, NetworkPlan, RemoteNode};
use berth_proto::net::Block;
use berth_testhost::TestNet;
use berth_testhost::netruntime::run;
use network::{Agent, Container, sh};
use serve::{Server, spread, tcp_ask, tcp_outcome, udp_ask};

const A: u32 = 4097;
const B: u32 = 4098;
/// Hosts with the overlay; host 3 is an underlay client only.
const OVERLAY: [usize; 3] = [0, 1, 2];
const PORT: u16 = 80;

/// Host `i`'s block in network `vni`: 10.20.(i+1).0/24 in A, 10.30.(i+1).0/24 in B.
fn block(vni: u32, i: usize) -> Block {
    let second = if vni == A { 20 } else { 30 };
    Block::containing(Ipv4Addr::new(10, second, i as u8 + 1, 0), 24).expect("block")
}

fn addr(vni: u32, i: usize, last: u8) -> Ipv4Addr {
    let net = block(vni, i).network().octets();
    Ipv4Addr::new(net[0], net[1], net[2], last)
}

fn overlay_plan(net: &TestNet, i: usize) -> LocalPlan {
    let network = |vni: u32| NetworkPlan {
        name: format!("n{vni}"),
        vni,
        port: 7420,
        local_blocks: vec![block(vni, i)],
        underlay_ip: net.host(i).address(),
        remotes: OVERLAY
            .iter()
            .filter(|&&j| j != i)
            .map(|&j| RemoteNode {
                underlay_ip: net.host(j).address(),
                blocks: vec![block(vni, j)],
            })
            .collect(),
    };
    LocalPlan {
        networks: vec![network(A), network(B)],
    }
}

/// A container with a backend server in network `vni` on host `i`.
struct Task {
    container: Container,
    _server: Server,
}

struct Cluster {
    net: TestNet,
    agents: Vec<Agent>,
}

impl Cluster {
    /// Hosts with strict reverse-path filtering; `bridge_nf`: whether bridged
    /// frames pass the IP hooks. This kernel has br_netfilter built in and on by
    /// default; most hosts have it off, and then a hairpin reply really bypasses
    /// conntrack unless masqueraded. Every case runs both ways.
    fn new(name: &str, bridge_nf: bool) -> Result<Cluster> {
        let net = TestNet::new(name, 4)?;
        let mut agents = Vec::new();
        let bridge_nf = format!("net.bridge.bridge-nf-call-iptables={}", u8::from(bridge_nf));
        for i in OVERLAY {
            net.host(i).run("sysctl", &["-qw", &bridge_nf])?;
            net.host(i)
                .run("sysctl", &["-qw", "net.ipv4.conf.all.rp_filter=1"])?;
            let agent = Agent::start(net.host(i))?;
            agent.reconcile(&overlay_plan(&net, i))?;
            agents.push(agent);
        }
        Ok(Cluster { net, agents })
    }

    /// A bare container at `addr(vni, i, last)`, attached on host `i`.
    fn container(&self, vni: u32, i: usize, last: u8) -> Result<Container> {
        let ip = addr(vni, i, last);
        let c = Container::new(&format!("c{vni}-{}-{last}", i + 1), ip)?;
        self.agents[i].attach(AttachRequest {
            container: c.id.clone(),
            netns: c.path(),
            vni,
            address: ip,
            prefix: 24,
            gateway: block(vni, i).gateway(),
            position: 0,
            subnet: block(vni, i).net(),
        })?;
        Ok(c)
    }

    fn task(&self, vni: u32, i: usize, last: u8) -> Result<Task> {
        let container = self.container(vni, i, last)?;
        let server = Server::start(&container, PORT)?;
        Ok(Task {
            container,
            _server: server,
        })
    }

    fn apply(&self, i: usize, plan: &LbPlan) -> Result<bool> {
        let plan = plan.clone();
        Ok(run(&self.agents[i].rt, async move {
            LoadBalancer::system()?.apply(&plan).await
        })?)
    }

    fn apply_all(&self, plan: &LbPlan) -> Result<()> {
        for i in OVERLAY {
            self.apply(i, plan)?;
        }
        Ok(())
    }

    fn remove_all(&self) -> Result<()> {
        for i in OVERLAY {
            run(&self.agents[i].rt, async {
                LoadBalancer::system()?.remove().await
            })?;
            let ruleset = sh(self.net.host(i), "nft", &["list", "ruleset"])?;
            ensure!(
                !ruleset.contains("berth"),
                "h{}: left after remove: {ruleset}",
                i + 1
            );
        }
        Ok(())
    }

    /// Runs `f` in the underlay client host (h4).
    fn in_client<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        self.net.host(3).net(f)
    }

    /// The distinct answers to `n` TCP connections from h4 to host `i`'s port.
    fn ask_from_client(&self, i: usize, port: u16, n: usize) -> Result<BTreeSet<String>> {
        let to = self.underlay(i, port);
        self.in_client(move || {
            (0..n)
                .map(|_| tcp_ask(to, Duration::from_secs(3)))
                .collect()
        })?
    }

    fn underlay(&self, i: usize, port: u16) -> SocketAddr {
        SocketAddr::from((self.net.host(i).address(), port))
    }
}

fn vip(service: &str, vni: u32, vip: Ipv4Addr, backends: &[&Task]) -> VipRule {
    VipRule {
        service: service.into(),
        vni,
        vip,
        backends: backends.iter().map(|t| t.container.ip).collect(),
    }
}

fn names(tasks: &[&Task]) -> BTreeSet<String> {
    tasks.iter().map(|t| t.container.ip.to_string()).collect()
}

#[test]
fn vip_spreads_over_every_backend_and_follows_the_plan() -> Result<()> {
    lb_vip(false)
}

#[test]
fn vip_spreads_over_every_backend_and_follows_the_plan_with_br_netfilter() -> Result<()> {
    lb_vip(true)
}

fn lb_vip(bridge_nf: bool) -> Result<()> {
    let c = Cluster::new(&format!("lb_vip_{}", u8::from(bridge_nf)), bridge_nf)?;
    let web = [c.task(A, 0, 10)?, c.task(A, 1, 10)?, c.task(A, 2, 10)?];
    let all: Vec<&Task> = web.iter().collect();
    let (client1, client3) = (c.container(A, 0, 20)?, c.container(A, 2, 20)?);
    let web_vip = Ipv4Addr::new(10, 255, 0, 2);
    let empty_vip = Ipv4Addr::new(10, 255, 0, 3);
    let mut plan = LbPlan {
        networks: vec![A, B],
        vips: vec![vip("web", A, web_vip, &all), vip("idle", A, empty_vip, &[])],
        published: vec![],
    };
    for i in OVERLAY {
        ensure!(c.apply(i, &plan)?, "h{}: first apply wrote nothing", i + 1);
        ensure!(!c.apply(i, &plan)?, "h{}: second apply rewrote", i + 1);
    }
    // A rule added behind our back is noticed (read-back) and replaced.
    let h1 = c.net.host(0);
    h1.run("nft", &["add", "rule", "ip", "berth", "forward", "drop"])?;
    ensure!(c.apply(0, &plan)?, "tampered table left as is");
    ensure!(!c.apply(0, &plan)?, "restored table rewritten");
    let forward = sh(h1, "nft", &["list", "chain", "ip", "berth", "forward"])?;
    ensure!(!forward.contains("\t\tdrop"), "{forward}");
    // Every backend answers, from a client on h1 (web[0] on its own bridge:
    // hairpin) and from one on h3; any port of the VIP works.
    let to = SocketAddr::from((web_vip, PORT));
    for client in [&client1, &client3] {
        let seen = spread(client, to, 40)?;
        let got: BTreeSet<String> = seen.keys().cloned().collect();
        ensure!(got == names(&all), "{}: {seen:?}", client.ip);
    }
    // A UDP client that keeps its socket stays on one backend (conntrack); when
    // that backend leaves the plan, its flow is forgotten and the next datagram
    // lands on another one (without it, conntrack would keep it on the old
    // backend, which still answers here).
    let sock = client1.inside(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))??;
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    let ask = |sock: &UdpSocket| -> Result<String> {
        sock.send_to(b"?", to)?;
        let mut buf = [0u8; 64];
        let (n, _) = sock.recv_from(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).to_string())
    };
    let first = ask(&sock)?;
    for _ in 0..5 {
        ensure!(
            ask(&sock)? == first,
            "a UDP flow moved while its backend stayed"
        );
    }
    let staying: Vec<&Task> = web
        .iter()
        .filter(|t| t.container.ip.to_string() != first)
        .collect();
    let before = plan.clone();
    plan.vips[0] = vip("web", A, web_vip, &staying);
    c.apply_all(&plan)?;
    let gone = lb::removed_backends(&before, &plan);
    ensure!(
        gone.iter().map(|ip| ip.to_string()).eq([first.clone()]),
        "{gone:?}"
    );
    for i in OVERLAY {
        let gone = gone.clone();
        run(&c.agents[i].rt, async move {
            LoadBalancer::system()?.forget_udp_flows(gone).await
        })?;
    }
    let next = ask(&sock)?;
    ensure!(
        next != first,
        "the UDP flow stayed on removed backend {first}"
    );
    ensure!(names(&staying).contains(&next), "{next}");
    plan = before;
    c.apply_all(&plan)?;

    // A task reaching itself through a VIP (hairpin to the very same address).
    let self_vip = Ipv4Addr::new(10, 255, 0, 4);
    plan.vips.push(vip("self", A, self_vip, &[&web[1]]));
    c.apply_all(&plan)?;
    let to_self = SocketAddr::from((self_vip, PORT));
    let seen = spread(&web[1].container, to_self, 5)?;
    ensure!(
        seen.keys().eq([&web[1].container.ip.to_string()]),
        "{seen:?}"
    );
    // Without web[1] in the plan, no new connection reaches it.
    plan.vips[0] = vip("web", A, web_vip, &[&web[0], &web[2]]);
    c.apply_all(&plan)?;
    for client in [&client1, &client3] {
        let seen = spread(client, to, 30)?;
        let got: BTreeSet<String> = seen.keys().cloned().collect();
        ensure!(got == names(&[&web[0], &web[2]]), "{}: {seen:?}", client.ip);
    }
    // A VIP without backends refuses at once (TCP reset), it does not time out.
    let (outcome, took) = tcp_outcome(
        &client3,
        SocketAddr::from((empty_vip, PORT)),
        Duration::from_secs(3),
    )?;
    let err = format!("{:#}", outcome.expect_err("an empty vip answered"));
    ensure!(err.contains("refused"), "{err}");
    ensure!(took < Duration::from_secs(1), "refusal took {took:?}");
    c.remove_all()?;
    // The table is gone: the VIP is just an unknown address again.
    ensure!(
        tcp_outcome(&client1, to, Duration::from_millis(500))?
            .0
            .is_err()
    );
    c.remove_all()
}

#[test]
fn published_ports_answer_on_every_host_or_only_where_a_task_runs() -> Result<()> {
    lb_published(false)
}

#[test]
fn published_ports_answer_on_every_host_or_only_where_a_task_runs_with_br_netfilter() -> Result<()>
{
    lb_published(true)
}

fn lb_published(bridge_nf: bool) -> Result<()> {
    let c = Cluster::new(&format!("lb_published_{}", u8::from(bridge_nf)), bridge_nf)?;
    let web = [c.task(A, 1, 10)?, c.task(A, 2, 10)?];
    let both: Vec<&Task> = web.iter().collect();
    let ingress = |backends: &[&Task]| {
        let backends: Vec<Ipv4Addr> = backends.iter().map(|t| t.container.ip).collect();
        vec![
            PublishedRule {
                service: "web".into(),
                protocol: Protocol::Tcp,
                published_port: 8080,
                target_port: PORT,
                backends: backends.clone(),
            },
            PublishedRule {
                service: "web".into(),
                protocol: Protocol::Udp,
                published_port: 8053,
                target_port: PORT,
                backends,
            },
        ]
    };
    // Host mode on 9090: only the hosts with a task have the rule, with their own.
    let host_mode = |t: &Task| PublishedRule {
        service: "api".into(),
        protocol: Protocol::Tcp,
        published_port: 9090,
        target_port: PORT,
        backends: vec![t.container.ip],
    };
    for i in OVERLAY {
        let mut published = ingress(&both);
        if i > 0 {
            published.push(host_mode(&web[i - 1]));
        }
        let plan = LbPlan {
            networks: vec![A, B],
            vips: vec![],
            published,
        };
        ensure!(c.apply(i, &plan)?, "h{}: first apply wrote nothing", i + 1);
        ensure!(!c.apply(i, &plan)?, "h{}: second apply rewrote", i + 1);
    }
    // Ingress: every host answers on 8080 from every backend (h1 has none of
    // its own: all of its connections cross the overlay), and on 8053/udp.
    for i in OVERLAY {
        let answers = c.ask_from_client(i, 8080, 30)?;
        ensure!(answers == names(&both), "h{} ingress: {answers:?}", i + 1);
        let to = c.underlay(i, 8053);
        let answer = c.in_client(move || udp_ask(to, Duration::from_secs(1)))??;
        ensure!(names(&both).contains(&answer), "h{} udp: {answer}", i + 1);
    }
    // The host itself reaches the published port on its own underlay address.
    let to = c.underlay(0, 8080);
    let answer = c
        .net
        .host(0)
        .net(move || tcp_ask(to, Duration::from_secs(3)))??;
    ensure!(names(&both).contains(&answer), "h1 itself: {answer}");
    // ...but not on loopback (the host's own 127/8 is left alone: refused, no hang).
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
    let local = c
        .net
        .host(0)
        .net(move || tcp_ask(to, Duration::from_secs(2)))?;
    let err = format!("{:#}", local.expect_err("127.0.0.1:8080 answered"));
    ensure!(err.contains("refused"), "{err}");
    // Published ports are public: a container of network B reaches A's service
    // through its own gateway, although B cannot reach A otherwise.
    let b = c.container(B, 0, 30)?;
    let to = SocketAddr::from((block(B, 0).gateway(), 8080));
    let answers = spread(&b, to, 10)?;
    ensure!(
        answers.keys().all(|a| names(&both).contains(a)),
        "{answers:?}"
    );
    // Host mode: h2 and h3 answer with their own task only, h1 refuses.
    for i in [1, 2] {
        let answers = c.ask_from_client(i, 9090, 10)?;
        ensure!(answers == names(&[&web[i - 1]]), "h{}: {answers:?}", i + 1);
    }
    let to = c.underlay(0, 9090);
    let refused = c.in_client(move || tcp_ask(to, Duration::from_secs(1)))?;
    ensure!(
        refused.is_err(),
        "h1 answered a host-mode port it runs no task for"
    );
    c.remove_all()
}

#[test]
fn networks_are_isolated_from_each_other_but_not_within() -> Result<()> {
    lb_isolation(false)
}

#[test]
fn networks_are_isolated_from_each_other_but_not_within_with_br_netfilter() -> Result<()> {
    lb_isolation(true)
}

fn lb_isolation(bridge_nf: bool) -> Result<()> {
    let c = Cluster::new(&format!("lb_isolation_{}", u8::from(bridge_nf)), bridge_nf)?;
    let (a1, a2) = (c.task(A, 0, 10)?, c.task(A, 1, 10)?);
    let (b1, b2) = (c.task(B, 0, 10)?, c.task(B, 1, 10)?);
    let reach = |from: &Task, to: &Task| -> Result<bool> {
        let to = SocketAddr::from((to.container.ip, PORT));
        Ok(
            tcp_outcome(&from.container, to, Duration::from_millis(700))?
                .0
                .is_ok(),
        )
    };
    // Without the load balancer the host routes between its bridges: the
    // isolation below is the table's doing.
    ensure!(reach(&a1, &b1)?, "a1 -> b1 before the table");
    let b_vip = Ipv4Addr::new(10, 255, 0, 9);
    let plan = LbPlan {
        networks: vec![A, B],
        vips: vec![vip("db", B, b_vip, &[&b1, &b2])],
        published: vec![],
    };
    c.apply_all(&plan)?;
    for (from, to, want) in [
        (&a1, &a2, true),
        (&a2, &a1, true),
        (&b1, &b2, true),
        (&b2, &b1, true),
        (&a1, &b1, false),
        (&b1, &a1, false),
        (&a1, &b2, false),
        (&b2, &a1, false),
        (&a2, &b1, false),
    ] {
        let got = reach(from, to)?;
        ensure!(
            got == want,
            "{} -> {}: reached {got}, want {want}",
            from.container.ip,
            to.container.ip
        );
    }
    // B's VIP serves B, not A.
    let to = SocketAddr::from((b_vip, PORT));
    ensure!(
        tcp_outcome(&b2.container, to, Duration::from_secs(2))?
            .0
            .is_ok()
    );
    let from_a = tcp_outcome(&a1.container, to, Duration::from_millis(700))?.0;
    ensure!(from_a.is_err(), "a1 reached B's vip: {from_a:?}");
    c.remove_all()?;
    ensure!(reach(&a1, &b1)?, "a1 -> b1 after remove");
    Ok(())
}
