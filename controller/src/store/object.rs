//! Helpers over the stored object envelope: which table an object belongs to, its
//! id, name and version.

use berth_proto::store::Object;
use berth_proto::store::object::Kind;
use berth_proto::v1::PortProtocol;

use super::Table;

/// `tcp` or `udp`, as users write a published port's protocol.
pub fn protocol_name(protocol: i32) -> &'static str {
    if protocol == PortProtocol::Udp as i32 {
        "udp"
    } else {
        "tcp"
    }
}

pub trait ObjectExt {
    fn table(&self) -> Option<Table>;
    fn id(&self) -> &str;
    /// The user-facing unique name, for tables whose names are unique.
    fn unique_name(&self) -> Option<&str>;
    /// What no two objects of a table may share: the name, and for services
    /// each published port (`port:8080/tcp`; names cannot hold a ':').
    fn unique_keys(&self) -> Vec<String>;
    fn version(&self) -> u64;
    fn set_version(&mut self, version: u64);
    fn set_timestamps(&mut self, created_ms: i64, updated_ms: i64);
    fn created_ms(&self) -> i64;
}

impl ObjectExt for Object {
    fn table(&self) -> Option<Table> {
        Some(match self.kind.as_ref()? {
            Kind::Node(_) => Table::Node,
            Kind::Service(_) => Table::Service,
            Kind::Task(_) => Table::Task,
            Kind::Network(_) => Table::Network,
            Kind::Secret(_) => Table::Secret,
            Kind::Config(_) => Table::Config,
            Kind::Pki(_) => Table::Pki,
            Kind::Volume(_) => Table::Volume,
            Kind::ClusterSettings(_) => Table::ClusterSettings,
        })
    }

    fn id(&self) -> &str {
        match &self.kind {
            Some(Kind::Node(o)) => &o.id,
            Some(Kind::Service(o)) => &o.id,
            Some(Kind::Task(o)) => &o.id,
            Some(Kind::Network(o)) => &o.id,
            Some(Kind::Secret(o)) => &o.id,
            Some(Kind::Config(o)) => &o.id,
            Some(Kind::Pki(o)) => &o.id,
            Some(Kind::Volume(o)) => &o.id,
            Some(Kind::ClusterSettings(o)) => &o.id,
            None => "",
        }
    }

    fn unique_name(&self) -> Option<&str> {
        match &self.kind {
            Some(Kind::Node(o)) => Some(o.name.as_str()),
            Some(Kind::Service(o)) => o.spec.as_ref().map(|s| s.name.as_str()),
            Some(Kind::Network(o)) => Some(o.name.as_str()),
            Some(Kind::Secret(o)) => Some(o.name.as_str()),
            Some(Kind::Config(o)) => Some(o.name.as_str()),
            Some(Kind::Volume(o)) => Some(o.name.as_str()),
            Some(Kind::Task(_)) | Some(Kind::Pki(_)) | Some(Kind::ClusterSettings(_)) | None => {
                None
            }
        }
        .filter(|name| !name.is_empty())
    }

    fn unique_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.unique_name().map(str::to_string).into_iter().collect();
        if let Some(Kind::Service(service)) = &self.kind {
            for port in service.spec.iter().flat_map(|s| &s.ports) {
                let protocol = protocol_name(port.protocol);
                keys.push(format!("port:{}/{protocol}", port.published_port));
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }

    fn version(&self) -> u64 {
        match &self.kind {
            Some(Kind::Node(o)) => o.version,
            Some(Kind::Service(o)) => o.version,
            Some(Kind::Task(o)) => o.version,
            Some(Kind::Network(o)) => o.version,
            Some(Kind::Secret(o)) => o.version,
            Some(Kind::Config(o)) => o.version,
            Some(Kind::Pki(o)) => o.version,
            Some(Kind::Volume(o)) => o.version,
            Some(Kind::ClusterSettings(o)) => o.version,
            None => 0,
        }
    }

    fn set_version(&mut self, version: u64) {
        match &mut self.kind {
            Some(Kind::Node(o)) => o.version = version,
            Some(Kind::Service(o)) => o.version = version,
            Some(Kind::Task(o)) => o.version = version,
            Some(Kind::Network(o)) => o.version = version,
            Some(Kind::Secret(o)) => o.version = version,
            Some(Kind::Config(o)) => o.version = version,
            Some(Kind::Pki(o)) => o.version = version,
            Some(Kind::Volume(o)) => o.version = version,
            Some(Kind::ClusterSettings(o)) => o.version = version,
            None => {}
        }
    }

    fn set_timestamps(&mut self, created_ms: i64, updated_ms: i64) {
        let ts = berth_proto::v1::Timestamps {
            created_ms,
            updated_ms,
        };
        match &mut self.kind {
            Some(Kind::Node(o)) => o.timestamps = Some(ts),
            Some(Kind::Service(o)) => o.timestamps = Some(ts),
            Some(Kind::Task(o)) => o.timestamps = Some(ts),
            Some(Kind::Network(o)) => o.timestamps = Some(ts),
            Some(Kind::Secret(o)) => o.timestamps = Some(ts),
            Some(Kind::Config(o)) => o.timestamps = Some(ts),
            Some(Kind::Pki(o)) => o.timestamps = Some(ts),
            Some(Kind::Volume(o)) => o.timestamps = Some(ts),
            Some(Kind::ClusterSettings(o)) => o.timestamps = Some(ts),
            None => {}
        }
    }

    fn created_ms(&self) -> i64 {
        let ts = match &self.kind {
            Some(Kind::Node(o)) => o.timestamps.as_ref(),
            Some(Kind::Service(o)) => o.timestamps.as_ref(),
            Some(Kind::Task(o)) => o.timestamps.as_ref(),
            Some(Kind::Network(o)) => o.timestamps.as_ref(),
            Some(Kind::Secret(o)) => o.timestamps.as_ref(),
            Some(Kind::Config(o)) => o.timestamps.as_ref(),
            Some(Kind::Pki(o)) => o.timestamps.as_ref(),
            Some(Kind::Volume(o)) => o.timestamps.as_ref(),
            Some(Kind::ClusterSettings(o)) => o.timestamps.as_ref(),
            None => None,
        };
        ts.map(|t| t.created_ms).unwrap_or(0)
    }
}
