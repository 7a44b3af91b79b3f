//! The filters a node must pass to take a task, and the message that explains a
//! task nobody can take (reasons aggregated over every node checked).

use std::collections::BTreeMap;

use berth_proto::v1::{Node, NodeAvailability, NodeStatus};

use super::constraint::{Constraint, first_unsatisfied};
use super::resources::{Demand, HostPort, NodeLoad, Shortage, fmt_bytes, fmt_cpus, fmt_port};

/// Ready and active: the only nodes that take new tasks.
pub fn ready_and_active(node: &Node) -> bool {
    node.status == NodeStatus::Ready as i32 && node.availability == NodeAvailability::Active as i32
}

/// What a task asks of a node.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub constraints: &'a [Constraint],
    pub demand: Demand,
    pub ports: &'a [HostPort],
    /// The service whose tasks count against `max_per_node`.
    pub service_id: &'a str,
    /// At most this many of the service's tasks on one node (0: no limit).
    pub max_per_node: u64,
}

/// Why one node cannot take a task, in filter order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    NotReady,
    /// The node's agent cannot build the overlay (its report).
    DataPlane(String),
    Constraint(String),
    Cpu(u64),
    Memory(u64),
    Port(HostPort),
    /// The node has `max_replicas_per_node` of the service's tasks already.
    MaxReplicas(u64),
}

/// "1 replica", "2 replicas".
fn replicas(n: u64) -> String {
    if n == 1 {
        "1 replica".into()
    } else {
        format!("{n} replicas")
    }
}

impl Reason {
    /// "no node {positive}".
    fn positive(&self) -> String {
        match self {
            Reason::NotReady => "is ready and active".into(),
            Reason::DataPlane(why) => format!("has a working data plane ({why})"),
            Reason::Constraint(c) => format!("satisfies {c}"),
            Reason::Cpu(m) => format!("has {} free", fmt_cpus(*m)),
            Reason::Memory(b) => format!("has {} of memory free", fmt_bytes(*b)),
            Reason::Port(p) => format!("has port {} free", fmt_port(*p)),
            Reason::MaxReplicas(n) => format!("has fewer than max {} per node", replicas(*n)),
        }
    }

    /// "{count} {negative}".
    fn negative(&self) -> String {
        match self {
            Reason::NotReady => "not ready and active".into(),
            Reason::DataPlane(why) => format!("with a blocked data plane ({why})"),
            Reason::Constraint(c) => format!("not satisfying {c}"),
            Reason::Cpu(m) => format!("without {} free", fmt_cpus(*m)),
            Reason::Memory(b) => format!("without {} of memory free", fmt_bytes(*b)),
            Reason::Port(p) => format!("with port {} taken", fmt_port(*p)),
            Reason::MaxReplicas(n) => format!("with max {} per node reached", replicas(*n)),
        }
    }
}

/// The static part: status, availability and constraints (what does not change
/// while a batch is placed).
pub fn static_check(node: &Node, request: &Request<'_>) -> Result<(), Reason> {
    if !ready_and_active(node) {
        return Err(Reason::NotReady);
    }
    // Every task joins an overlay network, which this node cannot build.
    if !node.dataplane_conflict.is_empty() {
        return Err(Reason::DataPlane(node.dataplane_conflict.clone()));
    }
    if let Some(c) = first_unsatisfied(request.constraints, node) {
        return Err(Reason::Constraint(c.text.clone()));
    }
    Ok(())
}

/// The dynamic part: the service's tasks already there, free resources and
/// host ports.
pub fn load_check(load: &NodeLoad, request: &Request<'_>) -> Result<(), Reason> {
    if request.max_per_node != 0 {
        let here = load.per_service.get(request.service_id).copied();
        if u64::from(here.unwrap_or(0)) >= request.max_per_node {
            return Err(Reason::MaxReplicas(request.max_per_node));
        }
    }
    match load.fits(request.demand) {
        Err(Shortage::Cpu) => return Err(Reason::Cpu(request.demand.milli_cpus)),
        Err(Shortage::Memory) => return Err(Reason::Memory(request.demand.memory_bytes)),
        Ok(()) => {}
    }
    if let Some(port) = load.taken_port(request.ports) {
        return Err(Reason::Port(port));
    }
    Ok(())
}

/// Why no node takes the request: "no node has 4 GiB of memory free: 3 nodes
/// checked" when every node fails the same way, else the reasons with their
/// counts, most frequent first. `None` when some node would take it.
pub fn explain(nodes: &[Node], loads: &[NodeLoad], request: &Request<'_>) -> Option<String> {
    if nodes.is_empty() {
        return Some("no node is ready and active: the cluster has no nodes".into());
    }
    let mut reasons: BTreeMap<Reason, usize> = BTreeMap::new();
    for (node, load) in nodes.iter().zip(loads) {
        match static_check(node, request).and_then(|()| load_check(load, request)) {
            Ok(()) => return None,
            Err(reason) => *reasons.entry(reason).or_insert(0) += 1,
        }
    }
    let checked = nodes.len();
    let nodes_word = if checked == 1 { "node" } else { "nodes" };
    if reasons.len() == 1 {
        let (reason, _) = reasons.into_iter().next()?;
        if let Reason::MaxReplicas(n) = reason {
            // Swarm's words: not a shortage of the nodes but the service's limit.
            return Some(format!(
                "max {} per node reached on {checked} {nodes_word}",
                replicas(n)
            ));
        }
        return Some(format!(
            "no node {}: {checked} {nodes_word} checked",
            reason.positive()
        ));
    }
    let mut counted: Vec<(Reason, usize)> = reasons.into_iter().collect();
    // Most frequent first; equal counts in filter order (the map's order).
    counted.sort_by_key(|r| std::cmp::Reverse(r.1));
    let parts: Vec<String> = counted
        .iter()
        .map(|(reason, n)| format!("{n} {}", reason.negative()))
        .collect();
    Some(format!(
        "no node fits: {checked} {nodes_word} checked: {}",
        parts.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::Resources;

    fn node(name: &str, zone: &str, mem_gib: u64) -> Node {
        Node {
            id: format!("id-{name}"),
            name: name.into(),
            labels: [("zone".to_string(), zone.to_string())].into(),
            resources: Some(Resources {
                milli_cpus: 4000,
                memory_bytes: mem_gib << 30,
                pids: 0,
            }),
            status: NodeStatus::Ready as i32,
            availability: NodeAvailability::Active as i32,
            ..Default::default()
        }
    }

    fn loads(nodes: &[Node]) -> Vec<NodeLoad> {
        nodes.iter().map(NodeLoad::new).collect()
    }

    fn request(constraints: &[Constraint], mem_gib: u64) -> Request<'_> {
        Request {
            constraints,
            demand: Demand {
                milli_cpus: 0,
                memory_bytes: mem_gib << 30,
            },
            ports: &[],
            service_id: "web",
            max_per_node: 0,
        }
    }

    #[test]
    fn one_reason_everywhere_reads_as_a_sentence() {
        let nodes = vec![node("a", "a", 2), node("b", "a", 3), node("c", "a", 1)];
        let msg = explain(&nodes, &loads(&nodes), &request(&[], 4));
        assert_eq!(
            msg.as_deref(),
            Some("no node has 4 GiB of memory free: 3 nodes checked")
        );
        let cs = vec![Constraint::parse("node.labels.zone==b").expect("parse")];
        let msg = explain(&nodes, &loads(&nodes), &request(&cs, 0));
        assert_eq!(
            msg.as_deref(),
            Some("no node satisfies node.labels.zone==b: 3 nodes checked")
        );
    }

    #[test]
    fn a_node_with_a_blocked_data_plane_takes_no_task_and_says_why() {
        let why = "UDP 4789 VNI 4096 is used by another VXLAN device";
        let mut nodes = vec![node("a", "a", 8)];
        nodes[0].dataplane_conflict = why.into();
        let msg = explain(&nodes, &loads(&nodes), &request(&[], 1));
        assert_eq!(
            msg.as_deref(),
            Some(format!("no node has a working data plane ({why}): 1 node checked").as_str())
        );
        nodes.push(node("b", "a", 8));
        assert_eq!(explain(&nodes, &loads(&nodes), &request(&[], 1)), None);
        let msg = explain(&nodes, &loads(&nodes), &request(&[], 16));
        assert_eq!(
            msg.as_deref(),
            Some(format!("no node fits: 2 nodes checked: 1 with a blocked data plane ({why}), 1 without 16 GiB of memory free").as_str())
        );
    }

    #[test]
    fn nodes_that_are_not_ready_or_active_are_named_as_such() {
        let mut nodes = vec![node("a", "a", 8), node("b", "a", 8)];
        nodes[0].status = NodeStatus::Down as i32;
        nodes[1].availability = NodeAvailability::Drain as i32;
        let msg = explain(&nodes, &loads(&nodes), &request(&[], 1));
        assert_eq!(
            msg.as_deref(),
            Some("no node is ready and active: 2 nodes checked")
        );
        let msg = explain(&[], &[], &request(&[], 1));
        assert_eq!(
            msg.as_deref(),
            Some("no node is ready and active: the cluster has no nodes")
        );
    }

    #[test]
    fn mixed_reasons_are_counted_most_frequent_first() {
        let mut nodes = vec![
            node("a", "b", 2),
            node("b", "b", 2),
            node("c", "a", 16),
            node("d", "b", 16),
        ];
        nodes[3].status = NodeStatus::Down as i32;
        let cs = vec![Constraint::parse("node.labels.zone==b").expect("parse")];
        let msg = explain(&nodes, &loads(&nodes), &request(&cs, 4));
        assert_eq!(
            msg.as_deref(),
            Some(
                "no node fits: 4 nodes checked: 2 without 4 GiB of memory free, \
                 1 not ready and active, 1 not satisfying node.labels.zone==b"
            )
        );
    }

    #[test]
    fn taken_ports_and_cpus_are_reasons_too() {
        let nodes = vec![node("a", "a", 8)];
        let mut l = loads(&nodes);
        l[0].add("other", Demand::default(), &[(0, 80)]);
        let req = Request {
            constraints: &[],
            demand: Demand::default(),
            ports: &[(0, 80)],
            service_id: "web",
            max_per_node: 0,
        };
        assert_eq!(
            explain(&nodes, &l, &req).as_deref(),
            Some("no node has port 80/tcp free: 1 node checked")
        );
        let req = Request {
            constraints: &[],
            demand: Demand {
                milli_cpus: 8000,
                memory_bytes: 0,
            },
            ports: &[],
            service_id: "web",
            max_per_node: 0,
        };
        assert_eq!(
            explain(&nodes, &l, &req).as_deref(),
            Some("no node has 8 CPUs free: 1 node checked")
        );
    }

    #[test]
    fn the_services_limit_per_node_is_said_as_swarm_says_it() {
        let mut nodes = vec![node("a", "a", 8), node("b", "a", 8), node("c", "a", 8)];
        let mut l = loads(&nodes);
        for load in &mut l {
            load.add("web", Demand::default(), &[]);
            load.add("web", Demand::default(), &[]);
        }
        let limited = |max| Request {
            max_per_node: max,
            ..request(&[], 0)
        };
        assert_eq!(
            explain(&nodes, &l, &limited(2)).as_deref(),
            Some("max 2 replicas per node reached on 3 nodes")
        );
        assert_eq!(explain(&nodes, &l, &limited(3)), None);
        assert_eq!(explain(&nodes, &l, &limited(0)), None);
        // Another service's tasks do not count.
        let other = Request {
            service_id: "db",
            ..limited(1)
        };
        assert_eq!(explain(&nodes, &l, &other), None);
        nodes[2].status = NodeStatus::Down as i32;
        assert_eq!(
            explain(&nodes, &l, &limited(1)).as_deref(),
            Some(
                "no node fits: 3 nodes checked: 2 with max 1 replica per node reached, \
                 1 not ready and active"
            )
        );
    }

    #[test]
    fn no_message_when_a_node_fits() {
        let nodes = vec![node("a", "a", 2), node("b", "a", 8)];
        assert_eq!(explain(&nodes, &loads(&nodes), &request(&[], 4)), None);
    }
}
