//! Helpers over the stored object envelope: which table an object belongs to, its
//! id, name and version.

use berth_proto::store::Object;
use berth_proto::store::object::Kind;

/// The tables of the state machine.
pub const TABLES: &[&str] = &["node", "service", "task", "network", "secret", "config"];

pub trait ObjectExt {
    fn table(&self) -> Option<&'static str>;
    fn id(&self) -> &str;
    /// The user-facing unique name, for tables whose names are unique.
    fn unique_name(&self) -> Option<&str>;
    fn version(&self) -> u64;
    fn set_version(&mut self, version: u64);
    fn set_timestamps(&mut self, created_ms: i64, updated_ms: i64);
    fn created_ms(&self) -> i64;
}

impl ObjectExt for Object {
    fn table(&self) -> Option<&'static str> {
        Some(match self.kind.as_ref()? {
            Kind::Node(_) => "node",
            Kind::Service(_) => "service",
            Kind::Task(_) => "task",
            Kind::Network(_) => "network",
            Kind::Secret(_) => "secret",
            Kind::Config(_) => "config",
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
            Some(Kind::Task(_)) | None => None,
        }
        .filter(|name| !name.is_empty())
    }

    fn version(&self) -> u64 {
        match &self.kind {
            Some(Kind::Node(o)) => o.version,
            Some(Kind::Service(o)) => o.version,
            Some(Kind::Task(o)) => o.version,
            Some(Kind::Network(o)) => o.version,
            Some(Kind::Secret(o)) => o.version,
            Some(Kind::Config(o)) => o.version,
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
            None => None,
        };
        ts.map(|t| t.created_ms).unwrap_or(0)
    }
}
