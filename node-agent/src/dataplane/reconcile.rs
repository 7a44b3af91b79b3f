//! Wanted state from the plan, diffed against a kernel dump, applied with
//! replace semantics; only berth-owned objects are ever deleted.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use tracing::{debug, info};

use super::error::NetworkError;
use super::mac::{format_mac, gateway_mac, vtep_mac};
use super::names::{VXLAN_OVERHEAD, bridge_name, owned_vni, vxlan_name};
use super::netlink::{
    Address, Fdb, Link, LinkKind, LinkUpdate, Neighbour, Netlink, Route, VxlanInfo, VxlanSpec,
};
use super::plan::{LocalPlan, NetworkPlan};

type R<T> = Result<T, NetworkError>;

/// Applies `plan`; returns one line per write.
pub(super) async fn reconcile<N: Netlink>(nl: &N, plan: &LocalPlan) -> R<Vec<String>> {
    plan.validate()?;
    let mut changes = Vec::new();
    if nl.enable_forwarding().await? {
        changes.push("enabled ipv4 forwarding".to_string());
    }

    // Networks that left the plan: their devices go, and the kernel takes their
    // routes, neighbour and FDB entries with them.
    let wanted_vnis: BTreeSet<u32> = plan.networks.iter().map(|n| n.vni).collect();
    for link in nl.links().await? {
        if owned_vni(&link.name).is_some_and(|vni| !wanted_vnis.contains(&vni)) {
            delete_link(nl, &link, &mut changes).await?;
        }
    }

    let addresses = nl.addresses().await?;
    let mut wanted_routes = BTreeSet::new();
    for net in &plan.networks {
        let links = nl.links().await?;
        let (lower, underlay_mtu) = underlay(&links, &addresses, net)?;
        let mtu = underlay_mtu.checked_sub(VXLAN_OVERHEAD).ok_or_else(|| {
            NetworkError::Kernel(format!(
                "network {}: underlay mtu {underlay_mtu} is too small for vxlan",
                net.name
            ))
        })?;
        let vxlan = ensure_vxlan(nl, &links, net, lower, mtu, &mut changes).await?;
        let bridge = ensure_bridge(nl, net, mtu, &mut changes).await?;
        sync_addresses(nl, &addresses, bridge, net, &mut changes).await?;
        sync_neighbours(nl, vxlan, net, &mut changes).await?;
        sync_fdb(nl, vxlan, net, &mut changes).await?;
        for remote in &net.remotes {
            for block in &remote.blocks {
                wanted_routes.insert(Route {
                    dst: block.network(),
                    prefix: block.prefix_len(),
                    gateway: block.gateway(),
                    oif: vxlan,
                });
            }
        }
    }
    sync_routes(nl, &wanted_routes, &mut changes).await?;
    if changes.is_empty() {
        debug!(networks = plan.networks.len(), "overlay in place");
    } else {
        info!(
            networks = plan.networks.len(),
            writes = changes.len(),
            "overlay reconciled"
        );
    }
    Ok(changes)
}

/// The link that carries the network's underlay address, and its MTU.
fn underlay(links: &[Link], addresses: &[Address], net: &NetworkPlan) -> R<(u32, u32)> {
    let index = addresses
        .iter()
        .find(|a| a.addr == net.underlay_ip)
        .map(|a| a.index)
        .ok_or_else(|| {
            NetworkError::Kernel(format!(
                "network {}: no link on this host has the underlay address {}",
                net.name, net.underlay_ip
            ))
        })?;
    let link = links.iter().find(|l| l.index == index).ok_or_else(|| {
        NetworkError::Kernel(format!(
            "network {}: link {index} with {} vanished",
            net.name, net.underlay_ip
        ))
    })?;
    Ok((link.index, link.mtu))
}

async fn delete_link<N: Netlink>(nl: &N, link: &Link, changes: &mut Vec<String>) -> R<()> {
    NetworkError::gone_is_done(nl.del_link(link.index).await)?;
    info!(link = %link.name, "deleted stale link");
    changes.push(format!("deleted link {}", link.name));
    Ok(())
}

fn find<'a>(links: &'a [Link], name: &str) -> Option<&'a Link> {
    links.iter().find(|l| l.name == name)
}

async fn index_of<N: Netlink>(nl: &N, name: &str) -> R<u32> {
    let links = nl.links().await?;
    find(&links, name)
        .map(|l| l.index)
        .ok_or_else(|| NetworkError::Kernel(format!("link {name} missing right after creating it")))
}

/// Brings an existing link's MTU, MAC and state to what is wanted.
async fn update_link<N: Netlink>(
    nl: &N,
    link: &Link,
    mtu: u32,
    mac: Option<&[u8]>,
    changes: &mut Vec<String>,
) -> R<()> {
    let update = LinkUpdate {
        mtu: (link.mtu != mtu).then_some(mtu),
        mac: mac
            .filter(|m| link.mac.as_deref() != Some(*m))
            .map(|m| m.to_vec()),
        up: !link.up,
        ..LinkUpdate::default()
    };
    if update != LinkUpdate::default() {
        nl.set_link(link.index, &update).await?;
        changes.push(format!("updated link {} ({update:?})", link.name));
    }
    Ok(())
}

async fn ensure_vxlan<N: Netlink>(
    nl: &N,
    links: &[Link],
    net: &NetworkPlan,
    lower: u32,
    mtu: u32,
    changes: &mut Vec<String>,
) -> R<u32> {
    let name = vxlan_name(net.vni);
    let mac = vtep_mac(net.underlay_ip, net.vni);
    let wanted = VxlanInfo {
        vni: net.vni,
        local: Some(net.underlay_ip),
        port: net.port,
        learning: false,
        lower: Some(lower),
    };
    if let Some(link) = find(links, &name) {
        if link.kind == LinkKind::Vxlan(wanted.clone()) {
            update_link(nl, link, mtu, Some(&mac), changes).await?;
            return Ok(link.index);
        }
        // VNI, port, local address and lower device cannot change in place.
        info!(link = %name, have = ?link.kind, want = ?wanted, "re-creating vxlan device");
        delete_link(nl, link, changes).await?;
    }
    let spec = VxlanSpec {
        name: name.clone(),
        vni: net.vni,
        port: net.port,
        local: net.underlay_ip,
        lower,
        mtu,
        mac,
    };
    nl.add_vxlan(&spec).await?;
    changes.push(format!(
        "created vxlan {name} (vni {}, local {}, mtu {mtu}, mac {})",
        net.vni,
        net.underlay_ip,
        format_mac(&mac)
    ));
    let index = index_of(nl, &name).await?;
    nl.set_link(
        index,
        &LinkUpdate {
            up: true,
            ..LinkUpdate::default()
        },
    )
    .await?;
    changes.push(format!("set {name} up"));
    Ok(index)
}

async fn ensure_bridge<N: Netlink>(
    nl: &N,
    net: &NetworkPlan,
    mtu: u32,
    changes: &mut Vec<String>,
) -> R<u32> {
    let name = bridge_name(net.vni);
    let mac = gateway_mac(net.underlay_ip, net.vni);
    let links = nl.links().await?;
    if let Some(link) = find(&links, &name) {
        if link.kind == LinkKind::Bridge {
            update_link(nl, link, mtu, Some(&mac), changes).await?;
            return Ok(link.index);
        }
        delete_link(nl, link, changes).await?;
    }
    nl.add_bridge(&name, mtu).await?;
    changes.push(format!("created bridge {name} (mtu {mtu})"));
    let index = index_of(nl, &name).await?;
    nl.set_link(
        index,
        &LinkUpdate {
            mtu: Some(mtu),
            mac: Some(mac.to_vec()),
            up: true,
            ..LinkUpdate::default()
        },
    )
    .await?;
    changes.push(format!("set {name} up"));
    Ok(index)
}

async fn sync_addresses<N: Netlink>(
    nl: &N,
    addresses: &[Address],
    bridge: u32,
    net: &NetworkPlan,
    changes: &mut Vec<String>,
) -> R<()> {
    let wanted: BTreeSet<Address> = net
        .local_blocks
        .iter()
        .map(|b| Address {
            index: bridge,
            addr: b.gateway(),
            prefix: b.prefix_len(),
        })
        .collect();
    let have: BTreeSet<Address> = addresses
        .iter()
        .filter(|a| a.index == bridge)
        .copied()
        .collect();
    for a in have.difference(&wanted) {
        NetworkError::gone_is_done(nl.del_address(*a).await)?;
        changes.push(format!(
            "deleted address {}/{} of {}",
            a.addr, a.prefix, net.name
        ));
    }
    for a in wanted.difference(&have) {
        nl.add_address(*a).await?;
        changes.push(format!(
            "added address {}/{} to {}",
            a.addr, a.prefix, net.name
        ));
    }
    Ok(())
}

async fn sync_neighbours<N: Netlink>(
    nl: &N,
    vxlan: u32,
    net: &NetworkPlan,
    changes: &mut Vec<String>,
) -> R<()> {
    let mut wanted = BTreeSet::new();
    for remote in &net.remotes {
        let mac = remote.vtep_mac(net.vni).to_vec();
        for block in &remote.blocks {
            wanted.insert(Neighbour {
                index: vxlan,
                ip: block.gateway(),
                mac: mac.clone(),
                permanent: true,
            });
        }
    }
    let have: BTreeSet<Neighbour> = nl
        .neighbours(vxlan)
        .await?
        .into_iter()
        .filter(|n| n.permanent)
        .collect();
    let wanted_ips: BTreeSet<Ipv4Addr> = wanted.iter().map(|n| n.ip).collect();
    for n in have.iter().filter(|n| !wanted_ips.contains(&n.ip)) {
        NetworkError::gone_is_done(nl.del_neighbour(n).await)?;
        changes.push(format!("deleted neighbour {} of {}", n.ip, net.name));
    }
    for n in wanted.difference(&have) {
        nl.replace_neighbour(n).await?;
        changes.push(format!(
            "set neighbour {} -> {} on {}",
            n.ip,
            format_mac(&n.mac),
            net.name
        ));
    }
    Ok(())
}

async fn sync_fdb<N: Netlink>(
    nl: &N,
    vxlan: u32,
    net: &NetworkPlan,
    changes: &mut Vec<String>,
) -> R<()> {
    let wanted: BTreeSet<Fdb> = net
        .remotes
        .iter()
        .map(|r| Fdb {
            index: vxlan,
            mac: r.vtep_mac(net.vni).to_vec(),
            dst: Some(r.underlay_ip),
            permanent: true,
        })
        .collect();
    let have: BTreeSet<Fdb> = nl.fdb(vxlan).await?.into_iter().collect();
    for f in have.difference(&wanted) {
        NetworkError::gone_is_done(nl.del_fdb(f).await)?;
        changes.push(format!(
            "deleted fdb {} dst {:?} of {}",
            format_mac(&f.mac),
            f.dst,
            net.name
        ));
    }
    for f in wanted.difference(&have) {
        nl.replace_fdb(f).await?;
        changes.push(format!(
            "set fdb {} -> {:?} on {}",
            format_mac(&f.mac),
            f.dst,
            net.name
        ));
    }
    Ok(())
}

async fn sync_routes<N: Netlink>(
    nl: &N,
    wanted: &BTreeSet<Route>,
    changes: &mut Vec<String>,
) -> R<()> {
    let have: BTreeSet<Route> = nl.routes().await?.into_iter().collect();
    for r in have.difference(wanted) {
        NetworkError::gone_is_done(nl.del_route(*r).await)?;
        changes.push(format!(
            "deleted route {}/{} via {}",
            r.dst, r.prefix, r.gateway
        ));
    }
    for r in wanted.difference(&have) {
        nl.replace_route(*r).await?;
        changes.push(format!(
            "set route {}/{} via {} dev {}",
            r.dst, r.prefix, r.gateway, r.oif
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::Overlay;
    use super::super::fake::FakeNetlink;
    use super::super::plan::{LocalPlan, NetworkPlan, RemoteNode};
    use super::*;
    use berth_proto::net::Block;

    const TEST_PORT: u16 = 7420;

    const ME: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

    fn block(s: &str) -> Block {
        s.parse().expect("block")
    }

    fn remote(n: u8, b: &str) -> RemoteNode {
        RemoteNode {
            underlay_ip: Ipv4Addr::new(198, 18, 0, n),
            blocks: vec![block(b)],
        }
    }

    fn plan(remotes: Vec<RemoteNode>) -> LocalPlan {
        LocalPlan {
            networks: vec![NetworkPlan {
                name: "web".into(),
                vni: 4097,
                port: TEST_PORT,
                local_blocks: vec![block("10.20.1.0/24")],
                underlay_ip: ME,
                remotes,
            }],
        }
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn first_reconcile_builds_everything_and_the_second_writes_nothing() {
        let overlay = Overlay::new(FakeNetlink::with_underlay(ME, 1500));
        let plan = plan(vec![remote(2, "10.20.2.0/24"), remote(3, "10.20.3.0/24")]);
        let report = run(overlay.reconcile(&plan)).expect("reconcile");
        assert!(!report.is_empty());
        overlay.netlink().with(|s| {
            let vx = s.links.iter().find(|l| l.name == "bv-4097").expect("vxlan");
            let br = s
                .links
                .iter()
                .find(|l| l.name == "bb-4097")
                .expect("bridge");
            assert_eq!((vx.mtu, br.mtu), (1450, 1450));
            assert!(vx.up && br.up && s.forwarding);
            assert_eq!(vx.mac.as_deref(), Some(&vtep_mac(ME, 4097)[..]));
            assert_eq!(br.mac.as_deref(), Some(&gateway_mac(ME, 4097)[..]));
            assert_eq!(
                s.addresses.iter().filter(|a| a.index == br.index).count(),
                1
            );
            assert_eq!(s.routes.len(), 2);
            assert!(s.routes.contains(&Route {
                dst: Ipv4Addr::new(10, 20, 2, 0),
                prefix: 24,
                gateway: Ipv4Addr::new(10, 20, 2, 1),
                oif: vx.index,
            }));
            assert_eq!(s.neighbours.len(), 2);
            assert_eq!(s.fdb.len(), 2);
        });
        let writes = overlay.netlink().with(|s| s.writes);
        let again = run(overlay.reconcile(&plan)).expect("reconcile again");
        assert!(again.is_empty(), "{:?}", again.changes);
        assert_eq!(overlay.netlink().with(|s| s.writes), writes);
    }

    #[test]
    fn a_removed_node_loses_its_route_neighbour_and_fdb_entry_only() {
        let overlay = Overlay::new(FakeNetlink::with_underlay(ME, 1500));
        run(overlay.reconcile(&plan(vec![
            remote(2, "10.20.2.0/24"),
            remote(3, "10.20.3.0/24"),
        ])))
        .expect("reconcile");
        let report =
            run(overlay.reconcile(&plan(vec![remote(2, "10.20.2.0/24")]))).expect("shrink");
        assert_eq!(report.changes.len(), 3, "{:?}", report.changes);
        overlay.netlink().with(|s| {
            assert_eq!(s.routes.len(), 1);
            assert_eq!(s.routes[0].dst, Ipv4Addr::new(10, 20, 2, 0));
            assert_eq!(s.neighbours.len(), 1);
            assert_eq!(s.fdb[0].dst, Some(Ipv4Addr::new(198, 18, 0, 2)));
            assert_eq!(s.fdb.len(), 1);
        });
    }

    #[test]
    fn foreign_objects_stay_and_stale_berth_devices_go() {
        let fake = FakeNetlink::with_underlay(ME, 9000);
        fake.with(|s| {
            for (index, name) in [(50, "br0"), (51, "bb-7"), (52, "bv-7")] {
                s.links.push(Link {
                    index,
                    name: name.into(),
                    kind: LinkKind::Bridge,
                    mtu: 1500,
                    mac: None,
                    up: true,
                    master: None,
                });
            }
            s.neighbours.push(Neighbour {
                index: 50,
                ip: Ipv4Addr::new(192, 0, 2, 1),
                mac: vec![2, 0, 0, 0, 0, 1],
                permanent: true,
            });
            s.next_index = 60;
        });
        let overlay = Overlay::new(fake);
        run(overlay.reconcile(&plan(vec![remote(2, "10.20.2.0/24")]))).expect("reconcile");
        overlay.netlink().with(|s| {
            let names: Vec<&str> = s.links.iter().map(|l| l.name.as_str()).collect();
            assert!(names.contains(&"br0"), "{names:?}");
            assert!(
                !names.contains(&"bb-7") && !names.contains(&"bv-7"),
                "{names:?}"
            );
            assert!(s.neighbours.iter().any(|n| n.index == 50));
            let vx = s.links.iter().find(|l| l.name == "bv-4097").expect("vxlan");
            assert_eq!(vx.mtu, 8950);
        });
    }

    #[test]
    fn a_vxlan_device_with_the_wrong_vni_is_recreated_and_drifted_entries_are_fixed() {
        let overlay = Overlay::new(FakeNetlink::with_underlay(ME, 1500));
        let p = plan(vec![remote(2, "10.20.2.0/24")]);
        run(overlay.reconcile(&p)).expect("reconcile");
        overlay.netlink().with(|s| {
            for l in s.links.iter_mut().filter(|l| l.name == "bv-4097") {
                if let LinkKind::Vxlan(info) = &mut l.kind {
                    info.learning = true;
                }
            }
            for n in &mut s.neighbours {
                n.mac = vec![2, 2, 2, 2, 2, 2];
            }
        });
        let report = run(overlay.reconcile(&p)).expect("reconcile");
        assert!(
            report
                .changes
                .iter()
                .any(|c| c.starts_with("deleted link bv-4097")),
            "{:?}",
            report.changes
        );
        overlay.netlink().with(|s| {
            let vx = s.links.iter().find(|l| l.name == "bv-4097").expect("vxlan");
            assert_eq!(
                vx.kind,
                LinkKind::Vxlan(VxlanInfo {
                    vni: 4097,
                    local: Some(ME),
                    port: TEST_PORT,
                    learning: false,
                    lower: Some(2),
                })
            );
            assert_eq!(s.neighbours.len(), 1);
            assert_eq!(
                s.neighbours[0].mac,
                vtep_mac(Ipv4Addr::new(198, 18, 0, 2), 4097).to_vec()
            );
            assert_eq!(s.routes.len(), 1);
        });
        assert!(run(overlay.reconcile(&p)).expect("again").is_empty());
    }

    #[test]
    fn a_missing_underlay_address_is_an_error_naming_the_network() {
        let overlay = Overlay::new(FakeNetlink::with_underlay(
            Ipv4Addr::new(198, 18, 0, 9),
            1500,
        ));
        let err = run(overlay.reconcile(&plan(vec![])))
            .expect_err("no underlay")
            .to_string();
        assert!(
            err.contains("network web") && err.contains("198.18.0.1"),
            "{err}"
        );
    }
}
