//! Collects chains and their rules, and emits them in the order nft lists them:
//! the table, every chain in creation order, then each chain's rules.

use std::borrow::Cow;

use nftables::schema::{Chain, NfListObject, Rule, Table};
use nftables::stmt::Statement;
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::ruleset::{Obj, TABLE};

/// Chains in creation order, rules kept per chain.
#[derive(Default)]
pub(super) struct Builder {
    chains: Vec<(Chain<'static>, Vec<Vec<Statement<'static>>>)>,
}

impl Builder {
    fn push(&mut self, chain: Chain<'static>) {
        self.chains.push((chain, Vec::new()));
    }

    pub(super) fn chain(&mut self, name: &str) {
        self.push(Chain {
            family: NfFamily::IP,
            table: Cow::Borrowed(TABLE),
            name: Cow::Owned(name.to_string()),
            ..Chain::default()
        });
    }

    pub(super) fn base(&mut self, name: &str, kind: NfChainType, hook: NfHook, prio: i32) {
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
    pub(super) fn rule(&mut self, chain: &str, expr: Vec<Statement<'static>>) {
        let found = self.chains.iter_mut().find(|(c, _)| c.name == chain);
        debug_assert!(found.is_some(), "rule for chain {chain} before the chain");
        if let Some((_, rules)) = found {
            rules.push(expr);
        }
    }

    pub(super) fn finish(self) -> Vec<Obj> {
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
