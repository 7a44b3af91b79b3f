//! `--filter type=...` and `--filter service=...`: which events a client wants.

use berth_proto::v1::{Event, EventType};

#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Empty: every type.
    types: Vec<EventType>,
    /// Names or ids; empty: every service (and nodes).
    services: Vec<String>,
}

impl Filter {
    pub fn new(types: Vec<EventType>, services: Vec<String>) -> Filter {
        Filter { types, services }
    }

    pub fn matches(&self, event: &Event) -> bool {
        let kind = EventType::try_from(event.r#type).unwrap_or(EventType::Unspecified);
        if !self.types.is_empty() && !self.types.contains(&kind) {
            return false;
        }
        if self.services.is_empty() {
            return true;
        }
        let (id, name) = match kind {
            EventType::Service | EventType::Rollout => (Some(&event.id), Some(&event.name)),
            EventType::Task => (
                event.attributes.get("service.id"),
                event.attributes.get("service"),
            ),
            EventType::Node | EventType::Unspecified => return false,
        };
        self.services
            .iter()
            .any(|s| Some(s) == id || Some(s) == name)
    }
}
