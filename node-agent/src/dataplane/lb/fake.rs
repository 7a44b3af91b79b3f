//! An in-memory firewall for the load balancer's unit tests (the real one is
//! tested against the kernel in node-agent/tests/network_lb.rs): a table that
//! lists back exactly what was written, and a log of the calls.

use std::net::Ipv4Addr;
use std::sync::Mutex;

use nftables::schema::NfListObject;
use serde_json::Value;

use super::firewall::Firewall;
use super::ruleset;
use crate::dataplane::error::NetworkError;

/// One call that changed something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Replace,
    Delete,
    ForgetUdpFlows(Ipv4Addr),
}

#[derive(Default)]
pub struct State {
    /// The `ip berth` table (`None`: absent).
    pub table: Option<Vec<NfListObject<'static>>>,
    pub calls: Vec<Call>,
    /// Read-backs of the table so far.
    pub reads: usize,
    /// The next call of this kind fails with this message instead.
    pub fail: Option<(Call, String)>,
}

#[derive(Default)]
pub struct FakeFirewall {
    state: Mutex<State>,
}

impl FakeFirewall {
    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().expect("fake firewall lock"))
    }

    fn call(&self, call: Call, f: impl FnOnce(&mut State)) -> Result<(), NetworkError> {
        self.with(|s| {
            if s.fail.as_ref().is_some_and(|(failing, _)| *failing == call) {
                let (_, message) = s.fail.take().expect("checked above");
                return Err(NetworkError::Kernel(format!("fake: {message}")));
            }
            s.calls.push(call);
            f(s);
            Ok(())
        })
    }
}

impl Firewall for FakeFirewall {
    fn read_table(&self) -> Result<Option<Vec<Value>>, NetworkError> {
        self.with(|s| {
            s.reads += 1;
            s.table.as_deref().map(ruleset::comparable).transpose()
        })
    }

    fn replace_table(&self, objects: &[NfListObject<'static>]) -> Result<(), NetworkError> {
        self.call(Call::Replace, |s| s.table = Some(objects.to_vec()))
    }

    fn delete_table(&self) -> Result<(), NetworkError> {
        self.call(Call::Delete, |s| s.table = None)
    }

    fn forget_udp_flows(&self, backend: Ipv4Addr) -> Result<(), NetworkError> {
        self.call(Call::ForgetUdpFlows(backend), |_| {})
    }
}
