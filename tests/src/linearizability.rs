//! A Wing–Gong linearizability checker (with Lowe's memoisation) for a set of
//! read/write registers, checked key by key (registers compose).
//!
//! Operations whose outcome is unknown (a write that timed out, say) have no
//! return: they may have taken effect at any time after their invocation, or
//! never. A read with an unknown outcome tells nothing and is left out.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Write(String),
    /// `None` = the key had no value.
    Read(Option<String>),
}

#[derive(Clone, Debug)]
pub struct Op {
    pub client: usize,
    pub key: String,
    pub action: Action,
    pub invoked: Instant,
    /// `None` = unknown outcome (a write) — it may have happened, or not.
    pub returned: Option<Instant>,
}

/// A history recorded by many clients.
#[derive(Default, Clone, Debug)]
pub struct History {
    pub ops: Vec<Op>,
}

#[derive(Debug)]
pub struct Violation {
    pub key: String,
    pub ops: Vec<Op>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "no linearization for key {:?}; its {} operations:",
            self.key,
            self.ops.len()
        )?;
        let start = self.ops.iter().map(|o| o.invoked).min();
        for op in &self.ops {
            let base = start.unwrap_or(op.invoked);
            writeln!(
                f,
                "  client {:>2} {:?} [{:?} .. {}]",
                op.client,
                op.action,
                op.invoked.duration_since(base),
                op.returned
                    .map(|r| format!("{:?}", r.duration_since(base)))
                    .unwrap_or_else(|| "unknown".into())
            )?;
        }
        Ok(())
    }
}

impl History {
    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    pub fn extend(&mut self, other: History) {
        self.ops.extend(other.ops);
    }

    /// Checks every key; `initial` gives each key's value before the history.
    pub fn check(&self, initial: &BTreeMap<String, Option<String>>) -> Result<(), Violation> {
        let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
        for op in &self.ops {
            if matches!(op.action, Action::Read(_)) && op.returned.is_none() {
                continue;
            }
            by_key.entry(&op.key).or_default().push(op);
        }
        for (key, ops) in by_key {
            let init = initial.get(key).cloned().unwrap_or(None);
            if !check_register(&ops, init) {
                return Err(Violation {
                    key: key.to_string(),
                    ops: ops.into_iter().cloned().collect(),
                });
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// Index of the matching return event (for calls).
    partner: usize,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

/// The WGL search over one register's history.
fn check_register(ops: &[&Op], initial: Option<String>) -> bool {
    let n = ops.len();
    if n == 0 {
        return true;
    }
    // Times as nanoseconds from the earliest invocation; unknown returns last.
    let base = ops.iter().map(|o| o.invoked).min().expect("non-empty");
    let ns = |t: Instant| t.duration_since(base).as_nanos();
    let mut order: Vec<(u128, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        order.push((ns(op.invoked), true, i));
        order.push((op.returned.map(ns).unwrap_or(u128::MAX), false, i));
    }
    // At equal times, returns go first: an op that returned at t precedes one
    // invoked at t.
    order.sort_by_key(|&(t, is_call, i)| (t, is_call, i));
    let head = 2 * n; // sentinel
    let mut events: Vec<Event> = order
        .iter()
        .map(|&(_, is_call, op)| Event {
            op,
            is_call,
            partner: NIL,
            prev: NIL,
            next: NIL,
        })
        .collect();
    let mut return_of = vec![NIL; n];
    for (idx, e) in events.iter().enumerate() {
        if !e.is_call {
            return_of[e.op] = idx;
        }
    }
    for event in events.iter_mut() {
        if event.is_call {
            event.partner = return_of[event.op];
        }
    }
    events.push(Event {
        op: NIL,
        is_call: false,
        partner: NIL,
        prev: NIL,
        next: 0,
    });
    for (idx, event) in events.iter_mut().enumerate().take(2 * n) {
        event.prev = if idx == 0 { head } else { idx - 1 };
        event.next = if idx + 1 == 2 * n { NIL } else { idx + 1 };
    }

    let lift = |events: &mut Vec<Event>, call: usize| {
        let ret = events[call].partner;
        for idx in [call, ret] {
            let (prev, next) = (events[idx].prev, events[idx].next);
            events[prev].next = next;
            if next != NIL {
                events[next].prev = prev;
            }
        }
    };
    let unlift = |events: &mut Vec<Event>, call: usize| {
        let ret = events[call].partner;
        for idx in [ret, call] {
            let (prev, next) = (events[idx].prev, events[idx].next);
            events[prev].next = idx;
            if next != NIL {
                events[next].prev = idx;
            }
        }
    };

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut state = initial;
    let mut cache: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut entry = events[head].next;
    loop {
        if events[head].next == NIL {
            return true;
        }
        if entry == NIL {
            // Only reachable after exhausting calls before a return: backtrack.
            let Some((call, prev_state)) = stack.pop() else {
                return false;
            };
            let op = events[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            state = prev_state;
            unlift(&mut events, call);
            entry = events[call].next;
            continue;
        }
        let e = events[entry];
        if e.is_call {
            let op = ops[e.op];
            let next_state = match &op.action {
                Action::Write(v) => Some(Some(v.clone())),
                Action::Read(v) if *v == state => Some(state.clone()),
                Action::Read(_) => None,
            };
            if let Some(next_state) = next_state {
                let mut bits = linearized.clone();
                bits[e.op / 64] |= 1 << (e.op % 64);
                if cache.insert((bits.clone(), next_state.clone())) {
                    stack.push((entry, state));
                    state = next_state;
                    linearized = bits;
                    lift(&mut events, entry);
                    entry = events[head].next;
                    continue;
                }
            }
            entry = e.next;
        } else {
            // A return before its call was linearized: undo the last choice.
            let Some((call, prev_state)) = stack.pop() else {
                return false;
            };
            let op = events[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            state = prev_state;
            unlift(&mut events, call);
            entry = events[call].next;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    fn op(base: Instant, client: usize, action: Action, from: u64, to: Option<u64>) -> Op {
        Op {
            client,
            key: "k".into(),
            action,
            invoked: at(base, from),
            returned: to.map(|t| at(base, t)),
        }
    }

    fn w(v: &str) -> Action {
        Action::Write(v.into())
    }

    fn r(v: Option<&str>) -> Action {
        Action::Read(v.map(String::from))
    }

    fn check(ops: Vec<Op>) -> bool {
        History { ops }.check(&BTreeMap::new()).is_ok()
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let b = Instant::now();
        assert!(check(vec![
            op(b, 0, w("1"), 0, Some(1)),
            op(b, 0, r(Some("1")), 2, Some(3)),
            op(b, 1, w("2"), 4, Some(5)),
            op(b, 1, r(Some("2")), 6, Some(7)),
        ]));
    }

    #[test]
    fn a_stale_read_is_caught() {
        let b = Instant::now();
        assert!(!check(vec![
            op(b, 0, w("1"), 0, Some(1)),
            op(b, 1, w("2"), 2, Some(3)),
            op(b, 2, r(Some("1")), 4, Some(5)),
        ]));
    }

    #[test]
    fn concurrent_operations_may_order_either_way() {
        let b = Instant::now();
        assert!(check(vec![
            op(b, 0, w("1"), 0, Some(10)),
            op(b, 1, w("2"), 1, Some(9)),
            op(b, 2, r(Some("1")), 11, Some(12)),
            op(b, 3, r(Some("1")), 13, Some(14)),
        ]));
        // But two reads after both writes cannot disagree.
        assert!(!check(vec![
            op(b, 0, w("1"), 0, Some(10)),
            op(b, 1, w("2"), 1, Some(9)),
            op(b, 2, r(Some("1")), 11, Some(12)),
            op(b, 3, r(Some("2")), 13, Some(14)),
        ]));
    }

    #[test]
    fn an_unknown_write_may_apply_late_or_never() {
        let b = Instant::now();
        // Seen later:
        assert!(check(vec![
            op(b, 0, w("1"), 0, None),
            op(b, 1, r(None), 5, Some(6)),
            op(b, 1, r(Some("1")), 7, Some(8)),
        ]));
        // Never seen:
        assert!(check(vec![
            op(b, 0, w("1"), 0, None),
            op(b, 1, r(None), 5, Some(6)),
        ]));
        // But not seen before it was invoked.
        assert!(!check(vec![
            op(b, 1, r(Some("1")), 0, Some(1)),
            op(b, 0, w("1"), 2, None),
        ]));
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let b = Instant::now();
        assert!(!check(vec![
            op(b, 0, w("1"), 0, Some(1)),
            op(b, 1, r(None), 2, Some(3)),
        ]));
    }
}
