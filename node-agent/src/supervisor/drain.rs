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
    /// The tasks that serve through an endpoint (of any node).
    serving_tasks: HashSet<String>,
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
            serving_tasks: set
                .endpoints
                .iter()
                .flat_map(|e| e.tasks.iter().map(|t| t.task_id.clone()))
                .collect(),
        }
    }

    /// Whether `task_id` serves through its service's endpoint in this set.
    pub fn serves(&self, task_id: &str) -> bool {
        self.serving_tasks.contains(task_id)
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

/// An unhealthy task is stopped by its own agent, not by the leader: it left
/// the endpoints once the leader heard it turned unhealthy. Waits until a set
/// no longer lists it, then until every node applied that set, at most
/// [`DRAIN_BOUND`] in all. None when it did not serve (nothing to wait for);
/// else whether every node acknowledged in time.
pub async fn wait_left(
    mut sets: watch::Receiver<Endpoints>,
    applied_everywhere: watch::Receiver<u64>,
    task_id: &str,
) -> Option<bool> {
    if !sets.borrow().serves(task_id) {
        return None;
    }
    let left = async {
        let seq = match sets.wait_for(|set| !set.serves(task_id)).await {
            Ok(set) => set.shared_seq,
            Err(_) => return false,
        };
        wait(applied_everywhere, seq).await
    };
    Some(matches!(
        tokio::time::timeout(DRAIN_BOUND, left).await,
        Ok(true)
    ))
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

    #[tokio::test(start_paused = true)]
    async fn an_unhealthy_task_waits_until_it_left_every_node() {
        let serving = Assignments {
            shared_seq: 10,
            endpoints: vec![endpoint("web", &["t1", "t2"])],
            ..Default::default()
        };
        let left = Assignments {
            shared_seq: 11,
            endpoints: vec![endpoint("web", &["t2"])],
            ..Default::default()
        };
        let (sets, sets_rx) = watch::channel(Endpoints::from_assignments(&serving));
        let (applied, applied_rx) = watch::channel(10);
        assert!(Endpoints::from_assignments(&serving).serves("t1"));
        assert_eq!(
            wait_left(sets_rx.clone(), applied_rx.clone(), "t9").await,
            None,
            "a task that served nothing stops at once"
        );
        let started = tokio::time::Instant::now();
        let waiting = tokio::spawn(wait_left(sets_rx.clone(), applied_rx.clone(), "t1"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        sets.send_replace(Endpoints::from_assignments(&left));
        tokio::time::sleep(Duration::from_millis(20)).await;
        applied.send_replace(11);
        assert_eq!(waiting.await.expect("the wait"), Some(true));
        assert!(started.elapsed() < Duration::from_millis(100));
        // The leader never says: the bound ends the wait.
        sets.send_replace(Endpoints::from_assignments(&serving));
        let started = tokio::time::Instant::now();
        assert_eq!(wait_left(sets_rx, applied_rx, "t1").await, Some(false));
        assert_eq!(started.elapsed(), DRAIN_BOUND);
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
