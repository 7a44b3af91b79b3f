//! Placement constraints: `node.id==X`, `node.name!=X`, `node.labels.K==V`.
//! A node without the label equals nothing (so `!=` holds for it).

use berth_proto::v1::{Node, ServiceSpec};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    #[error("constraint {0:?} is not KEY==VALUE or KEY!=VALUE")]
    Syntax(String),
    #[error(
        "constraint {constraint:?} has an unknown key {key:?} (use node.id, node.name or node.labels.KEY)"
    )]
    UnknownKey { constraint: String, key: String },
}

/// What part of a node a constraint looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Id,
    Name,
    Label(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub field: Field,
    /// `==` when true, `!=` when false.
    pub equal: bool,
    pub value: String,
    /// The expression as the user wrote it (trimmed), for messages.
    pub text: String,
}

impl Constraint {
    pub fn parse(text: &str) -> Result<Self, ConstraintError> {
        let text = text.trim();
        let (key, value, equal) = if let Some((k, v)) = text.split_once("==") {
            (k, v, true)
        } else if let Some((k, v)) = text.split_once("!=") {
            (k, v, false)
        } else {
            return Err(ConstraintError::Syntax(text.to_string()));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(ConstraintError::Syntax(text.to_string()));
        }
        let field = match key {
            "node.id" => Field::Id,
            "node.name" | "node.hostname" => Field::Name,
            _ => match key.strip_prefix("node.labels.") {
                Some(label) if !label.is_empty() => Field::Label(label.to_string()),
                _ => {
                    return Err(ConstraintError::UnknownKey {
                        constraint: text.to_string(),
                        key: key.to_string(),
                    });
                }
            },
        };
        Ok(Constraint {
            field,
            equal,
            value: value.to_string(),
            text: text.to_string(),
        })
    }

    pub fn matches(&self, node: &Node) -> bool {
        let actual = match &self.field {
            Field::Id => Some(node.id.as_str()),
            Field::Name => Some(node.name.as_str()),
            Field::Label(key) => node.labels.get(key).map(String::as_str),
        };
        let is_equal = actual == Some(self.value.as_str());
        is_equal == self.equal
    }
}

/// The constraints of a spec, parsed.
pub fn parse_all(spec: &ServiceSpec) -> Result<Vec<Constraint>, ConstraintError> {
    spec.placement
        .iter()
        .flat_map(|p| p.constraints.iter())
        .map(|c| Constraint::parse(c))
        .collect()
}

/// The first constraint `node` does not satisfy.
pub fn first_unsatisfied<'a>(constraints: &'a [Constraint], node: &Node) -> Option<&'a Constraint> {
    constraints.iter().find(|c| !c.matches(node))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, name: &str, labels: &[(&str, &str)]) -> Node {
        Node {
            id: id.into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn parses_the_three_keys_and_both_operators() {
        let c = Constraint::parse(" node.labels.zone == a ").expect("parse");
        assert_eq!(c.field, Field::Label("zone".into()));
        assert!(c.equal);
        assert_eq!(c.value, "a");
        assert_eq!(c.text, "node.labels.zone == a");
        let c = Constraint::parse("node.name!=n3").expect("parse");
        assert_eq!(c.field, Field::Name);
        assert!(!c.equal);
        let c = Constraint::parse("node.id==abc").expect("parse");
        assert_eq!(c.field, Field::Id);
    }

    #[test]
    fn refuses_what_it_cannot_evaluate() {
        assert_eq!(
            Constraint::parse("zone=a"),
            Err(ConstraintError::Syntax("zone=a".into()))
        );
        let err = Constraint::parse("node.role==manager").expect_err("unknown key");
        assert!(
            err.to_string().contains("unknown key \"node.role\""),
            "{err}"
        );
        assert!(Constraint::parse("node.labels.==a").is_err());
        assert!(Constraint::parse("==a").is_err());
    }

    #[test]
    fn matching_by_id_name_and_label() {
        let n = node("id1", "n1", &[("zone", "a")]);
        assert!(Constraint::parse("node.id==id1").expect("p").matches(&n));
        assert!(!Constraint::parse("node.id!=id1").expect("p").matches(&n));
        assert!(Constraint::parse("node.name!=n3").expect("p").matches(&n));
        assert!(
            Constraint::parse("node.labels.zone==a")
                .expect("p")
                .matches(&n)
        );
        assert!(
            !Constraint::parse("node.labels.zone==b")
                .expect("p")
                .matches(&n)
        );
        assert!(
            Constraint::parse("node.labels.zone!=b")
                .expect("p")
                .matches(&n)
        );
    }

    #[test]
    fn a_missing_label_equals_nothing() {
        let n = node("id1", "n1", &[]);
        assert!(
            !Constraint::parse("node.labels.zone==a")
                .expect("p")
                .matches(&n)
        );
        assert!(
            !Constraint::parse("node.labels.zone==")
                .expect("p")
                .matches(&n)
        );
        assert!(
            Constraint::parse("node.labels.zone!=a")
                .expect("p")
                .matches(&n)
        );
    }

    #[test]
    fn first_unsatisfied_names_the_failing_one() {
        let spec = ServiceSpec {
            placement: Some(berth_proto::v1::Placement {
                constraints: vec!["node.name!=n2".into(), "node.labels.zone==b".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let cs = parse_all(&spec).expect("parse");
        let n = node("id1", "n1", &[("zone", "a")]);
        assert_eq!(
            first_unsatisfied(&cs, &n).map(|c| c.text.as_str()),
            Some("node.labels.zone==b")
        );
        let n = node("id1", "n1", &[("zone", "b")]);
        assert_eq!(first_unsatisfied(&cs, &n), None);
    }
}
