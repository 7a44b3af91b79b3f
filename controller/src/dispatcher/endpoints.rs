//! The services as the overlay sees them: per service its VIPs, published ports
//! and the tasks that can take connections. Every agent gets every endpoint
//! (its DNS answers the names of the services on its networks), but the
//! serving tasks only of those it follows (dispatcher.md, "Endpoints by
//! interest"): every node follows the services that publish ports (its load
//! balancer publishes every ingress port: the routing mesh) and those without
//! a VIP (dnsrr).

use std::collections::HashSet;

use berth_proto::v1::{Endpoint, EndpointTask, Node, NodeStatus, Service, Task, TaskState};

/// A task takes connections when it runs, should run, passed its health check
/// if it has one, and its node is not down (a cut-off node's tasks leave the
/// answers once the node is declared down).
fn serving(task: &Task, down: &HashSet<&str>) -> bool {
    task.is_ready()
        && task.desired_state == TaskState::Running as i32
        && !down.contains(task.node_id.as_str())
        && !task.addresses.is_empty()
}

/// Every node follows a service that publishes ports (a connection to the
/// port on any node reaches its tasks: the routing mesh) and one without a
/// VIP (dnsrr); the agents read the same rule.
pub use berth_proto::assignments::followed_by_all;

/// Ids of the nodes declared down.
pub fn down_nodes<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> HashSet<&'a str> {
    nodes
        .into_iter()
        .filter(|n| n.status == NodeStatus::Down as i32)
        .map(|n| n.id.as_str())
        .collect()
}

/// The endpoint of one service from its tasks (any order); `None` for a
/// service without VIP or published ports that is not dnsrr (a dnsrr
/// service's endpoint is what its DNS name answers: the tasks' addresses).
pub fn endpoint<'a>(
    service: &Service,
    tasks: impl IntoIterator<Item = &'a Task>,
    down: &HashSet<&str>,
) -> Option<Endpoint> {
    let spec = service.spec.as_ref()?;
    let dnsrr = spec.endpoint_mode == berth_proto::v1::EndpointMode::Dnsrr as i32;
    if service.virtual_ips.is_empty() && spec.ports.is_empty() && !dnsrr {
        return None;
    }
    let mut serving: Vec<EndpointTask> = tasks
        .into_iter()
        .filter(|t| serving(t, down))
        .map(|task| EndpointTask {
            task_id: task.id.clone(),
            node_id: task.node_id.clone(),
            addresses: task.addresses.clone(),
        })
        .collect();
    serving.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    Some(Endpoint {
        service_id: service.id.clone(),
        service_name: spec.name.clone(),
        virtual_ips: service.virtual_ips.clone(),
        ports: spec.ports.clone(),
        tasks: serving,
        aliases: spec.aliases.clone(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use berth_proto::v1::{PortConfig, ServiceSpec, TaskHealth, TaskStatus};

    fn service(id: &str, name: &str, vip: Option<&str>, ports: Vec<PortConfig>) -> Service {
        Service {
            id: id.into(),
            spec: Some(ServiceSpec {
                name: name.into(),
                ports,
                ..Default::default()
            }),
            virtual_ips: vip
                .map(|v| [("berth".to_string(), v.parse().expect("vip"))].into())
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    fn task(id: &str, service: &str, node: &str, observed: TaskState, desired: TaskState) -> Task {
        Task {
            id: id.into(),
            service_id: service.into(),
            node_id: node.into(),
            desired_state: desired as i32,
            status: Some(TaskStatus {
                state: observed as i32,
                ..Default::default()
            }),
            addresses: [(
                "berth".to_string(),
                format!("10.96.0.{}/26", id.len()).parse().expect("address"),
            )]
            .into(),
            ..Default::default()
        }
    }

    pub(crate) fn node(id: &str, status: NodeStatus) -> Node {
        Node {
            id: id.into(),
            status: status as i32,
            ..Default::default()
        }
    }

    #[test]
    fn only_running_tasks_on_live_nodes_serve() {
        use TaskState::*;
        let services = [
            service("s1", "web", Some("10.96.240.2/16"), vec![]),
            service("s2", "batch", None, vec![]),
        ];
        let tasks = [
            task("t1", "s1", "n1", Running, Running),
            task("t2", "s1", "n2", Running, Running),
            task("t3", "s1", "n1", Starting, Running),
            task("t4", "s1", "n1", Running, Shutdown),
            task("t5", "s1", "n3", Running, Running),
            task("t6", "s2", "n1", Running, Running),
        ];
        let nodes = [
            node("n1", NodeStatus::Ready),
            node("n2", NodeStatus::Ready),
            node("n3", NodeStatus::Down),
        ];
        let down = down_nodes(&nodes);
        let of = |service: &Service| {
            endpoint(
                service,
                tasks.iter().filter(|t| t.service_id == service.id),
                &down,
            )
        };
        assert!(
            of(&services[1]).is_none(),
            "a service without VIP or ports has no endpoint"
        );
        let web = of(&services[0]).expect("a service with a VIP has an endpoint");
        let ids: Vec<&str> = web.tasks.iter().map(|t| t.task_id.as_str()).collect();
        assert_eq!(ids, ["t1", "t2"]);
        assert_eq!(web.virtual_ips["berth"].to_string(), "10.96.240.2/16");
    }

    #[test]
    fn a_checked_task_serves_only_once_healthy() {
        let web = service("s1", "web", Some("10.96.240.2/16"), vec![]);
        let with = |id: &str, health: TaskHealth| {
            let mut t = task(id, "s1", "n1", TaskState::Running, TaskState::Running);
            if let Some(s) = t.status.as_mut() {
                s.health = health as i32;
            }
            t
        };
        let tasks = [
            with("t1", TaskHealth::None),
            with("t2", TaskHealth::Starting),
            with("t3", TaskHealth::Healthy),
            with("t4", TaskHealth::Unhealthy),
        ];
        let ep = endpoint(&web, &tasks, &down_nodes([])).expect("an endpoint");
        let ids: Vec<&str> = ep.tasks.iter().map(|t| t.task_id.as_str()).collect();
        assert_eq!(ids, ["t1", "t3"]);
    }

    #[test]
    fn published_ports_alone_make_an_endpoint() {
        let port = PortConfig {
            target_port: 80,
            published_port: 8080,
            ..Default::default()
        };
        let ep = endpoint(&service("s1", "web", None, vec![port]), [], &down_nodes([]))
            .expect("published ports alone make an endpoint");
        assert!(ep.tasks.is_empty());
        assert_eq!(ep.ports[0].published_port, 8080);
    }

    #[test]
    fn a_dnsrr_service_has_an_endpoint_without_a_vip() {
        let mut rr = service("s1", "db", None, vec![]);
        if let Some(spec) = rr.spec.as_mut() {
            spec.endpoint_mode = berth_proto::v1::EndpointMode::Dnsrr as i32;
        }
        let tasks = [task(
            "t1",
            "s1",
            "n1",
            TaskState::Running,
            TaskState::Running,
        )];
        let ep = endpoint(&rr, &tasks, &down_nodes([])).expect("a dnsrr endpoint");
        assert!(ep.virtual_ips.is_empty());
        assert_eq!(ep.tasks.len(), 1);
    }
}
