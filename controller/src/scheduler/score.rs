//! Choosing among the nodes that can take a task: spread the service first
//! (fewest tasks of the same service), then least allocated (reserved share),
//! then node order (for determinism).

use super::filter::{Request, load_check};
use super::resources::NodeLoad;

/// The nodes that passed the static filters for one batch, with the number of
/// tasks of the batch's service on each (kept up to date while placing).
#[derive(Clone, Debug, Default)]
pub struct Candidates {
    /// Indexes into the node list.
    pub nodes: Vec<usize>,
    pub same_service: Vec<u32>,
}

impl Candidates {
    pub fn new(nodes: Vec<usize>, loads: &[NodeLoad], service_id: &str) -> Self {
        let same_service = nodes
            .iter()
            .map(|&i| {
                loads
                    .get(i)
                    .and_then(|l| l.per_service.get(service_id))
                    .copied()
                    .unwrap_or(0)
            })
            .collect();
        Candidates {
            nodes,
            same_service,
        }
    }

    /// The position (in `nodes`) of the best node that can take `request`.
    pub fn pick(&self, loads: &[NodeLoad], request: &Request<'_>) -> Option<usize> {
        let mut best: Option<(usize, u32, f64)> = None;
        for (pos, (&node, &count)) in self.nodes.iter().zip(&self.same_service).enumerate() {
            if let Some((_, best_count, _)) = best
                && count > best_count
            {
                continue;
            }
            let Some(load) = loads.get(node) else {
                continue;
            };
            if load_check(load, request).is_err() {
                continue;
            }
            let share = load.allocated_share();
            let better = match best {
                None => true,
                Some((_, best_count, best_share)) => {
                    count < best_count || (count == best_count && share < best_share)
                }
            };
            if better {
                best = Some((pos, count, share));
            }
        }
        best.map(|(pos, _, _)| pos)
    }

    /// Records that the node at `pos` took one more task of the service.
    pub fn placed(&mut self, pos: usize) {
        if let Some(c) = self.same_service.get_mut(pos) {
            *c += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::resources::Demand;

    fn load(cpu: u64, reserved: u64) -> NodeLoad {
        let mut l = NodeLoad::default();
        l.capacity.milli_cpus = cpu;
        l.reserved.milli_cpus = reserved;
        l
    }

    fn req(cpu: u64) -> Request<'static> {
        Request {
            constraints: &[],
            demand: Demand {
                milli_cpus: cpu,
                memory_bytes: 0,
            },
            ports: &[],
        }
    }

    #[test]
    fn fewest_tasks_of_the_service_wins_over_free_resources() {
        let mut loads = vec![load(1000, 900), load(8000, 0)];
        loads[1].add("web", Demand::default(), &[]);
        let c = Candidates::new(vec![0, 1], &loads, "web");
        assert_eq!(c.same_service, vec![0, 1]);
        assert_eq!(c.pick(&loads, &req(100)), Some(0));
    }

    #[test]
    fn then_least_allocated_then_first() {
        let loads = vec![load(1000, 500), load(1000, 100), load(1000, 100)];
        let c = Candidates::new(vec![0, 1, 2], &loads, "web");
        assert_eq!(c.pick(&loads, &req(100)), Some(1));
    }

    #[test]
    fn nodes_that_cannot_take_it_are_skipped() {
        let loads = vec![load(1000, 950), load(1000, 990)];
        let mut c = Candidates::new(vec![0, 1], &loads, "web");
        assert_eq!(c.pick(&loads, &req(50)), Some(0));
        assert_eq!(c.pick(&loads, &req(100)), None);
        c.placed(0);
        assert_eq!(c.same_service, vec![1, 0]);
    }
}
