//! Drain before stop, the agent's half: a task that served through a VIP, DNS
//! or a published port leaves every node's load balancer and DNS before it
//! gets its stop signal. The leader tells each set's shared sequence and the
//! sequence every live node has applied (`applied_everywhere`); a task told to
//! stop in a set of sequence S waits until the latter reaches S, and never
//! longer than [`DRAIN_BOUND`], so a node that is slow or gone never holds a
//! stop up. See agent.md, "Drain before stop".

use std::collections::HashSet;
use std::time::Duration;

use berth_proto::v1::{Assignments, TaskHealth};
use tokio::sync::watch;

/// The longest a stop waits for every node to acknowledge the endpoint change.
pub const DRAIN_BOUND: Duration = Duration::from_secs(1);

/// What the current assignment set says about endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// The set's shared sequence.
    pub shared_seq: u64,
    /// Services whose endpoint still has tasks that serve.
    serving: HashSet<String>,
}

impl Endpoints {
    pub fn from_assignments(set: &Assignments) -> Endpoints {
        Endpoints {
            shared_seq: set.shared_seq,
            serving: set
                .endpoints
                .iter()
                .filter(|e| !e.tasks.is_empty())
                .map(|e| e.service_id.clone())
                .collect(),
        }
    }

    /// The shared sequence a task of `service_id` told to stop now must see
    /// applied everywhere first; `None` to stop at once: its service has no
    /// endpoint (no VIP or published port, or the service was removed) or no
    /// task serves any more (scaled to 0), so there is nowhere else for new
    /// connections to go and nothing is gained by waiting.
    pub fn drain_target(&self, service_id: &str) -> Option<u64> {
        self.serving.contains(service_id).then_some(self.shared_seq)
    }
}

/// Whether a running task with this health was taking connections (one still
/// starting, or unhealthy, was left out of the endpoints already).
pub fn was_serving(health: TaskHealth) -> bool {
    matches!(health, TaskHealth::None | TaskHealth::Healthy)
}

/// Waits until `applied_everywhere` reaches `target`, or [`DRAIN_BOUND`].
/// True when every node acknowledged in time.
pub async fn wait(mut applied_everywhere: watch::Receiver<u64>, target: u64) -> bool {
    matches!(
        tokio::time::timeout(
            DRAIN_BOUND,
            applied_everywhere.wait_for(|seq| *seq >= target)
        )
        .await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{Endpoint, EndpointTask};

    fn endpoint(service: &str, tasks: &[&str]) -> Endpoint {
        Endpoint {
            service_id: service.into(),
            tasks: tasks
                .iter()
                .map(|t| EndpointTask {
                    task_id: t.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_service_that_still_serves_makes_a_stop_wait() {
        let set = Assignments {
            shared_seq: 40,
            endpoints: vec![endpoint("web", &["t2", "t3"]), endpoint("zero", &[])],
            ..Default::default()
        };
        let endpoints = Endpoints::from_assignments(&set);
        assert_eq!(endpoints.drain_target("web"), Some(40));
        assert_eq!(endpoints.drain_target("zero"), None, "scaled to 0");
        assert_eq!(
            endpoints.drain_target("batch"),
            None,
            "no VIP or port, or the service is gone"
        );
    }

    #[test]
    fn starting_and_unhealthy_tasks_served_nothing() {
        assert!(was_serving(TaskHealth::None));
        assert!(was_serving(TaskHealth::Healthy));
        assert!(!was_serving(TaskHealth::Starting));
        assert!(!was_serving(TaskHealth::Unhealthy));
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_ends_on_the_watermark_or_the_bound() {
        let (tx, rx) = watch::channel(5);
        let started = tokio::time::Instant::now();
        let waiting = tokio::spawn(wait(rx.clone(), 7));
        tokio::time::sleep(Duration::from_millis(30)).await;
        tx.send_replace(7);
        assert!(waiting.await.expect("the wait"), "acknowledged everywhere");
        assert!(started.elapsed() < Duration::from_millis(100));

        let started = tokio::time::Instant::now();
        assert!(!wait(rx, 9).await, "a node never acknowledged");
        assert_eq!(started.elapsed(), DRAIN_BOUND);
    }
}
