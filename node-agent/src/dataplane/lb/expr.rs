//! Short constructors for the nftables JSON expressions and statements the
//! ruleset uses (the crate's types are verbose).

use std::borrow::Cow;
use std::net::Ipv4Addr;

use nftables::expr::{
    BinaryOperation, CT, Expression, Fib, FibFlag, FibResult, Map, Meta, MetaKey, NamedExpression,
    NgMode, Numgen, Payload, PayloadField, SetItem,
};
use nftables::stmt::{JumpTarget, Mangle, Match, NAT, Operator, Statement};

/// `ct mark & BIT == BIT`.
pub(super) fn marked(bit: u32) -> Statement<'static> {
    let masked = Expression::BinaryOperation(Box::new(BinaryOperation::AND(
        ct("mark"),
        Expression::Number(bit),
    )));
    eq(masked, Expression::Number(bit))
}

/// `ct mark set ct mark | BIT` (other bits of the mark are someone else's).
pub(super) fn set_mark(bit: u32) -> Statement<'static> {
    Statement::Mangle(Mangle {
        key: ct("mark"),
        value: Expression::BinaryOperation(Box::new(BinaryOperation::OR(vec![
            ct("mark"),
            Expression::Number(bit),
        ]))),
    })
}

/// `numgen random mod N map { 0 : B0, 1 : B1, .. }`: one backend per new
/// connection, uniformly.
pub(super) fn pick(backends: &[Ipv4Addr]) -> Expression<'static> {
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

pub(super) fn dnat(
    addr: Expression<'static>,
    port: Option<Expression<'static>>,
) -> Statement<'static> {
    Statement::DNAT(Some(NAT {
        addr: Some(addr),
        family: None,
        port,
        flags: None,
    }))
}

pub(super) fn s(v: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(v.into()))
}

pub(super) fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

pub(super) fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: Cow::Borrowed(key),
        family: None,
        dir: None,
    }))
}

pub(super) fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(field),
        },
    )))
}

pub(super) fn fib_daddr_type() -> Expression<'static> {
    Expression::Named(NamedExpression::Fib(Fib {
        result: FibResult::Type,
        flags: [FibFlag::Daddr].into_iter().collect(),
    }))
}

pub(super) fn matches(
    op: Operator,
    left: Expression<'static>,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

pub(super) fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    matches(Operator::EQ, left, right)
}

pub(super) fn neq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    matches(Operator::NEQ, left, right)
}

/// A flag test (`ct status dnat`, `ct state established,related`).
pub(super) fn is(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    matches(Operator::IN, left, right)
}

pub(super) fn jump(target: &str) -> Statement<'static> {
    Statement::Jump(JumpTarget {
        target: Cow::Owned(target.to_string()),
    })
}
