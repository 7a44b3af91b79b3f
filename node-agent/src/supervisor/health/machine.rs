//! The health state machine, free of time and effects: fed each probe's
//! result and how long after the container's start it came.

use std::time::Duration;

use berth_proto::v1::TaskHealth;

/// Health of one running container.
#[derive(Clone, Debug)]
pub struct HealthMachine {
    retries: u32,
    start_period: Duration,
    /// Failures in a row that count (outside the start period).
    failures: u32,
    health: TaskHealth,
}

impl HealthMachine {
    /// A container just started: `starting`.
    pub fn new(retries: u32, start_period: Duration) -> HealthMachine {
        HealthMachine {
            retries: retries.max(1),
            start_period,
            failures: 0,
            health: TaskHealth::Starting,
        }
    }

    #[cfg(test)]
    pub fn health(&self) -> TaskHealth {
        self.health
    }

    /// Takes one probe's result, `since_start` after the container started;
    /// returns the new health if it changed. A pass makes it healthy (also in
    /// the start period); `retries` failures in a row, none of them in the
    /// start period, make it unhealthy.
    pub fn observe(&mut self, passed: bool, since_start: Duration) -> Option<TaskHealth> {
        let next = if passed {
            self.failures = 0;
            TaskHealth::Healthy
        } else if since_start < self.start_period {
            self.health
        } else {
            self.failures = self.failures.saturating_add(1);
            if self.failures >= self.retries {
                TaskHealth::Unhealthy
            } else {
                self.health
            }
        };
        let changed = next != self.health;
        self.health = next;
        changed.then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_pass_makes_a_starting_task_healthy() {
        let mut m = HealthMachine::new(3, Duration::ZERO);
        assert_eq!(m.health(), TaskHealth::Starting);
        assert_eq!(m.observe(true, S), Some(TaskHealth::Healthy));
        assert_eq!(m.observe(true, 2 * S), None);
    }

    #[test]
    fn retries_failures_in_a_row_make_it_unhealthy() {
        let mut m = HealthMachine::new(3, Duration::ZERO);
        assert_eq!(m.observe(true, S), Some(TaskHealth::Healthy));
        assert_eq!(m.observe(false, S), None);
        assert_eq!(m.observe(false, S), None);
        // A pass in between starts the count again.
        assert_eq!(m.observe(true, S), None);
        assert_eq!(m.observe(false, S), None);
        assert_eq!(m.observe(false, S), None);
        assert_eq!(m.observe(false, S), Some(TaskHealth::Unhealthy));
        assert_eq!(m.observe(true, S), Some(TaskHealth::Healthy));
    }

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        let mut m = HealthMachine::new(2, 10 * S);
        for t in 1..10 {
            assert_eq!(m.observe(false, t * S), None);
        }
        assert_eq!(m.health(), TaskHealth::Starting);
        assert_eq!(m.observe(false, 10 * S), None);
        assert_eq!(m.observe(false, 11 * S), Some(TaskHealth::Unhealthy));
        // A starting task that never passed fails after `retries` too.
        let mut m = HealthMachine::new(1, Duration::ZERO);
        assert_eq!(m.observe(false, S), Some(TaskHealth::Unhealthy));
    }

    #[test]
    fn zero_retries_means_one() {
        let mut m = HealthMachine::new(0, Duration::ZERO);
        assert_eq!(m.observe(false, S), Some(TaskHealth::Unhealthy));
    }
}
