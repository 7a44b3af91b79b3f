//! Placement preferences (`--placement-pref spread=node.labels.zone`), as
//! Swarm has them: the eligible nodes form a tree, one level per preference in
//! order, one branch per value of its label (nodes without the label are one
//! more branch); each task goes down the branch that holds the fewest tasks of
//! the service among those with a node that can take it, and the usual
//! scoring picks the node within the leaf.

use std::collections::BTreeMap;

use berth_proto::v1::{Node, ServiceSpec};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpreadError {
    #[error("placement preference spread={0:?} is not node.labels.LABEL")]
    NotALabel(String),
}

/// The labels to spread over, in preference order.
pub fn parse_all(spec: &ServiceSpec) -> Result<Vec<String>, SpreadError> {
    let Some(placement) = spec.placement.as_ref() else {
        return Ok(Vec::new());
    };
    placement
        .preferences
        .iter()
        .map(|p| match p.spread.trim().strip_prefix("node.labels.") {
            Some(label) if !label.is_empty() => Ok(label.to_string()),
            _ => Err(SpreadError::NotALabel(p.spread.clone())),
        })
        .collect()
}

/// A node's branch at each level: its value of each label (None: without).
pub type Path = Vec<Option<String>>;

/// The branch of `node` for `labels`.
pub fn path_of(node: &Node, labels: &[String]) -> Path {
    labels.iter().map(|l| node.labels.get(l).cloned()).collect()
}

/// Narrows `fitting` (positions that can take the task) to one leaf of the
/// tree: at each level, the branch with the fewest tasks of the service
/// (counted over every eligible position, `counts`, whether it fits now or
/// not) among the branches a fitting position is in; equal counts go to the
/// first branch in value order (nodes without the label last).
pub fn narrow(paths: &[Path], counts: &[u32], mut fitting: Vec<usize>) -> Vec<usize> {
    let depth = paths.first().map_or(0, Vec::len);
    for level in 0..depth {
        let Some(&first) = fitting.first() else {
            break;
        };
        // The positions in the current branch (the fitting ones share the
        // branch chosen at the levels above).
        let prefix = &paths[first][..level];
        let mut totals: BTreeMap<(bool, &Option<String>), u64> = BTreeMap::new();
        for (pos, path) in paths.iter().enumerate() {
            if path[..level] == *prefix {
                let value = &path[level];
                *totals.entry((value.is_none(), value)).or_default() +=
                    u64::from(counts.get(pos).copied().unwrap_or(0));
            }
        }
        let chosen = fitting
            .iter()
            .map(|&pos| {
                let value = &paths[pos][level];
                let key = (value.is_none(), value);
                (totals.get(&key).copied().unwrap_or(0), key)
            })
            .min()
            .map(|(_, (_, value))| value.clone());
        if let Some(value) = chosen {
            fitting.retain(|&pos| paths[pos][level] == value);
        }
    }
    fitting
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{Placement, PlacementPreference};

    fn paths(values: &[&[Option<&str>]]) -> Vec<Path> {
        values
            .iter()
            .map(|p| p.iter().map(|v| v.map(str::to_string)).collect())
            .collect()
    }

    #[test]
    fn only_node_labels_are_spread_over() {
        let spec = |spread: &[&str]| ServiceSpec {
            placement: Some(Placement {
                preferences: spread
                    .iter()
                    .map(|s| PlacementPreference {
                        spread: s.to_string(),
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            parse_all(&spec(&["node.labels.zone", "node.labels.rack"])),
            Ok(vec!["zone".to_string(), "rack".to_string()])
        );
        assert_eq!(parse_all(&ServiceSpec::default()), Ok(Vec::new()));
        for bad in ["zone", "node.labels.", "engine.labels.zone", ""] {
            assert_eq!(
                parse_all(&spec(&[bad])),
                Err(SpreadError::NotALabel(bad.to_string())),
                "{bad}"
            );
        }
        assert_eq!(
            SpreadError::NotALabel("zone".into()).to_string(),
            "placement preference spread=\"zone\" is not node.labels.LABEL"
        );
    }

    #[test]
    fn the_branch_with_fewest_tasks_that_fits_wins_then_value_order() {
        // zone a: 0, 1; zone b: 2; no zone: 3.
        let p = paths(&[&[Some("a")], &[Some("a")], &[Some("b")], &[None]]);
        assert_eq!(narrow(&p, &[0, 0, 0, 0], vec![0, 1, 2, 3]), vec![0, 1]);
        assert_eq!(narrow(&p, &[1, 0, 0, 0], vec![0, 1, 2, 3]), vec![2]);
        // Nodes without the label are a branch of their own, last on ties.
        assert_eq!(narrow(&p, &[1, 0, 1, 0], vec![0, 1, 2, 3]), vec![3]);
        // A branch with fewer tasks but no node that fits is passed over.
        assert_eq!(narrow(&p, &[5, 0, 9, 0], vec![2]), vec![2]);
        assert_eq!(narrow(&p, &[0, 0, 0, 0], vec![]), Vec::<usize>::new());
    }

    #[test]
    fn levels_narrow_within_the_branch_above() {
        // (zone, rack)
        let p = paths(&[
            &[Some("a"), Some("1")],
            &[Some("a"), Some("2")],
            &[Some("b"), Some("1")],
            &[Some("b"), Some("1")],
        ]);
        // Zone b has fewer tasks; inside it there is one rack.
        assert_eq!(narrow(&p, &[1, 0, 0, 0], vec![0, 1, 2, 3]), vec![2, 3]);
        // Zone a has fewer; rack 2 in it has fewer.
        assert_eq!(narrow(&p, &[1, 0, 1, 1], vec![0, 1, 2, 3]), vec![1]);
    }
}
