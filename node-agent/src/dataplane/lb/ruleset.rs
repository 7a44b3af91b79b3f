//! The `ip berth` table for an [`LbPlan`], as nftables JSON objects, written in
//! exactly the form `nft -j list table ip berth` prints them back (implicit
//! protocol matches left out, numgen offsets spelled out), so that a read-back
//! compares equal when nothing changed.
//!
//! ```text
//! refuse (filter, mangle)    ip daddr VIP reject ..          (VIPs without backends)
//! prerouting (nat, dstnat)   iifname "bb-*" ct mark set ct mark | BRIDGE
//!                            iifname "bb-V" ip daddr VIP jump vip-VIP
//!                            fib daddr type local jump published
//! output (nat, -100)         fib daddr type local ip daddr != 127.0.0.0/8 jump published
//! published                  tcp dport P ct mark set ct mark | INGRESS dnat to numgen random mod N map {..}:T
//! vip-VIP                    dnat to numgen random mod N map { 0 : B0, .. }
//! postrouting (nat, srcnat)  ct mark & BRIDGE == BRIDGE ct status dnat oifname "bb-*" masquerade (hairpin)
//!                            ct mark & INGRESS == INGRESS oifname "bv-V" snat to GATEWAY-V  (ingress)
//!                            ct mark & INGRESS == INGRESS oifname "bv-*" masquerade  (no gateway)
//!                            ct mark & BRIDGE == BRIDGE oifname != "bb-*" oifname != "bv-*" masquerade (egress)
//! forward (filter)           iifname "bb-V"|"bv-V" jump from-V
//!                            oifname "bb-*"|"bv-*" jump into-berth
//! from-V                     published (INGRESS-marked) or out through V's devices: accept;
//!                            through other berth devices: drop
//! into-berth                 replies and published (DNATed) connections pass, the rest from
//!                            outside berth's devices is dropped
//! ```

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use nftables::expr::{Expression, MetaKey, NamedExpression, Prefix};
use nftables::schema::NfListObject;
use nftables::stmt::{NAT, Operator, Reject, RejectType, Statement};
use nftables::types::{NfChainType, NfHook, RejectCode};
use serde_json::Value;

use super::builder::Builder;
use super::expr::{
    ct, dnat, eq, fib_daddr_type, is, jump, marked, matches, meta, neq, payload, pick, s, set_mark,
};
use super::normalise::normalise;
use super::{LbPlan, PublishedRule};
use crate::dataplane::error::NetworkError;
use crate::dataplane::names::{BRIDGE_PREFIX, VXLAN_PREFIX, bridge_name, vxlan_name};

/// The one table berth owns (family ip).
pub const TABLE: &str = "berth";
/// Conntrack mark bit of connections DNATed by a published port; masqueraded
/// when they leave through a VXLAN device. One bit, or-ed in, so other users of
/// the mark keep theirs.
pub const INGRESS_MARK: u32 = 0x0100_0000;
/// Conntrack mark bit of connections that entered from a berth bridge (a
/// container); with DNAT and leaving through a bridge again they are hairpins.
pub const BRIDGE_MARK: u32 = 0x0200_0000;

const MANGLE: i32 = -150;
const DSTNAT: i32 = -100;
const SRCNAT: i32 = 100;
const FILTER: i32 = 0;
const PUBLISHED: &str = "published";
const REFUSE: &str = "refuse";
const INTO_BERTH: &str = "into-berth";

pub(super) type Obj = NfListObject<'static>;

/// The table for `plan`: chains first, then each chain's rules in order (the
/// order nft lists them in).
/// `gateways`: this host's address in each network (see `gateways.rs`).
pub fn render(plan: &LbPlan, gateways: &BTreeMap<u32, Ipv4Addr>) -> Result<Vec<Obj>, NetworkError> {
    let plan = normalise(plan)?;
    let mut t = Builder::default();
    // Before routing: the host may have no route for the VIP range at all.
    t.base(REFUSE, NfChainType::Filter, NfHook::Prerouting, MANGLE);
    t.base("prerouting", NfChainType::NAT, NfHook::Prerouting, DSTNAT);
    t.base("output", NfChainType::NAT, NfHook::Output, DSTNAT);
    t.base("postrouting", NfChainType::NAT, NfHook::Postrouting, SRCNAT);
    t.base("forward", NfChainType::Filter, NfHook::Forward, FILTER);
    t.chain(PUBLISHED);
    t.chain(INTO_BERTH);
    balance(&mut t, &plan);
    source_nat(&mut t, &plan, gateways);
    refuse(&mut t, &plan);
    isolate(&mut t, &plan);
    Ok(t.finish())
}

/// DNAT: VIPs from their network's containers, published ports on every local
/// address.
fn balance(t: &mut Builder, plan: &LbPlan) {
    // Remember that a connection came from a container. With br_netfilter,
    // bridged frames reach postrouting without an input device, so the hairpin
    // rule cannot ask for one there.
    t.rule(
        "prerouting",
        vec![
            eq(meta(MetaKey::Iifname), s(format!("{BRIDGE_PREFIX}*"))),
            set_mark(BRIDGE_MARK),
        ],
    );
    for vip in plan.vips.iter().filter(|v| !v.backends.is_empty()) {
        let chain = vip_chain(vip.vip);
        t.chain(&chain);
        t.rule(&chain, vec![dnat(pick(&vip.backends), None)]);
        t.rule(
            "prerouting",
            vec![
                eq(meta(MetaKey::Iifname), s(bridge_name(vip.vni))),
                eq(payload("ip", "daddr"), s(vip.vip.to_string())),
                jump(&chain),
            ],
        );
    }
    t.rule(
        "prerouting",
        vec![eq(fib_daddr_type(), s("local")), jump(PUBLISHED)],
    );
    // From the host itself, not to 127/8: a loopback source cannot leave the
    // host, so such a connection would hang instead of being refused.
    let loopback = Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s("127.0.0.0")),
        len: 8,
    }));
    t.rule(
        "output",
        vec![
            eq(fib_daddr_type(), s("local")),
            matches(Operator::NEQ, payload("ip", "daddr"), loopback),
            jump(PUBLISHED),
        ],
    );
    for rule in plan.published.iter().filter(|p| !p.backends.is_empty()) {
        t.rule(PUBLISHED, published(rule));
    }
}

/// SNAT where replies would otherwise miss this host's conntrack.
fn source_nat(t: &mut Builder, plan: &LbPlan, gateways: &BTreeMap<u32, Ipv4Addr>) {
    // Hairpin: from a container, DNATed, back out through a bridge (isolation
    // has dropped it already if that is another network's).
    t.rule(
        "postrouting",
        vec![
            marked(BRIDGE_MARK),
            is(ct("status"), s("dnat")),
            eq(meta(MetaKey::Oifname), s(format!("{BRIDGE_PREFIX}*"))),
            Statement::Masquerade(None),
        ],
    );
    // Published connections leaving for another host: SNAT to our gateway in
    // the network, or masquerade when the bridge has no address (yet).
    for &vni in &plan.networks {
        if let Some(&gateway) = gateways.get(&vni) {
            let mut rule = ingress_leaving(vxlan_name(vni));
            rule.push(Statement::SNAT(Some(NAT {
                addr: Some(s(gateway.to_string())),
                family: None,
                port: None,
                flags: None,
            })));
            t.rule("postrouting", rule);
        }
    }
    let mut rule = ingress_leaving(format!("{VXLAN_PREFIX}*"));
    rule.push(Statement::Masquerade(None));
    t.rule("postrouting", rule);
    // Egress: a container's connection leaving the overlay (to the underlay or
    // beyond) takes this host's address, as behind Docker's gateway bridge:
    // nothing outside routes the overlay's addresses back.
    t.rule(
        "postrouting",
        vec![
            marked(BRIDGE_MARK),
            neq(meta(MetaKey::Oifname), s(format!("{BRIDGE_PREFIX}*"))),
            neq(meta(MetaKey::Oifname), s(format!("{VXLAN_PREFIX}*"))),
            Statement::Masquerade(None),
        ],
    );
}

/// VIPs without backends refuse at once instead of timing out.
fn refuse(t: &mut Builder, plan: &LbPlan) {
    for vip in plan.vips.iter().filter(|v| v.backends.is_empty()) {
        // `reject with tcp reset` implies `meta l4proto tcp`; nft adds it.
        let daddr = || eq(payload("ip", "daddr"), s(vip.vip.to_string()));
        let reset = Reject::new(Some(RejectType::TCPReset), None);
        let unreachable = Reject::new(Some(RejectType::ICMP), Some(RejectCode::PortUnreach));
        t.rule(REFUSE, vec![daddr(), Statement::Reject(Some(reset))]);
        t.rule(REFUSE, vec![daddr(), Statement::Reject(Some(unreachable))]);
    }
}

/// Forward filter: networks apart from each other and from the outside.
fn isolate(t: &mut Builder, plan: &LbPlan) {
    for &vni in &plan.networks {
        let from = format!("from-{vni}");
        t.chain(&from);
        // Published ports are public: a container may use another network's.
        t.rule(&from, vec![marked(INGRESS_MARK), Statement::Accept(None)]);
        for dev in [bridge_name(vni), vxlan_name(vni)] {
            t.rule(
                "forward",
                vec![eq(meta(MetaKey::Iifname), s(dev.clone())), jump(&from)],
            );
            t.rule(
                &from,
                vec![eq(meta(MetaKey::Oifname), s(dev)), Statement::Accept(None)],
            );
        }
        for prefix in [BRIDGE_PREFIX, VXLAN_PREFIX] {
            let other = eq(meta(MetaKey::Oifname), s(format!("{prefix}*")));
            t.rule(&from, vec![other, Statement::Drop(None)]);
        }
    }
    for prefix in [BRIDGE_PREFIX, VXLAN_PREFIX] {
        let into = eq(meta(MetaKey::Oifname), s(format!("{prefix}*")));
        t.rule("forward", vec![into, jump(INTO_BERTH)]);
    }
    let states = Expression::List(vec![s("established"), s("related")]);
    t.rule(
        INTO_BERTH,
        vec![is(ct("state"), states), Statement::Accept(None)],
    );
    t.rule(
        INTO_BERTH,
        vec![is(ct("status"), s("dnat")), Statement::Accept(None)],
    );
    // From a berth device of a network missing from the plan: not ours to judge.
    for prefix in [BRIDGE_PREFIX, VXLAN_PREFIX] {
        let from = eq(meta(MetaKey::Iifname), s(format!("{prefix}*")));
        t.rule(INTO_BERTH, vec![from, Statement::Return(None)]);
    }
    t.rule(INTO_BERTH, vec![Statement::Drop(None)]);
}

/// `objects` as nft lists them: one `{"<kind>": {..}}` value each, without handles.
pub fn comparable(objects: &[Obj]) -> Result<Vec<Value>, NetworkError> {
    objects
        .iter()
        .map(|o| {
            serde_json::to_value(o).map_err(|e| NetworkError::Nft {
                what: "encode ruleset".into(),
                message: e.to_string(),
            })
        })
        .collect()
}

fn vip_chain(vip: Ipv4Addr) -> String {
    format!("vip-{vip}")
}

/// `ct mark & MARK == MARK oifname "<device>"`: a published-port connection
/// leaving through `device`.
fn ingress_leaving(device: String) -> Vec<Statement<'static>> {
    vec![marked(INGRESS_MARK), eq(meta(MetaKey::Oifname), s(device))]
}

/// `<proto> dport P ct mark set ct mark | MARK dnat to <pick>:T` (the mark must
/// come first: dnat ends the chain).
fn published(rule: &PublishedRule) -> Vec<Statement<'static>> {
    vec![
        eq(
            payload(rule.protocol.as_str(), "dport"),
            Expression::Number(rule.published_port.into()),
        ),
        set_mark(INGRESS_MARK),
        dnat(
            pick(&rule.backends),
            Some(Expression::Number(rule.target_port.into())),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::lb::{Protocol, VipRule};

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 20, 1, last)
    }

    fn plan() -> LbPlan {
        LbPlan {
            networks: vec![4098, 4097],
            vips: vec![
                VipRule {
                    service: "web".into(),
                    vni: 4097,
                    vip: Ipv4Addr::new(10, 255, 0, 3),
                    backends: vec![ip(12), ip(10), ip(11), ip(10)],
                },
                VipRule {
                    service: "db".into(),
                    vni: 4098,
                    vip: Ipv4Addr::new(10, 255, 0, 2),
                    backends: vec![],
                },
            ],
            published: vec![PublishedRule {
                service: "web".into(),
                protocol: Protocol::Tcp,
                published_port: 8080,
                target_port: 80,
                backends: vec![ip(11), ip(10)],
            }],
        }
    }

    fn gateways() -> BTreeMap<u32, Ipv4Addr> {
        [(4097, ip(1))].into_iter().collect()
    }

    fn text(objects: &[Obj]) -> String {
        serde_json::to_string(objects).expect("json")
    }

    #[test]
    fn input_order_and_duplicates_do_not_change_the_rules() {
        let a = render(&plan(), &gateways()).expect("render");
        let mut shuffled = plan();
        shuffled.networks.reverse();
        shuffled.vips.reverse();
        shuffled.vips[1].backends = vec![ip(11), ip(12), ip(10)];
        assert_eq!(
            text(&a),
            text(&render(&shuffled, &gateways()).expect("render"))
        );
        let json = text(&a);
        // Three distinct backends: mod 3; the empty VIP has no chain, only rejects.
        assert!(json.contains(r#""mod":3"#), "{json}");
        assert!(json.contains(r#""name":"vip-10.255.0.3""#), "{json}");
        assert!(!json.contains(r#""name":"vip-10.255.0.2""#), "{json}");
        assert!(json.contains(r#""tcp reset""#), "{json}");
        assert!(json.contains(r#""name":"from-4098""#), "{json}");
        // Ingress leaving over bv-4097 takes our gateway there; 4098 has none.
        assert!(json.contains(r#""snat":{"addr":"10.20.1.1"}"#), "{json}");
        assert_eq!(json.matches(r#""snat""#).count(), 1, "{json}");
    }

    #[test]
    fn ambiguous_plans_are_refused_with_the_services_named() {
        let mut p = plan();
        p.vips[1].vip = p.vips[0].vip;
        let err = render(&p, &gateways())
            .expect_err("same vip twice")
            .to_string();
        assert!(err.contains("web") && err.contains("db"), "{err}");
        let mut p = plan();
        let mut dup = p.published[0].clone();
        dup.service = "api".into();
        p.published.push(dup);
        let err = render(&p, &gateways())
            .expect_err("same port twice")
            .to_string();
        assert!(err.contains("8080/tcp") && err.contains("api"), "{err}");
        // A VIP of a network this host lacks is left out, not an error.
        let mut p = plan();
        p.vips[0].vni = 5000;
        let json = text(&render(&p, &gateways()).expect("render"));
        assert!(!json.contains("vip-10.255.0.3"), "{json}");
        let mut p = plan();
        p.networks.push(0);
        assert!(render(&p, &gateways()).is_err());
    }
}
