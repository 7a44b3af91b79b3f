//! The services this node's DNS servers were asked about and whose serving
//! tasks the node does not hold yet (docs/design/dispatcher.md, "Endpoints by
//! interest"). A server that gets such a name asks for the service here and
//! waits until its tasks are in the kernel (DNS table and load balancer); the
//! session tells the leader (`Follow`).

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::watch;

/// Shared by the network plane, its DNS servers and the session.
#[derive(Debug)]
pub struct Following {
    /// Asked for by a DNS server (grows; the leader keeps following them).
    wanted: watch::Sender<BTreeSet<String>>,
    /// Followed, with their tasks in the DNS tables and the load balancer.
    ready: watch::Sender<BTreeSet<String>>,
}

impl Default for Following {
    fn default() -> Self {
        Following {
            wanted: watch::channel(BTreeSet::new()).0,
            ready: watch::channel(BTreeSet::new()).0,
        }
    }
}

impl Following {
    /// Asks for `service_id` and waits until its tasks are in the kernel, at
    /// most `wait`; true when they are.
    pub async fn follow(&self, service_id: &str, wait: Duration) -> bool {
        let mut ready = self.ready.subscribe();
        if ready.borrow_and_update().contains(service_id) {
            return true;
        }
        self.wanted
            .send_if_modified(|wanted| wanted.insert(service_id.to_string()));
        let arrived = ready.wait_for(|ready| ready.contains(service_id));
        matches!(tokio::time::timeout(wait, arrived).await, Ok(Ok(_)))
    }

    /// What the DNS servers asked for, for the session to tell the leader.
    pub fn wanted(&self) -> watch::Receiver<BTreeSet<String>> {
        self.wanted.subscribe()
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
    async fn a_follow_that_does_not_arrive_in_time_gives_up() {
        let following = Following::default();
        assert!(!following.follow("s2", Duration::from_millis(20)).await);
        assert!(following.wanted().borrow().contains("s2"), "still wanted");
    }
}
