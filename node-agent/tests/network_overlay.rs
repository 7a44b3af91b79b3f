//! The overlay data plane against the real kernel, inside test hosts: three hosts
//! reconcile their plans, containers (bare network namespaces with a veth) talk
//! across the VXLAN, MTU is underlay − 50, reconcile is idempotent, stale nodes
//! are forgotten, foreign objects are left alone, a restart repairs everything.

#[path = "support/network.rs"]
mod network;

use std::net::Ipv4Addr;

use anyhow::Result;
use berth_agent::dataplane::{Netlink, RtNetlink};
use berth_testhost::TestNet;
use network::{Agent, Container, block, plan_for, probe, sh};

const ALL: [usize; 3] = [0, 1, 2];

/// Three hosts with their overlays reconciled and one container each (a second
/// one on h1), containers numbered .10/.11 in their host's block.
struct Cluster {
    net: TestNet,
    agents: Vec<Agent>,
    containers: Vec<(usize, Container)>,
}

fn cluster(name: &str) -> Result<Cluster> {
    let net = TestNet::new(name, 3)?;
    let mut agents = Vec::new();
    for i in ALL {
        let agent = Agent::start(net.host(i))?;
        let changes = agent.reconcile(&plan_for(&net, i, &ALL))?;
        assert!(!changes.is_empty());
        agents.push(agent);
    }
    let mut containers = Vec::new();
    for (i, last) in [(0, 10), (0, 11), (1, 10), (2, 10)] {
        let ip = Ipv4Addr::new(10, 20, i as u8 + 1, last);
        let c = Container::new(&format!("c{}-{last}", i + 1), ip)?;
        let veth = agents[i].attach(c.request(i))?;
        assert!(veth.starts_with("bh-"), "{veth}");
        containers.push((i, c));
    }
    Ok(Cluster {
        net,
        agents,
        containers,
    })
}

#[test]
fn containers_on_three_hosts_talk_across_vxlan_with_mtu_underlay_minus_50() -> Result<()> {
    let c = cluster("overlay_talk")?;
    // Every container reaches every other one (same host through the bridge,
    // other hosts through the VXLAN), with a small datagram.
    for (_, a) in &c.containers {
        for (_, b) in &c.containers {
            if a.ip != b.ip {
                probe(a, b, 32)?;
            }
        }
    }
    // Underlay MTU is 1500: everything of ours is 1450, explicitly.
    for i in ALL {
        let host = c.net.host(i);
        let vxlan = sh(host, "ip", &["-d", "link", "show", "bv-4097"])?;
        for want in [
            "mtu 1450",
            "vxlan id 4097",
            "local 198.18.0.",
            "dstport 7420",
            "nolearning",
        ] {
            assert!(vxlan.contains(want), "h{}: no {want:?} in {vxlan}", i + 1);
        }
        let bridge = sh(host, "ip", &["-d", "link", "show", "bb-4097"])?;
        assert!(bridge.contains("mtu 1450"), "{bridge}");
        let addr = sh(host, "ip", &["-4", "-o", "addr", "show", "dev", "bb-4097"])?;
        assert!(
            addr.contains(&format!("{}/24", block(i).gateway())),
            "{addr}"
        );
    }
    let (_, c1) = &c.containers[0];
    // The container end: eth0, 1450, up, with the task address and the route.
    let links = c1.inside(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                rt.block_on(async {
                    let nl = RtNetlink::new()?;
                    Ok((nl.links().await?, nl.addresses().await?, nl.routes().await?))
                })
            })
    })??;
    let (links, addrs, routes) = links;
    let eth0 = links
        .iter()
        .find(|l| l.name == "eth0")
        .expect("eth0 in the container");
    assert!(eth0.up && eth0.mtu == 1450, "{eth0:?}");
    assert!(links.iter().any(|l| l.name == "lo" && l.up), "{links:?}");
    assert!(
        addrs
            .iter()
            .any(|a| a.index == eth0.index && a.addr == c1.ip && a.prefix == 24),
        "{addrs:?}"
    );
    assert!(
        routes
            .iter()
            .any(|r| r.prefix == 0 && r.gateway == block(0).gateway()),
        "{routes:?}"
    );
    // The host end: a port of the bridge, 1450.
    let links = sh(c.net.host(0), "ip", &["-o", "link", "show", "type", "veth"])?;
    let veths: Vec<&str> = links.lines().filter(|l| l.contains(": bh-")).collect();
    assert_eq!(veths.len(), 2, "{links}");
    for line in veths {
        assert!(
            line.contains("mtu 1450") && line.contains("master bb-4097"),
            "{line}"
        );
    }
    let (_, c2) = &c.containers[2];
    let (_, c3) = &c.containers[3];
    probe(c1, c2, 1450 - 28)?;
    probe(c3, c1, 1450 - 28)?;
    // ICMP too: busybox ping from inside c1 (entered by nsenter in h1) to h3's container.
    let ns = format!("--net={}", c1.path().display());
    let target = c3.ip.to_string();
    let out = c.net.host(0).run(
        "nsenter",
        &[
            &ns, "busybox", "ping", "-c", "1", "-W", "2", "-s", "1422", &target,
        ],
    )?;
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("1 packets received"), "{out}");
    // ...and one byte more is refused at the sender (eth0's MTU is 1450).
    let err = probe(c1, c2, 1450 - 27).expect_err("a datagram over the mtu went out");
    assert!(format!("{err:#}").contains("Message too long"), "{err:#}");
    // Each host has one route, one permanent neighbour and one FDB entry per
    // remote node, and they are berth's.
    for i in ALL {
        let host = c.net.host(i);
        let routes = sh(host, "ip", &["route", "show", "proto", "213"])?;
        let neigh = sh(host, "ip", &["neigh", "show", "dev", "bv-4097"])?;
        let fdb = sh(host, "bridge", &["fdb", "show", "dev", "bv-4097"])?;
        for j in ALL.into_iter().filter(|&j| j != i) {
            let b = block(j);
            assert!(
                routes.contains(&format!("{b} via {} dev bv-4097 onlink", b.gateway())),
                "h{}: {routes}",
                i + 1
            );
            assert!(
                neigh.contains(&format!("{} lladdr", b.gateway())) && neigh.contains("PERMANENT"),
                "{neigh}"
            );
            assert!(
                fdb.contains(&format!("dst {}", c.net.host(j).address()))
                    && fdb.contains("permanent"),
                "{fdb}"
            );
        }
        assert_eq!(routes.lines().count(), 2, "{routes}");
        assert_eq!(neigh.lines().count(), 2, "{neigh}");
        assert_eq!(fdb.lines().count(), 2, "{fdb}");
    }
    // Detach takes the veth away: the container is unreachable, the others not.
    assert!(c.agents[1].detach("c2-10")?);
    assert!(!c.agents[1].detach("c2-10")?);
    assert!(probe(c1, c2, 32).is_err());
    probe(c1, c3, 32)?;
    // The sweep for namespaces that outlived their task: h1 keeps c1-10's veth
    // and loses c1-11's.
    let (_, c11) = &c.containers[1];
    probe(c11, c3, 32)?;
    let removed = c.agents[0].sweep_veths_except(&["c1-10"])?;
    assert_eq!(removed.len(), 1, "{removed:?}");
    // The gateway keeps its MAC when a port leaves (the containers' ARP caches
    // still hold it): the bridge's is set, not the lowest of its ports'.
    let mac = berth_agent::dataplane::mac::gateway_mac(c.net.host(0).address(), 4097);
    let bridge = sh(c.net.host(0), "ip", &["-o", "link", "show", "bb-4097"])?;
    assert!(
        bridge.contains(&berth_agent::dataplane::mac::format_mac(&mac)),
        "{bridge}"
    );
    assert!(probe(c11, c3, 32).is_err());
    probe(c1, c3, 32)?;
    assert!(c.agents[0].sweep_veths_except(&["c1-10"])?.is_empty());
    Ok(())
}

#[test]
fn reconcile_is_idempotent_and_removed_nodes_and_networks_go() -> Result<()> {
    let c = cluster("overlay_idem")?;
    for i in ALL {
        let before = c.agents[i].writes();
        let changes = c.agents[i].reconcile(&plan_for(&c.net, i, &ALL))?;
        assert!(changes.is_empty(), "h{}: {changes:?}", i + 1);
        assert_eq!(
            c.agents[i].writes(),
            before,
            "h{}: a second reconcile wrote",
            i + 1
        );
    }
    // h3 leaves the network: h1 forgets its route, neighbour and FDB entry.
    let h1 = c.net.host(0);
    let changes = c.agents[0].reconcile(&plan_for(&c.net, 0, &[0, 1]))?;
    assert_eq!(changes.len(), 3, "{changes:?}");
    let routes = sh(h1, "ip", &["route", "show", "proto", "213"])?;
    assert!(
        !routes.contains("10.20.3.0/24") && routes.contains("10.20.2.0/24"),
        "{routes}"
    );
    let neigh = sh(h1, "ip", &["neigh", "show", "dev", "bv-4097"])?;
    assert!(
        !neigh.contains("10.20.3.1") && neigh.contains("10.20.2.1"),
        "{neigh}"
    );
    let fdb = sh(h1, "bridge", &["fdb", "show", "dev", "bv-4097"])?;
    assert!(
        !fdb.contains("198.18.0.3") && fdb.contains("198.18.0.2"),
        "{fdb}"
    );
    let (c1, c2, c3) = (&c.containers[0].1, &c.containers[2].1, &c.containers[3].1);
    probe(c1, c2, 32)?;
    assert!(probe(c1, c3, 32).is_err(), "h1 still reaches h3's block");

    // A second network comes and goes: its devices follow the plan.
    let mut plan = plan_for(&c.net, 0, &[0, 1]);
    let mut other = plan.networks[0].clone();
    other.name = "db".into();
    other.vni = 9;
    other.local_blocks = vec!["10.30.1.0/24".parse()?];
    other.remotes.clear();
    plan.networks.push(other);
    c.agents[0].reconcile(&plan)?;
    assert!(sh(h1, "ip", &["link", "show", "bb-9"])?.contains("bb-9"));
    c.agents[0].reconcile(&plan_for(&c.net, 0, &[0, 1]))?;
    let links = sh(h1, "ip", &["-o", "link"])?;
    assert!(
        !links.contains("bb-9") && !links.contains("bv-9"),
        "{links}"
    );
    assert!(
        links.contains("bb-4097") && links.contains("bv-4097"),
        "{links}"
    );
    probe(c1, c2, 32)?;
    Ok(())
}

#[test]
fn a_restarted_agent_repairs_missing_and_stale_and_leaves_foreign_objects_alone() -> Result<()> {
    let mut c = cluster("overlay_restart")?;
    let h1 = c.net.host(0);
    // Someone else's bridge and route on h1.
    h1.run("ip", &["link", "add", "br-mine", "type", "bridge"])?;
    h1.run("ip", &["link", "set", "br-mine", "up"])?;
    h1.run("ip", &["addr", "add", "192.0.2.1/24", "dev", "br-mine"])?;
    h1.run(
        "ip",
        &[
            "route",
            "add",
            "10.99.0.0/24",
            "via",
            "192.0.2.9",
            "dev",
            "br-mine",
        ],
    )?;
    // While the agent is down: the VXLAN device vanishes (its routes, neighbour
    // and FDB entries with it), and stale berth objects appear.
    let agent = c.agents.remove(0);
    drop(agent);
    h1.run("ip", &["link", "del", "bv-4097"])?;
    h1.run("ip", &["link", "add", "bb-77", "type", "bridge"])?;
    h1.run(
        "ip",
        &[
            "route",
            "add",
            "10.20.8.0/24",
            "via",
            "10.20.8.1",
            "dev",
            "bb-4097",
            "onlink",
            "proto",
            "213",
        ],
    )?;
    h1.run("ip", &["addr", "add", "10.20.1.200/24", "dev", "bb-4097"])?;
    let (c1, c3) = (&c.containers[0].1, &c.containers[3].1);
    assert!(probe(c1, c3, 32).is_err());

    let agent = Agent::start(h1)?;
    let changes = agent.reconcile(&plan_for(&c.net, 0, &ALL))?;
    assert!(
        changes
            .iter()
            .any(|l| l.starts_with("created vxlan bv-4097")),
        "{changes:?}"
    );
    assert!(
        changes.iter().any(|l| l.starts_with("deleted link bb-77")),
        "{changes:?}"
    );
    let links = sh(h1, "ip", &["-o", "link"])?;
    assert!(
        !links.contains("bb-77") && links.contains("br-mine"),
        "{links}"
    );
    let routes = sh(h1, "ip", &["route"])?;
    assert!(
        routes.contains("10.99.0.0/24 via 192.0.2.9 dev br-mine"),
        "{routes}"
    );
    assert!(!routes.contains("10.20.8.0"), "{routes}");
    let addr = sh(h1, "ip", &["-4", "-o", "addr", "show", "dev", "bb-4097"])?;
    assert!(!addr.contains("10.20.1.200"), "{addr}");
    let fdb = sh(h1, "bridge", &["fdb", "show", "dev", "bv-4097"])?;
    assert_eq!(fdb.lines().count(), 2, "{fdb}");
    probe(c1, c3, 32)?;
    probe(c3, c1, 1450 - 28)?;
    // And once repaired, nothing more to do.
    let before = agent.writes();
    assert!(agent.reconcile(&plan_for(&c.net, 0, &ALL))?.is_empty());
    assert_eq!(agent.writes(), before);
    Ok(())
}
