//! How a deploy's plan reads: one line per object that changes (or would),
//! the fields of an update indented under it, a summary line; or JSON.
//! Plain functions of the answer.

use berth_proto::v1::{StackAction, StackChange, StackObjectKind};
use serde_json::json;

/// Whether removals count: without `--prune` a deploy keeps objects the
/// files no longer name, so a diff shows them as kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removals {
    Done,
    Kept,
}

pub fn kind_name(kind: i32) -> &'static str {
    match StackObjectKind::try_from(kind) {
        Ok(StackObjectKind::Service) => "service",
        Ok(StackObjectKind::Network) => "network",
        Ok(StackObjectKind::Volume) => "volume",
        Ok(StackObjectKind::Config) => "config",
        Ok(StackObjectKind::Secret) => "secret",
        Err(_) => "object",
    }
}

fn action(change: &StackChange) -> StackAction {
    StackAction::try_from(change.action).unwrap_or(StackAction::Unchanged)
}

fn action_name(action: StackAction) -> &'static str {
    match action {
        StackAction::Unchanged => "unchanged",
        StackAction::Create => "create",
        StackAction::Update => "update",
        StackAction::Remove => "remove",
    }
}

/// Whether the plan changes anything (what `stack diff`'s exit code says).
pub fn changes_anything(changes: &[StackChange], removals: Removals) -> bool {
    changes.iter().any(|c| match action(c) {
        StackAction::Unchanged => false,
        StackAction::Remove => removals == Removals::Done,
        StackAction::Create | StackAction::Update => true,
    })
}

/// The plan as lines: `+` create, `~` update (fields under it), `-` remove,
/// then a summary. `applied` words it as done rather than as a proposal.
pub fn lines(
    stack: &str,
    changes: &[StackChange],
    removals: Removals,
    applied: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let (mut create, mut update, mut remove, mut kept, mut same) = (0, 0, 0, 0, 0);
    for change in changes {
        let kind = kind_name(change.kind);
        let name = &change.name;
        match action(change) {
            StackAction::Unchanged => same += 1,
            StackAction::Create => {
                create += 1;
                out.push(format!("+ {kind:<8} {name}"));
            }
            StackAction::Update => {
                update += 1;
                out.push(format!("~ {kind:<8} {name}"));
                for field in &change.fields {
                    out.push(format!(
                        "      {}: {} -> {}",
                        field.field,
                        shown(&field.from),
                        shown(&field.to)
                    ));
                }
            }
            StackAction::Remove if removals == Removals::Kept => {
                kept += 1;
                out.push(format!(
                    "  {kind:<8} {name} (no longer in the files: kept; --prune removes it)"
                ));
            }
            StackAction::Remove => {
                remove += 1;
                out.push(format!("- {kind:<8} {name}"));
            }
        }
    }
    let verbs = if applied {
        ["created", "updated", "removed"]
    } else {
        ["to create", "to update", "to remove"]
    };
    let mut summary = format!(
        "stack {stack}: {create} {}, {update} {}, {remove} {}, {same} unchanged",
        verbs[0], verbs[1], verbs[2]
    );
    if kept > 0 {
        summary.push_str(&format!(", {kept} kept"));
    }
    out.push(summary);
    out
}

fn shown(value: &str) -> &str {
    if value.is_empty() { "(none)" } else { value }
}

/// The plan as JSON, for scripts: every object with its action and fields.
pub fn json(changes: &[StackChange], warnings: &[String]) -> serde_json::Value {
    json!({
        "changes": changes.iter().map(|c| json!({
            "kind": kind_name(c.kind),
            "name": c.name,
            "action": action_name(action(c)),
            "fields": c.fields.iter().map(|f| json!({
                "field": f.field, "from": f.from, "to": f.to,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "warnings": warnings,
    })
}

#[cfg(test)]
mod tests {
    use berth_proto::v1::FieldChange;

    use super::*;

    fn change(kind: StackObjectKind, name: &str, action: StackAction) -> StackChange {
        StackChange {
            kind: kind as i32,
            name: name.into(),
            action: action as i32,
            fields: Vec::new(),
        }
    }

    #[test]
    fn a_plan_reads_as_creates_updates_and_removals() {
        let mut web = change(StackObjectKind::Service, "demo_web", StackAction::Update);
        web.fields.push(FieldChange {
            field: "replicas".into(),
            from: "2".into(),
            to: "3".into(),
        });
        let changes = vec![
            change(
                StackObjectKind::Network,
                "demo_default",
                StackAction::Create,
            ),
            change(StackObjectKind::Service, "demo_db", StackAction::Unchanged),
            web,
            change(StackObjectKind::Config, "demo_old", StackAction::Remove),
        ];
        let text = lines("demo", &changes, Removals::Done, false);
        assert_eq!(
            text,
            vec![
                "+ network  demo_default",
                "~ service  demo_web",
                "      replicas: 2 -> 3",
                "- config   demo_old",
                "stack demo: 1 to create, 1 to update, 1 to remove, 1 unchanged",
            ]
        );
        assert!(changes_anything(&changes, Removals::Done));
        let kept = lines("demo", &changes, Removals::Kept, false);
        assert!(kept[3].contains("kept; --prune removes it"), "{kept:?}");
        assert!(
            kept[4].ends_with("0 to remove, 1 unchanged, 1 kept"),
            "{kept:?}"
        );
    }

    #[test]
    fn only_removals_without_prune_change_nothing() {
        let changes = vec![
            change(StackObjectKind::Service, "demo_web", StackAction::Unchanged),
            change(StackObjectKind::Service, "demo_old", StackAction::Remove),
        ];
        assert!(!changes_anything(&changes, Removals::Kept));
        assert!(changes_anything(&changes, Removals::Done));
        let value = json(&changes, &[]);
        assert_eq!(value["changes"][1]["action"], "remove");
        assert_eq!(value["changes"][0]["kind"], "service");
    }
}
