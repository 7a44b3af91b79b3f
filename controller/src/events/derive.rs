//! What happened, from one committed change: the object's value before
//! (`old`, None when unknown or for a create) and the change as the watch
//! stream carries it. A plain function: no store, no clock.

use berth_proto::v1::update_status::State as RolloutState;
use berth_proto::v1::{
    Event, EventType, Node, NodeAvailability, NodeStatus, Service, Task, TaskState, WatchAction,
    WatchEvent, watch_event::Object,
};

/// The events one change makes (none for kinds events do not tell: networks,
/// secrets, configs).
pub fn derive(old: Option<&WatchEvent>, change: &WatchEvent) -> Vec<Event> {
    let action = WatchAction::try_from(change.action).unwrap_or(WatchAction::Updated);
    let mut out = Vec::new();
    match (&change.object, old.and_then(|o| o.object.as_ref())) {
        (Some(Object::Service(new)), old) => {
            let old = match old {
                Some(Object::Service(s)) => Some(&**s),
                _ => None,
            };
            service(action, old, new, &mut out);
        }
        (Some(Object::Task(new)), old) => {
            let old = match old {
                Some(Object::Task(t)) => Some(&**t),
                _ => None,
            };
            task(action, old, new, &mut out);
        }
        (Some(Object::Node(new)), old) => {
            let old = match old {
                Some(Object::Node(n)) => Some(n),
                _ => None,
            };
            node(action, old, new, &mut out);
        }
        _ => {}
    }
    for event in &mut out {
        event.time_ms = change.time_ms;
        event.revision = change.revision;
    }
    out
}

fn event(kind: EventType, action: &str, id: &str, name: &str) -> Event {
    Event {
        r#type: kind as i32,
        action: action.to_string(),
        id: id.to_string(),
        name: name.to_string(),
        ..Default::default()
    }
}

fn attr(event: &mut Event, key: &str, value: impl ToString) {
    let value = value.to_string();
    if !value.is_empty() {
        event.attributes.insert(key.to_string(), value);
    }
}

fn service_name(s: &Service) -> &str {
    s.spec.as_ref().map(|s| s.name.as_str()).unwrap_or("")
}

fn service(action: WatchAction, old: Option<&Service>, new: &Service, out: &mut Vec<Event>) {
    let name = service_name(new);
    let what = match action {
        WatchAction::Created => Some("create"),
        WatchAction::Removed => Some("remove"),
        // A new spec version; a write of the rollout status alone is the
        // rollout's event below.
        WatchAction::Updated if old.map(|o| o.spec_version) != Some(new.spec_version) => {
            Some("update")
        }
        WatchAction::Updated => None,
    };
    if let Some(what) = what {
        let mut e = event(EventType::Service, what, &new.id, name);
        attr(&mut e, "version", new.spec_version);
        attr(
            &mut e,
            "image",
            new.spec.as_ref().map(|s| s.image.as_str()).unwrap_or(""),
        );
        if let (Some(old), "update") = (old, what) {
            attr(&mut e, "version.old", old.spec_version);
        }
        out.push(e);
    }
    if action != WatchAction::Removed {
        rollout(old, new, out);
    }
}

/// A rollout's step: its state changed, or a new one started in the same state.
fn rollout(old: Option<&Service>, new: &Service, out: &mut Vec<Event>) {
    let Some(status) = new.update_status.as_ref() else {
        return;
    };
    let old_status = old.and_then(|o| o.update_status.as_ref());
    let state = RolloutState::try_from(status.state).unwrap_or(RolloutState::None);
    let same_state = old_status.map(|o| o.state) == Some(status.state);
    let same_rollout = old_status.map(|o| o.started_ms) == Some(status.started_ms);
    if same_state && same_rollout {
        return;
    }
    let action = match state {
        RolloutState::None => return,
        RolloutState::Updating if same_rollout => "resume",
        RolloutState::Updating => "start",
        RolloutState::Paused => "pause",
        RolloutState::Completed => "complete",
        RolloutState::RollbackStarted => "rollback",
        RolloutState::RollbackPaused => "rollback paused",
        RolloutState::RollbackCompleted => "rollback complete",
    };
    let mut e = event(EventType::Rollout, action, &new.id, service_name(new));
    attr(&mut e, "version.from", status.from_version);
    attr(&mut e, "version.to", status.to_version);
    attr(&mut e, "message", &status.message);
    if status.awaiting_promotion {
        attr(&mut e, "awaiting_promotion", "true");
    }
    out.push(e);
}

/// How `ps` names a task: SERVICE.SLOT, or SERVICE.NODE for a global one.
fn task_name(t: &Task) -> String {
    if t.slot > 0 {
        format!("{}.{}", t.service_name, t.slot)
    } else {
        format!("{}.{}", t.service_name, t.node_id)
    }
}

fn state_name(state: i32) -> String {
    TaskState::try_from(state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("TASK_STATE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| format!("state {state}"))
}

fn task(action: WatchAction, old: Option<&Task>, new: &Task, out: &mut Vec<Event>) {
    let state = new.status.as_ref().map(|s| s.state).unwrap_or(0);
    let old_state = old.and_then(|o| o.status.as_ref()).map(|s| s.state);
    let what = match action {
        WatchAction::Created => "create".to_string(),
        WatchAction::Removed => "remove".to_string(),
        WatchAction::Updated if old_state == Some(state) => return,
        WatchAction::Updated => state_name(state),
    };
    let mut e = event(EventType::Task, &what, &new.id, &task_name(new));
    attr(&mut e, "service", &new.service_name);
    attr(&mut e, "service.id", &new.service_id);
    attr(&mut e, "node", &new.node_id);
    if new.slot > 0 {
        attr(&mut e, "slot", new.slot);
    }
    attr(&mut e, "state", state_name(state));
    if let Some(old_state) = old_state
        && action == WatchAction::Updated
    {
        attr(&mut e, "state.old", state_name(old_state));
    }
    if let Some(status) = &new.status {
        attr(&mut e, "message", &status.message);
        attr(&mut e, "error", &status.error);
        if let Some(code) = status.exit_code {
            attr(&mut e, "exit_code", code);
        }
    }
    out.push(e);
}

fn node(action: WatchAction, old: Option<&Node>, new: &Node, out: &mut Vec<Event>) {
    let base = |what: &str| {
        let mut e = event(EventType::Node, what, &new.id, &new.name);
        attr(&mut e, "address", &new.address);
        e
    };
    match action {
        WatchAction::Created => out.push(base("create")),
        WatchAction::Removed => out.push(base("remove")),
        WatchAction::Updated => {
            // An unknown old value counts as a new node's (status unknown,
            // active): only what differs from that is told.
            if old.map(|o| o.status).unwrap_or_default() != new.status {
                let mut e = base(match NodeStatus::try_from(new.status) {
                    Ok(NodeStatus::Ready) => "ready",
                    Ok(NodeStatus::Down) => "down",
                    _ => "unknown",
                });
                attr(&mut e, "message", &new.status_message);
                out.push(e);
            }
            if old.map(|o| o.availability).unwrap_or_default() != new.availability {
                out.push(base(match NodeAvailability::try_from(new.availability) {
                    Ok(NodeAvailability::Pause) => "pause",
                    Ok(NodeAvailability::Drain) => "drain",
                    _ => "active",
                }));
            }
        }
    }
}
