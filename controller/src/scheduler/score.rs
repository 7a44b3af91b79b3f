//! Choosing among the nodes that can take a task: the service's placement
//! preferences first (`spread.rs`), then spread the service (fewest tasks of
//! the same service), then least allocated (reserved share), then fewest
//! tasks in all (tasks that reserve nothing leave every share at zero:
//! without this, 1,000 services of 20 replicas all went to the same 20
//! nodes), then node order (for determinism).

use berth_proto::v1::Node;

use super::filter::{Request, load_check};
use super::resources::NodeLoad;
use super::spread;

/// The nodes that passed the static filters for one batch, with the number of
/// tasks of the batch's service on each (kept up to date while placing).
#[derive(Clone, Debug, Default)]
pub struct Candidates {
    /// Indexes into the node list.
    pub nodes: Vec<usize>,
    pub same_service: Vec<u32>,
    /// Each node's branch in the preference tree (empty: no preferences).
    pub paths: Vec<spread::Path>,
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
            paths: Vec::new(),
        }
    }

    /// Spreads over the values of `labels` (in order) before anything else.
    pub fn spread_over(mut self, all: &[Node], labels: &[String]) -> Self {
        if !labels.is_empty() {
            self.paths = self
                .nodes
                .iter()
                .map(|&i| {
                    all.get(i)
                        .map_or_else(Vec::new, |n| spread::path_of(n, labels))
                })
                .collect();
        }
        self
    }

    /// The position (in `nodes`) of the best node that can take `request`.
    pub fn pick(&self, loads: &[NodeLoad], request: &Request<'_>) -> Option<usize> {
        if self.paths.is_empty() {
            return self.pick_among(loads, request, 0..self.nodes.len());
        }
        let fitting = (0..self.nodes.len())
            .filter(|&pos| {
                loads
                    .get(self.nodes[pos])
                    .is_some_and(|l| load_check(l, request).is_ok())
            })
            .collect();
        let leaf = spread::narrow(&self.paths, &self.same_service, fitting);
        self.pick_among(loads, request, leaf)
    }

    /// The best of the positions `among`: fewest of the service, then least
    /// allocated, then fewest tasks in all, then first.
    fn pick_among(
        &self,
        loads: &[NodeLoad],
        request: &Request<'_>,
        among: impl IntoIterator<Item = usize>,
    ) -> Option<usize> {
        // (position, tasks of the service, allocated share, tasks in all)
        let mut best: Option<(usize, u32, f64, u32)> = None;
        for pos in among {
            let (Some(&node), Some(&count)) = (self.nodes.get(pos), self.same_service.get(pos))
            else {
                continue;
            };
            if let Some((_, best_count, _, _)) = best
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
                Some((_, best_count, best_share, best_tasks)) => {
                    (count, share, load.tasks).partial_cmp(&(best_count, best_share, best_tasks))
                        == Some(std::cmp::Ordering::Less)
                }
            };
            if better {
                best = Some((pos, count, share, load.tasks));
            }
        }
        best.map(|(pos, ..)| pos)
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
            service_id: "web",
            max_per_node: 0,
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
    fn then_fewest_tasks_in_all_when_nothing_is_reserved() {
        let mut loads = vec![load(1000, 0), load(1000, 0), load(1000, 0)];
        loads[0].add("db", Demand::default(), &[]);
        loads[0].add("cache", Demand::default(), &[]);
        loads[1].add("db", Demand::default(), &[]);
        let mut c = Candidates::new(vec![0, 1, 2], &loads, "web");
        assert_eq!(c.pick(&loads, &req(0)), Some(2), "the empty node");
        loads[2].add("web", Demand::default(), &[]);
        c.placed(2);
        assert_eq!(
            c.pick(&loads, &req(0)),
            Some(1),
            "web spreads first, then the node with fewer tasks"
        );
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

    #[test]
    fn preferences_come_before_the_services_spread() {
        let node = |zone: Option<&str>| Node {
            labels: zone
                .map(|z| [("zone".to_string(), z.to_string())].into())
                .unwrap_or_default(),
            ..Default::default()
        };
        let all = vec![node(Some("a")), node(Some("a")), node(Some("b"))];
        let mut loads = vec![load(1000, 0), load(1000, 0), load(1000, 0)];
        loads[2].add("web", Demand::default(), &[]);
        let mut c =
            Candidates::new(vec![0, 1, 2], &loads, "web").spread_over(&all, &["zone".into()]);
        // Zone a has none of web's tasks: one of its nodes, though b's node
        // holds only one.
        assert_eq!(c.pick(&loads, &req(100)), Some(0));
        c.placed(0);
        // Zones have one each: a first by value, then its emptier node.
        assert_eq!(c.pick(&loads, &req(100)), Some(1));
        // A full zone is passed over.
        loads[0].reserved.milli_cpus = 1000;
        loads[1].reserved.milli_cpus = 1000;
        c.placed(1);
        c.same_service[2] = 5;
        assert_eq!(c.pick(&loads, &req(100)), Some(2));
    }
}
