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
//! forward (filter)           iifname "bb-V"|"bv-V" jump from-V
//!                            oifname "bb-*"|"bv-*" jump into-berth
//! from-V                     published (INGRESS-marked) or out through V's devices: accept;
//!                            through other berth devices: drop
//! into-berth                 replies and published (DNATed) connections pass, the rest from
//!                            outside berth's devices is dropped
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use nftables::expr::{
    BinaryOperation, CT, Expression, Fib, FibFlag, FibResult, Map, Meta, MetaKey, NamedExpression,
    NgMode, Numgen, Payload, PayloadField, Prefix, SetItem,
};
use nftables::schema::{Chain, NfListObject, Rule, Table};
use nftables::stmt::{JumpTarget, Mangle, Match, NAT, Operator, Reject, RejectType, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook, RejectCode};
use serde_json::Value;

use super::{LbPlan, Protocol, PublishedRule, VipRule};
use crate::network::error::NetworkError;
use crate::network::names::{BRIDGE_PREFIX, VXLAN_PREFIX, bridge_name, vxlan_name};
use crate::network::plan::MAX_VNI;

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

type Obj = NfListObject<'static>;

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

    for vip in plan.vips.iter().filter(|v| v.backends.is_empty()) {
        // `reject with tcp reset` implies `meta l4proto tcp`; nft adds it.
        let daddr = || eq(payload("ip", "daddr"), s(vip.vip.to_string()));
        let reset = Reject::new(Some(RejectType::TCPReset), None);
        let unreachable = Reject::new(Some(RejectType::ICMP), Some(RejectCode::PortUnreach));
        t.rule(REFUSE, vec![daddr(), Statement::Reject(Some(reset))]);
        t.rule(REFUSE, vec![daddr(), Statement::Reject(Some(unreachable))]);
    }
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
    Ok(t.finish())
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

/// The plan with everything sorted and deduplicated (the caller's order must not
/// change the rules, or every apply would rewrite), checked for what nft would
/// refuse or what would be ambiguous.
fn normalise(plan: &LbPlan) -> Result<LbPlan, NetworkError> {
    let bad = |m: String| Err(NetworkError::Plan(m));
    let networks: BTreeSet<u32> = plan.networks.iter().copied().collect();
    for &vni in &networks {
        if vni == 0 || vni > MAX_VNI {
            return bad(format!(
                "load balancer: vni {vni} out of range 1..={MAX_VNI}"
            ));
        }
    }
    let mut vips: BTreeMap<Ipv4Addr, VipRule> = BTreeMap::new();
    for vip in &plan.vips {
        // No container of that network here could use it.
        if !networks.contains(&vip.vni) {
            continue;
        }
        if let Some(other) = vips.get(&vip.vip) {
            return bad(format!(
                "vip {} given to both service {} and service {}",
                vip.vip, other.service, vip.service
            ));
        }
        let mut vip = vip.clone();
        vip.backends = sorted(&vip.backends);
        vips.insert(vip.vip, vip);
    }
    let mut published: BTreeMap<(Protocol, u16), PublishedRule> = BTreeMap::new();
    for rule in &plan.published {
        if rule.published_port == 0 || rule.target_port == 0 {
            return bad(format!(
                "service {}: port 0 in {}:{}",
                rule.service, rule.published_port, rule.target_port
            ));
        }
        let key = (rule.protocol, rule.published_port);
        if let Some(other) = published.get(&key) {
            return bad(format!(
                "port {}/{} published by both service {} and service {}",
                rule.published_port,
                rule.protocol.as_str(),
                other.service,
                rule.service
            ));
        }
        let mut rule = rule.clone();
        rule.backends = sorted(&rule.backends);
        published.insert(key, rule);
    }
    Ok(LbPlan {
        networks: networks.into_iter().collect(),
        vips: vips.into_values().collect(),
        published: published.into_values().collect(),
    })
}

fn sorted(addrs: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
    let set: BTreeSet<Ipv4Addr> = addrs.iter().copied().collect();
    set.into_iter().collect()
}

fn vip_chain(vip: Ipv4Addr) -> String {
    format!("vip-{vip}")
}

/// `ct mark & MARK == MARK oifname "<device>"`: a published-port connection
/// leaving through `device`.
fn ingress_leaving(device: String) -> Vec<Statement<'static>> {
    vec![marked(INGRESS_MARK), eq(meta(MetaKey::Oifname), s(device))]
}

/// `ct mark & BIT == BIT`.
fn marked(bit: u32) -> Statement<'static> {
    let masked = Expression::BinaryOperation(Box::new(BinaryOperation::AND(
        ct("mark"),
        Expression::Number(bit),
    )));
    eq(masked, Expression::Number(bit))
}

/// `ct mark set ct mark | BIT` (other bits of the mark are someone else's).
fn set_mark(bit: u32) -> Statement<'static> {
    Statement::Mangle(Mangle {
        key: ct("mark"),
        value: Expression::BinaryOperation(Box::new(BinaryOperation::OR(vec![
            ct("mark"),
            Expression::Number(bit),
        ]))),
    })
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

/// `numgen random mod N map { 0 : B0, 1 : B1, .. }`: one backend per new
/// connection, uniformly.
fn pick(backends: &[Ipv4Addr]) -> Expression<'static> {
    let items = backends
        .iter()
        .enumerate()
        .map(|(i, b)| SetItem::Mapping(Expression::Number(i as u32), s(b.to_string())))
        .collect();
    Expression::Named(NamedExpression::Map(Box::new(Map {
        key: Expression::Named(NamedExpression::Numgen(Numgen {
            mode: NgMode::Random,
            ng_mod: backends.len() as u32,
            offset: Some(0),
        })),
        data: Expression::Named(NamedExpression::Set(items)),
    })))
}

fn dnat(addr: Expression<'static>, port: Option<Expression<'static>>) -> Statement<'static> {
    Statement::DNAT(Some(NAT {
        addr: Some(addr),
        family: None,
        port,
        flags: None,
    }))
}

fn s(v: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(v.into()))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: Cow::Borrowed(key),
        family: None,
        dir: None,
    }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(field),
        },
    )))
}

fn fib_daddr_type() -> Expression<'static> {
    Expression::Named(NamedExpression::Fib(Fib {
        result: FibResult::Type,
        flags: [FibFlag::Daddr].into_iter().collect(),
    }))
}

fn matches(
    op: Operator,
    left: Expression<'static>,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    matches(Operator::EQ, left, right)
}

/// A flag test (`ct status dnat`, `ct state established,related`).
fn is(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    matches(Operator::IN, left, right)
}

fn jump(target: &str) -> Statement<'static> {
    Statement::Jump(JumpTarget {
        target: Cow::Owned(target.to_string()),
    })
}

/// Chains in creation order, rules kept per chain.
#[derive(Default)]
struct Builder {
    chains: Vec<(Chain<'static>, Vec<Vec<Statement<'static>>>)>,
}

impl Builder {
    fn push(&mut self, chain: Chain<'static>) {
        self.chains.push((chain, Vec::new()));
    }

    fn chain(&mut self, name: &str) {
        self.push(Chain {
            family: NfFamily::IP,
            table: Cow::Borrowed(TABLE),
            name: Cow::Owned(name.to_string()),
            ..Chain::default()
        });
    }

    fn base(&mut self, name: &str, kind: NfChainType, hook: NfHook, prio: i32) {
        self.push(Chain {
            family: NfFamily::IP,
            table: Cow::Borrowed(TABLE),
            name: Cow::Owned(name.to_string()),
            _type: Some(kind),
            hook: Some(hook),
            prio: Some(prio),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        });
    }

    /// Appends a rule to `chain`, which must have been added before.
    fn rule(&mut self, chain: &str, expr: Vec<Statement<'static>>) {
        let found = self.chains.iter_mut().find(|(c, _)| c.name == chain);
        debug_assert!(found.is_some(), "rule for chain {chain} before the chain");
        if let Some((_, rules)) = found {
            rules.push(expr);
        }
    }

    fn finish(self) -> Vec<Obj> {
        let mut out = vec![NfListObject::Table(Table {
            family: NfFamily::IP,
            name: Cow::Borrowed(TABLE),
            handle: None,
        })];
        let mut rules = Vec::new();
        for (chain, exprs) in self.chains {
            for expr in exprs {
                rules.push(NfListObject::Rule(Rule {
                    family: NfFamily::IP,
                    table: Cow::Borrowed(TABLE),
                    chain: chain.name.clone(),
                    expr: Cow::Owned(expr),
                    ..Rule::default()
                }));
            }
            out.push(NfListObject::Chain(chain));
        }
        out.extend(rules);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
