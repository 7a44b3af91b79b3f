//! `rm` verbs that take several names (`berth service rm a b`, as `docker
//! service rm a b`): each is tried in turn, a failure does not stop the rest,
//! and the command fails naming those that were not removed.

use anyhow::bail;

use crate::client::explain;

/// What one `rm` of several names has done so far.
pub struct Removals {
    /// "service", "network", ...: for the messages.
    what: &'static str,
    failed: Vec<String>,
}

impl Removals {
    pub fn new(what: &'static str) -> Removals {
        Removals {
            what,
            failed: Vec::new(),
        }
    }

    /// Records the outcome of removing `name`: prints it, or says why not on
    /// stderr.
    pub fn record<T>(&mut self, name: String, outcome: Result<T, tonic::Status>) {
        match outcome {
            Ok(_) => println!("removed {} {name}", self.what),
            Err(status) => {
                eprintln!("berth: {} {name}: {:#}", self.what, explain(status));
                self.failed.push(name);
            }
        }
    }

    /// Fails when any name was not removed.
    pub fn finish(self) -> anyhow::Result<()> {
        if !self.failed.is_empty() {
            bail!("not removed: {}", self.failed.join(", "));
        }
        Ok(())
    }
}
