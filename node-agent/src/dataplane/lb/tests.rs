//! The load balancer's logic through a fake firewall and a fake netlink: what
//! it writes for a plan, what it skips, which flows it forgets, how it fails.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::fake::{Call, FakeFirewall};
use super::{LbPlan, LoadBalancer, Protocol, PublishedRule, VipRule, ruleset};
use crate::dataplane::fake::FakeNetlink;
use crate::dataplane::names::bridge_name;
use crate::dataplane::netlink::{Address, Netlink};

const VNI: u32 = 4097;
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 1);

fn backend(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 20, 1, last)
}

fn plan(vip_backends: &[u8], published_backends: &[u8]) -> LbPlan {
    LbPlan {
        networks: vec![VNI],
        vips: vec![VipRule {
            service: "web".into(),
            vni: VNI,
            vip: Ipv4Addr::new(10, 20, 255, 2),
            backends: vip_backends.iter().map(|&l| backend(l)).collect(),
        }],
        published: vec![PublishedRule {
            service: "dns".into(),
            protocol: Protocol::Udp,
            published_port: 5353,
            target_port: 53,
            backends: published_backends.iter().map(|&l| backend(l)).collect(),
        }],
    }
}

/// A host whose bridge of network `VNI` carries the gateway `GATEWAY`.
async fn balancer() -> LoadBalancer<FakeFirewall, FakeNetlink> {
    let nl = FakeNetlink::with_underlay(Ipv4Addr::new(198, 18, 0, 1), 1500);
    nl.add_bridge(&bridge_name(VNI), 1450)
        .await
        .expect("bridge");
    let index = nl
        .links()
        .await
        .expect("links")
        .iter()
        .find(|l| l.name == bridge_name(VNI))
        .expect("the bridge")
        .index;
    nl.add_address(Address {
        index,
        addr: GATEWAY,
        prefix: 24,
    })
    .await
    .expect("gateway");
    LoadBalancer::new(FakeFirewall::default(), nl)
}

fn calls(lb: &LoadBalancer<FakeFirewall, FakeNetlink>) -> Vec<Call> {
    lb.firewall().with(|s| std::mem::take(&mut s.calls))
}

#[tokio::test]
async fn a_plan_becomes_the_table_with_this_hosts_gateway() {
    let lb = balancer().await;
    let wanted = plan(&[10, 11], &[10]);
    assert!(lb.balance(&wanted, false).await.expect("balance"));
    assert_eq!(calls(&lb), vec![Call::Replace]);
    let gateways = BTreeMap::from([(VNI, GATEWAY)]);
    let rendered = ruleset::render(&wanted, &gateways).expect("render");
    assert_eq!(lb.firewall().with(|s| s.table.clone()), Some(rendered));
}

#[tokio::test]
async fn an_unchanged_plan_is_not_applied_again_unless_forced() {
    let lb = balancer().await;
    let wanted = plan(&[10], &[]);
    assert!(lb.balance(&wanted, false).await.expect("first"));
    calls(&lb);
    // Unchanged: not even read back.
    assert!(!lb.balance(&wanted, false).await.expect("again"));
    assert_eq!(calls(&lb), vec![]);
    assert_eq!(lb.firewall().with(|s| s.reads), 1);
    // Forced: read back, in place, not written.
    assert!(!lb.balance(&wanted, true).await.expect("forced"));
    assert_eq!(calls(&lb), vec![]);
    assert_eq!(lb.firewall().with(|s| s.reads), 2);
    // Forced after someone deleted the table: written again.
    lb.firewall().with(|s| s.table = None);
    assert!(lb.balance(&wanted, true).await.expect("repair"));
    assert_eq!(calls(&lb), vec![Call::Replace]);
}

#[tokio::test]
async fn a_backend_leaving_the_plan_has_its_udp_flows_forgotten() {
    let lb = balancer().await;
    lb.balance(&plan(&[10, 11], &[12]), false)
        .await
        .expect("first");
    assert_eq!(calls(&lb), vec![Call::Replace]);
    // 11 leaves the VIP; 12 moves from the published port to the VIP: only 11
    // is gone from every rule.
    lb.balance(&plan(&[10, 12], &[]), false)
        .await
        .expect("second");
    assert_eq!(
        calls(&lb),
        vec![Call::Replace, Call::ForgetUdpFlows(backend(11))]
    );
    // Nothing left: the table goes, and so do the remaining flows.
    assert!(!lb.balance(&LbPlan::default(), false).await.expect("empty"));
    assert_eq!(
        calls(&lb),
        vec![
            Call::Delete,
            Call::ForgetUdpFlows(backend(10)),
            Call::ForgetUdpFlows(backend(12)),
        ]
    );
    assert_eq!(lb.firewall().with(|s| s.table.clone()), None);
}

#[tokio::test]
async fn errors_say_what_failed_and_are_retried_at_the_next_call() {
    let lb = balancer().await;
    let first = plan(&[10, 11], &[]);
    lb.firewall()
        .with(|s| s.fail = Some((Call::Replace, "table busy".into())));
    let error = lb.balance(&first, false).await.expect_err("replace fails");
    assert_eq!(
        error.to_string(),
        "load balancer: applying 1 VIPs and 1 published ports in 1 networks: fake: table busy"
    );
    // Not remembered as applied: the same plan is written at the next call.
    assert!(lb.balance(&first, false).await.expect("retry"));
    calls(&lb);

    let second = plan(&[10], &[]);
    lb.firewall()
        .with(|s| s.fail = Some((Call::ForgetUdpFlows(backend(11)), "conntrack gone".into())));
    let error = lb.balance(&second, false).await.expect_err("forget fails");
    assert_eq!(
        error.to_string(),
        "load balancer: forgetting the UDP flows of backend 10.20.1.11: fake: conntrack gone"
    );
    // The departed backend is still owed its forgetting.
    lb.balance(&second, false).await.expect("retry");
    assert_eq!(
        calls(&lb),
        vec![Call::Replace, Call::ForgetUdpFlows(backend(11))]
    );
}

#[tokio::test]
async fn in_place_is_told_once_the_table_holds_the_plan_before_flows_are_forgotten() {
    let lb = balancer().await;
    lb.balance(&plan(&[10, 11], &[]), false)
        .await
        .expect("first");
    calls(&lb);
    let seen = std::sync::Mutex::new(None);
    lb.balance_with(&plan(&[10], &[]), false, || {
        *seen.lock().expect("lock") = Some(calls(&lb));
    })
    .await
    .expect("second");
    assert_eq!(
        seen.lock().expect("lock").take(),
        Some(vec![Call::Replace]),
        "the table was written, the flows not yet forgotten"
    );
    assert_eq!(calls(&lb), vec![Call::ForgetUdpFlows(backend(11))]);
    let told = std::sync::atomic::AtomicBool::new(false);
    lb.balance_with(&plan(&[10], &[]), false, || {
        told.store(true, std::sync::atomic::Ordering::Relaxed)
    })
    .await
    .expect("unchanged");
    assert!(
        told.load(std::sync::atomic::Ordering::Relaxed),
        "an unchanged plan is in place already"
    );
}
