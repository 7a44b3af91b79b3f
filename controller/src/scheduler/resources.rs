//! What a node has, what its tasks reserve, which host ports they publish and how
//! many tasks of each service it runs.

use std::collections::{HashMap, HashSet};

use berth_proto::v1::{Node, PublishMode, ServiceSpec};

/// The reservations placement looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Demand {
    pub milli_cpus: u64,
    pub memory_bytes: u64,
}

impl Demand {
    /// The reservations of a spec (zero when it reserves nothing).
    pub fn of(spec: Option<&ServiceSpec>) -> Self {
        let r = spec
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.reservations.as_ref());
        Demand {
            milli_cpus: r.map(|r| r.milli_cpus).unwrap_or(0),
            memory_bytes: r.map(|r| r.memory_bytes).unwrap_or(0),
        }
    }
}

/// A published port: (protocol as in the proto enum, port number).
pub type HostPort = (i32, u32);

/// The ports a spec publishes in host mode (a published port 0 is dynamic and
/// never collides).
pub fn host_ports(spec: Option<&ServiceSpec>) -> Vec<HostPort> {
    spec.map(|s| {
        s.ports
            .iter()
            .filter(|p| p.publish_mode == PublishMode::Host as i32 && p.published_port != 0)
            .map(|p| (p.protocol, p.published_port))
            .collect()
    })
    .unwrap_or_default()
}

/// Why a node's free resources do not fit a demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortage {
    Cpu,
    Memory,
}

/// One node's capacity and what is placed on it.
#[derive(Clone, Debug, Default)]
pub struct NodeLoad {
    pub capacity: Demand,
    pub reserved: Demand,
    pub ports: HashSet<HostPort>,
    /// Non-terminal tasks per service id.
    pub per_service: HashMap<String, u32>,
    /// Non-terminal tasks of all services.
    pub tasks: u32,
}

impl NodeLoad {
    pub fn new(node: &Node) -> Self {
        let r = node.resources.as_ref();
        NodeLoad {
            capacity: Demand {
                milli_cpus: r.map(|r| r.milli_cpus).unwrap_or(0),
                memory_bytes: r.map(|r| r.memory_bytes).unwrap_or(0),
            },
            ..Default::default()
        }
    }

    /// Records a task placed here.
    pub fn add(&mut self, service_id: &str, demand: Demand, ports: &[HostPort]) {
        self.reserved.milli_cpus = self.reserved.milli_cpus.saturating_add(demand.milli_cpus);
        self.reserved.memory_bytes = self
            .reserved
            .memory_bytes
            .saturating_add(demand.memory_bytes);
        self.ports.extend(ports.iter().copied());
        *self.per_service.entry(service_id.to_string()).or_insert(0) += 1;
        self.tasks += 1;
    }

    /// Whether `demand` fits in what is still free (CPU checked first).
    pub fn fits(&self, demand: Demand) -> Result<(), Shortage> {
        let free_cpu = self
            .capacity
            .milli_cpus
            .saturating_sub(self.reserved.milli_cpus);
        if demand.milli_cpus > free_cpu {
            return Err(Shortage::Cpu);
        }
        let free_mem = self
            .capacity
            .memory_bytes
            .saturating_sub(self.reserved.memory_bytes);
        if demand.memory_bytes > free_mem {
            return Err(Shortage::Memory);
        }
        Ok(())
    }

    /// The first of `ports` already published here.
    pub fn taken_port(&self, ports: &[HostPort]) -> Option<HostPort> {
        if self.ports.is_empty() {
            return None;
        }
        ports.iter().copied().find(|p| self.ports.contains(p))
    }

    /// The reserved share of the node, 0.0..=1.0 per resource, averaged over the
    /// resources it has.
    pub fn allocated_share(&self) -> f64 {
        let share = |used: u64, total: u64| {
            if total == 0 {
                None
            } else {
                Some(used as f64 / total as f64)
            }
        };
        let shares = [
            share(self.reserved.milli_cpus, self.capacity.milli_cpus),
            share(self.reserved.memory_bytes, self.capacity.memory_bytes),
        ];
        let (sum, n) = shares
            .iter()
            .flatten()
            .fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
        if n == 0 { 0.0 } else { sum / f64::from(n) }
    }
}

/// "4 GiB", "512 MiB", "1.5 GiB", "100 B".
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if bytes >= size {
            return format!("{} {unit}", one_decimal(bytes as f64 / size as f64));
        }
    }
    format!("{bytes} B")
}

/// "1 CPU", "1.5 CPUs", "0.25 CPUs".
pub fn fmt_cpus(milli_cpus: u64) -> String {
    let cpus = milli_cpus as f64 / 1000.0;
    let text = format!("{cpus:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if milli_cpus == 1000 {
        "1 CPU".to_string()
    } else {
        format!("{text} CPUs")
    }
}

fn one_decimal(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
}

/// "80/tcp".
pub fn fmt_port((protocol, port): HostPort) -> String {
    let proto = if protocol == berth_proto::v1::PortProtocol::Udp as i32 {
        "udp"
    } else {
        "tcp"
    };
    format!("{port}/{proto}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{PortConfig, PortProtocol, ResourceRequirements, Resources};

    fn node(cpu: u64, mem: u64) -> Node {
        Node {
            resources: Some(Resources {
                milli_cpus: cpu,
                memory_bytes: mem,
                pids: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fits_until_full() {
        let mut load = NodeLoad::new(&node(2000, 1 << 30));
        let d = Demand {
            milli_cpus: 1000,
            memory_bytes: 512 << 20,
        };
        assert_eq!(load.fits(d), Ok(()));
        load.add("s", d, &[]);
        assert_eq!(load.fits(d), Ok(()));
        load.add("s", d, &[]);
        assert_eq!(load.fits(d), Err(Shortage::Cpu));
        assert_eq!(load.per_service.get("s"), Some(&2));
        assert_eq!(load.allocated_share(), 1.0);
        let only_mem = Demand {
            milli_cpus: 0,
            memory_bytes: 1,
        };
        assert_eq!(load.fits(only_mem), Err(Shortage::Memory));
        assert_eq!(load.fits(Demand::default()), Ok(()));
    }

    #[test]
    fn a_node_without_resources_takes_only_tasks_without_reservations() {
        let load = NodeLoad::new(&Node::default());
        assert_eq!(load.fits(Demand::default()), Ok(()));
        let d = Demand {
            milli_cpus: 1,
            memory_bytes: 0,
        };
        assert_eq!(load.fits(d), Err(Shortage::Cpu));
        assert_eq!(load.allocated_share(), 0.0);
    }

    #[test]
    fn only_host_mode_ports_with_a_number_are_tracked() {
        let spec = ServiceSpec {
            ports: vec![
                PortConfig {
                    target_port: 80,
                    published_port: 8080,
                    protocol: PortProtocol::Tcp as i32,
                    publish_mode: PublishMode::Host as i32,
                },
                PortConfig {
                    target_port: 53,
                    published_port: 53,
                    protocol: PortProtocol::Udp as i32,
                    publish_mode: PublishMode::Ingress as i32,
                },
                PortConfig {
                    target_port: 9000,
                    published_port: 0,
                    protocol: PortProtocol::Tcp as i32,
                    publish_mode: PublishMode::Host as i32,
                },
            ],
            resources: Some(ResourceRequirements {
                reservations: Some(Resources {
                    milli_cpus: 250,
                    memory_bytes: 4 << 30,
                    pids: 0,
                }),
                limits: None,
            }),
            ..Default::default()
        };
        let ports = host_ports(Some(&spec));
        assert_eq!(ports, vec![(PortProtocol::Tcp as i32, 8080)]);
        let mut load = NodeLoad::default();
        assert_eq!(load.taken_port(&ports), None);
        load.add("s", Demand::of(Some(&spec)), &ports);
        assert_eq!(load.taken_port(&ports), Some((0, 8080)));
        assert_eq!(load.reserved.memory_bytes, 4 << 30);
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(fmt_bytes(4 << 30), "4 GiB");
        assert_eq!(fmt_bytes(3 << 29), "1.5 GiB");
        assert_eq!(fmt_bytes(512 << 20), "512 MiB");
        assert_eq!(fmt_bytes(100), "100 B");
        assert_eq!(fmt_cpus(1000), "1 CPU");
        assert_eq!(fmt_cpus(1500), "1.5 CPUs");
        assert_eq!(fmt_cpus(250), "0.25 CPUs");
        assert_eq!(fmt_cpus(4000), "4 CPUs");
        assert_eq!(fmt_port((PortProtocol::Udp as i32, 53)), "53/udp");
    }
}
