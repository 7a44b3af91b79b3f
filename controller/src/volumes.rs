//! Named local volumes as the API serves them: who uses a volume (the
//! services whose spec mounts it and the tasks that mount it and have not
//! ended), read from the cluster view. `volume rm` is refused while anything
//! uses the volume; `volume ls` shows it. (Placement is the scheduler's:
//! `scheduler/volumes.rs`.)

use berth_proto::v1::{Node, TaskState, Volume, VolumeInfo, VolumeUse};

use crate::orchestrator::task::{is_terminal, observed};
use crate::store::ClusterView;

fn node_name<'a>(nodes: &'a [Node], id: &'a str) -> &'a str {
    nodes
        .iter()
        .find(|n| n.id == id)
        .map_or(id, |n| if n.name.is_empty() { &n.id } else { &n.name })
}

/// The volume with its node's name and its users (no mountpoint: only its
/// node knows that).
pub fn info(view: &ClusterView, volume: Volume) -> VolumeInfo {
    let uses = |spec: Option<&berth_proto::v1::ServiceSpec>| {
        spec.is_some_and(|s| berth_proto::mounts::volume_names(s).contains(volume.name.as_str()))
    };
    let mut services: Vec<String> = view
        .services
        .iter()
        .filter(|s| uses(s.spec.as_ref()))
        .map(|s| s.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default())
        .collect();
    services.sort();
    let mut tasks: Vec<VolumeUse> = view
        .tasks
        .iter()
        .filter(|t| uses(t.spec.as_ref()) && !is_terminal(observed(t)))
        .map(|t| VolumeUse {
            task_id: t.id.clone(),
            task_name: t.display_name(node_name(&view.nodes, &t.node_id)),
            node_name: node_name(&view.nodes, &t.node_id).to_string(),
            state: TaskState::try_from(observed(t))
                .map_or("unknown", TaskState::short_name)
                .to_string(),
        })
        .collect();
    tasks.sort_by(|a, b| {
        a.task_name
            .cmp(&b.task_name)
            .then(a.task_id.cmp(&b.task_id))
    });
    VolumeInfo {
        node_name: if volume.node_id.is_empty() {
            String::new()
        } else {
            node_name(&view.nodes, &volume.node_id).to_string()
        },
        volume: Some(volume),
        services,
        tasks,
        ..Default::default()
    }
}

/// Why `volume rm` must wait, naming the users; `None` when nothing uses it.
pub fn in_use(info: &VolumeInfo) -> Option<String> {
    if info.services.is_empty() && info.tasks.is_empty() {
        return None;
    }
    let name = info.volume.as_ref().map_or("", |v| v.name.as_str());
    let mut parts = Vec::new();
    if !info.services.is_empty() {
        let word = if info.services.len() == 1 {
            "service"
        } else {
            "services"
        };
        parts.push(format!("{word} {}", info.services.join(", ")));
    }
    if !info.tasks.is_empty() {
        let tasks: Vec<String> = info
            .tasks
            .iter()
            .map(|t| format!("{} ({}, {})", t.task_name, t.task_id, t.state))
            .collect();
        let word = if tasks.len() == 1 { "task" } else { "tasks" };
        parts.push(format!("{word} {}", tasks.join(", ")));
    }
    Some(format!(
        "volume {name} is in use by {}",
        parts.join(" and ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{Mount, Service, ServiceSpec, Task, TaskStatus, mount};

    fn spec(volume: &str) -> ServiceSpec {
        ServiceSpec {
            name: "db".into(),
            mounts: vec![Mount {
                kind: mount::Kind::Volume as i32,
                source: volume.into(),
                target: "/data".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn task(id: &str, slot: u64, state: TaskState) -> Task {
        Task {
            id: id.into(),
            service_name: "db".into(),
            slot,
            node_id: "id-n1".into(),
            spec: Some(spec("data")),
            status: Some(TaskStatus {
                state: state as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// What volume "data" on node n1 says in a cluster of that one node.
    fn data_on_n1(services: Vec<Service>, tasks: Vec<Task>) -> VolumeInfo {
        let view = ClusterView {
            settings: Default::default(),
            nodes: vec![Node {
                id: "id-n1".into(),
                name: "n1".into(),
                ..Default::default()
            }],
            services,
            tasks,
            volumes: Vec::new(),
        };
        let volume = Volume {
            name: "data".into(),
            node_id: "id-n1".into(),
            ..Default::default()
        };
        info(&view, volume)
    }

    #[test]
    fn usage_names_services_and_live_tasks_only() {
        let info = data_on_n1(
            vec![
                Service {
                    spec: Some(spec("data")),
                    ..Default::default()
                },
                Service {
                    spec: Some(ServiceSpec {
                        name: "other".into(),
                        ..spec("elsewhere")
                    }),
                    ..Default::default()
                },
            ],
            vec![
                task("t1", 1, TaskState::Running),
                task("t0", 1, TaskState::Failed),
            ],
        );
        assert_eq!(info.node_name, "n1");
        assert_eq!(info.services, ["db"]);
        assert_eq!(info.tasks.len(), 1, "the failed task uses nothing");
        assert_eq!(info.tasks[0].node_name, "n1");
        assert_eq!(
            in_use(&info).as_deref(),
            Some("volume data is in use by service db and task db.1 (t1, running)")
        );
        let unused = VolumeInfo {
            volume: info.volume.clone(),
            ..Default::default()
        };
        assert_eq!(in_use(&unused), None);
    }

    #[test]
    fn tasks_are_named_as_ps_names_them() {
        let one_off = Task {
            service_name: "job".into(),
            spec: Some(ServiceSpec {
                one_off: true,
                ..spec("data")
            }),
            ..task("t2", 1, TaskState::Running)
        };
        let global = task("t3", 0, TaskState::Running);
        let mut names: Vec<String> = data_on_n1(Vec::new(), vec![one_off, global])
            .tasks
            .into_iter()
            .map(|t| t.task_name)
            .collect();
        names.sort();
        assert_eq!(names, ["db.n1", "job"]);
    }
}
