//! The event stream (`berth events`, #17): committed changes told as what
//! happened. The watch stream carries each changed object's new value; a
//! [`Deriver`] remembers each object's last value so [`derive::derive`] can
//! compare old with new. Filtering and the replay of `--since` happen here,
//! near the store, so every client gets the same events
//! (docs/design/events.md).

pub mod derive;
pub mod filter;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use berth_proto::store::object::Kind;
use berth_proto::v1::{Event, EventsHistoryGap, WatchAction, WatchEvent, watch_event};
use tokio::sync::broadcast;

use crate::store::{StateMachine, StoreError, Table};

pub use filter::Filter;

/// Which object a change is about: events are told for these three kinds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Node(String),
    Service(String),
    Task(String),
}

fn key_of(change: &WatchEvent) -> Option<Key> {
    Some(match change.object.as_ref()? {
        watch_event::Object::Node(n) => Key::Node(n.id.clone()),
        watch_event::Object::Service(s) => Key::Service(s.id.clone()),
        watch_event::Object::Task(t) => Key::Task(t.id.clone()),
        _ => return None,
    })
}

/// Each object's last value, so a change can be compared with it.
#[derive(Default)]
pub struct Deriver {
    last: HashMap<Key, Arc<WatchEvent>>,
}

impl Deriver {
    /// The events of `change`, then remembers it (forgets a removed object).
    pub fn next(&mut self, change: &Arc<WatchEvent>) -> Vec<Event> {
        let Some(key) = key_of(change) else {
            return Vec::new();
        };
        let events = derive::derive(self.last.get(&key).map(|o| o.as_ref()), change);
        if change.action == WatchAction::Removed as i32 {
            self.last.remove(&key);
        } else {
            self.last.insert(key, change.clone());
        }
        events
    }

    /// Takes an object's stored value as its last one, unless a change
    /// already told it one.
    fn know(&mut self, stored: WatchEvent) {
        if let Some(key) = key_of(&stored) {
            self.last.entry(key).or_insert_with(|| Arc::new(stored));
        }
    }
}

/// A stream opened: what to say first, then the live changes to derive.
pub struct Opened {
    /// `since` reaches before what the history holds.
    pub gap: Option<EventsHistoryGap>,
    /// Events from `since` on that already happened (filtered).
    pub replay: Vec<Event>,
    pub deriver: Deriver,
    pub live: broadcast::Receiver<Arc<WatchEvent>>,
}

/// Opens the event stream on `sm`: replays the held history from `since_ms`
/// (0: nothing) and knows every object's value at the point where live
/// changes start.
pub fn open(sm: &StateMachine, since_ms: i64, filter: &Filter) -> Result<Opened, StoreError> {
    let held = sm.watch().subscribe_held();
    let mut deriver = Deriver::default();
    let mut replay = Vec::new();
    for change in &held.backlog {
        for event in deriver.next(change) {
            if since_ms > 0 && event.time_ms >= since_ms && filter.matches(&event) {
                replay.push(event);
            }
        }
    }
    // Objects the history does not show: their stored value, as of the point
    // where live changes start. One changed since (a version after that
    // point) is left unknown: its live change says what it is.
    let point = held
        .backlog
        .last()
        .map(|e| e.revision)
        .unwrap_or(held.complete_after);
    for table in [Table::Node, Table::Service, Table::Task] {
        for object in sm.list(table)? {
            if let Some(stored) = as_change(object)
                && stored.revision <= point
            {
                deriver.know(stored);
            }
        }
    }
    Ok(Opened {
        gap: gap(since_ms, held.complete_after, &held.backlog),
        replay,
        deriver,
        live: held.live,
    })
}

/// A stored node, service or task as a change at its version.
fn as_change(object: berth_proto::store::Object) -> Option<WatchEvent> {
    let (revision, object) = match object.kind? {
        Kind::Node(n) => (n.version, watch_event::Object::Node(n)),
        Kind::Service(s) => (s.version, watch_event::Object::Service(s)),
        Kind::Task(t) => (t.version, watch_event::Object::Task(t)),
        _ => return None,
    };
    Some(WatchEvent {
        revision,
        action: WatchAction::Updated as i32,
        object: Some(object),
        time_ms: 0,
    })
}

/// Whether the history reaches back to `since_ms`: it does when it is
/// complete from the start (`complete_after` 0) or holds a change at or
/// before that time.
pub fn gap(
    since_ms: i64,
    complete_after: u64,
    backlog: &[Arc<WatchEvent>],
) -> Option<EventsHistoryGap> {
    if since_ms <= 0 || complete_after == 0 {
        return None;
    }
    match backlog.first() {
        Some(first) if first.time_ms <= since_ms => None,
        Some(first) => Some(EventsHistoryGap {
            oldest_ms: first.time_ms,
            oldest_revision: first.revision,
        }),
        None => Some(EventsHistoryGap {
            oldest_ms: 0,
            oldest_revision: complete_after + 1,
        }),
    }
}
