//! The services this node's DNS servers were asked about and whose serving
//! tasks the node does not hold yet (docs/design/dispatcher.md, "Endpoints by
//! interest"). A server that gets such a name asks for the service here and
//! waits until its tasks are in the kernel (DNS table and load balancer); the
//! session tells the leader (`Follow`).
//!
//! When the leader sends endpoints only on demand (`heads_on_demand`), a name
//! the tables do not have may still be a service's: the server asks for the
//! name itself and waits until the leader answered it (the endpoints of its
//! services, if any, are then in the kernel).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// Shared by the network plane, its DNS servers and the session.
#[derive(Debug)]
pub struct Following {
    /// Asked for by a DNS server (grows; the leader keeps following them).
    wanted: watch::Sender<BTreeSet<String>>,
    /// Followed, with their tasks in the DNS tables and the load balancer.
    ready: watch::Sender<BTreeSet<String>>,
    /// Names asked for by a DNS server (grows).
    wanted_names: watch::Sender<BTreeSet<String>>,
    /// Names the leader answered, in what the kernel holds.
    answered: watch::Sender<BTreeSet<String>>,
    /// The leader sends endpoints on demand: names are asked for.
    by_name: AtomicBool,
}

impl Default for Following {
    fn default() -> Self {
        Following {
            wanted: watch::channel(BTreeSet::new()).0,
            ready: watch::channel(BTreeSet::new()).0,
            wanted_names: watch::channel(BTreeSet::new()).0,
            answered: watch::channel(BTreeSet::new()).0,
            by_name: AtomicBool::new(false),
        }
    }
}

/// The longest name worth asking the leader for: `tasks.` and a service
/// name of at most 63 characters (naming.rs on the controller).
const MAX_ASKED_NAME: usize = 6 + 63;

/// Services, and names, asked for at most (the leader keeps as many a
/// session): a container that looks up ever new names does not grow the
/// agent without bound; a name beyond it is answered without asking.
pub const MAX_ASKED: usize = 65_536;

impl Following {
    /// Asks for `service_id` and waits until its tasks are in the kernel, at
    /// most `wait`; true when they are.
    pub async fn follow(&self, service_id: &str, wait: Duration) -> bool {
        ask_and_wait(&self.wanted, &self.ready, service_id, wait).await
    }

    /// What the DNS servers asked for, for the session to tell the leader.
    pub fn wanted(&self) -> watch::Receiver<BTreeSet<String>> {
        self.wanted.subscribe()
    }

    /// Whether a name the tables lack is asked for ([`Following::ask_name`]).
    /// A reverse lookup or a name too long for a service is never asked.
    pub fn asks_for(&self, name: &str) -> bool {
        self.by_name.load(Ordering::Relaxed)
            && !name.is_empty()
            && name.len() <= MAX_ASKED_NAME
            && !name.ends_with(".arpa")
    }

    /// Asks for `name` (normalised: lower-case, no trailing dot) and waits
    /// until the leader answered it and what it follows for it is in the
    /// kernel, at most `wait`; true when it was answered. A name the leader
    /// did not answer in time (no session: the controllers are out of
    /// reach) counts as answered until the next set says otherwise, so that
    /// an outage costs one wait per name, not one per query.
    pub async fn ask_name(&self, name: &str, wait: Duration) -> bool {
        let answered = ask_and_wait(&self.wanted_names, &self.answered, name, wait).await;
        if !answered {
            self.answered
                .send_if_modified(|answered| answered.insert(name.to_string()));
        }
        answered
    }

    /// The names the DNS servers asked for, for the session to tell the leader.
    pub fn wanted_names(&self) -> watch::Receiver<BTreeSet<String>> {
        self.wanted_names.subscribe()
    }

    /// What the kernel now holds came from a leader that sends endpoints
    /// on demand (`by_name`) and answered `answered`.
    pub fn set_answered(&self, by_name: bool, answered: BTreeSet<String>) {
        self.by_name.store(by_name, Ordering::Relaxed);
        self.answered.send_if_modified(|current| {
            let changed = *current != answered;
            *current = answered;
            changed
        });
    }

    /// The services followed in what the kernel now holds.
    pub fn set_ready(&self, followed: BTreeSet<String>) {
        self.ready.send_if_modified(|ready| {
            let changed = *ready != followed;
            *ready = followed;
            changed
        });
    }
}

/// Unless `done` holds `key` already, adds it to `wanted` and waits until
/// `done` holds it, at most `wait`; true when it does.
async fn ask_and_wait(
    wanted: &watch::Sender<BTreeSet<String>>,
    done: &watch::Sender<BTreeSet<String>>,
    key: &str,
    wait: Duration,
) -> bool {
    let mut done = done.subscribe();
    if done.borrow_and_update().contains(key) {
        return true;
    }
    let mut asked = false;
    wanted.send_if_modified(|wanted| {
        asked = wanted.contains(key) || wanted.len() < MAX_ASKED;
        asked && wanted.insert(key.to_string())
    });
    if !asked {
        return false;
    }
    let arrived = done.wait_for(|done| done.contains(key));
    matches!(tokio::time::timeout(wait, arrived).await, Ok(Ok(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_follow_is_asked_once_and_ends_when_the_service_is_ready() {
        let following = std::sync::Arc::new(Following::default());
        let mut wanted = following.wanted();
        let asking = {
            let following = std::sync::Arc::clone(&following);
            tokio::spawn(async move { following.follow("s1", Duration::from_secs(5)).await })
        };
        wanted.changed().await.expect("asked");
        assert_eq!(
            wanted.borrow_and_update().iter().collect::<Vec<_>>(),
            ["s1"]
        );
        following.set_ready(["s1".to_string()].into());
        assert!(asking.await.expect("the ask ends"), "ready in time");
        // Ready already: answered at once, nothing asked again.
        assert!(following.follow("s1", Duration::ZERO).await);
        assert!(!wanted.has_changed().expect("open"));
    }

    #[tokio::test]
    async fn a_name_is_asked_for_once_and_ends_when_the_leader_answered_it() {
        let following = std::sync::Arc::new(Following::default());
        assert!(!following.asks_for("db"), "not before the leader says so");
        following.set_answered(true, BTreeSet::new());
        assert!(following.asks_for("db"));
        assert!(!following.asks_for("4.3.2.1.in-addr.arpa"));
        assert!(!following.asks_for(&"x".repeat(70)));
        let mut wanted = following.wanted_names();
        let asking = {
            let following = std::sync::Arc::clone(&following);
            tokio::spawn(async move { following.ask_name("db", Duration::from_secs(5)).await })
        };
        wanted.changed().await.expect("asked");
        assert_eq!(
            wanted.borrow_and_update().iter().collect::<Vec<_>>(),
            ["db"]
        );
        following.set_answered(true, ["db".to_string()].into());
        assert!(asking.await.expect("the ask ends"), "answered in time");
        assert!(following.ask_name("db", Duration::ZERO).await);
        assert!(!wanted.has_changed().expect("open"));
    }

    #[tokio::test]
    async fn no_more_than_max_asked_names_are_asked_for() {
        let following = Following::default();
        following.wanted_names.send_modify(|wanted| {
            wanted.extend((0..MAX_ASKED).map(|i| format!("n{i}")));
        });
        let started = std::time::Instant::now();
        assert!(!following.ask_name("one-more", Duration::from_secs(5)).await);
        assert!(started.elapsed() < Duration::from_secs(1), "not waited for");
        assert!(!following.wanted_names().borrow().contains("one-more"));
    }

    #[tokio::test]
    async fn a_name_not_answered_in_time_is_not_waited_for_again_until_the_next_set() {
        let following = Following::default();
        following.set_answered(true, BTreeSet::new());
        assert!(!following.ask_name("api", Duration::from_millis(20)).await);
        let started = std::time::Instant::now();
        assert!(following.ask_name("api", Duration::from_secs(5)).await);
        assert!(started.elapsed() < Duration::from_secs(1), "not waited for");
        // The next set (a session again) does not have it: asked again.
        following.set_answered(true, BTreeSet::new());
        assert!(!following.ask_name("api", Duration::from_millis(20)).await);
    }

    #[tokio::test]
    async fn a_follow_that_does_not_arrive_in_time_gives_up() {
        let following = Following::default();
        assert!(!following.follow("s2", Duration::from_millis(20)).await);
        assert!(following.wanted().borrow().contains("s2"), "still wanted");
    }
}
