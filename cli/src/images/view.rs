//! Pure formatting for the image verbs: rows of `berth images` from the
//! nodes' answers, ids and ages as Docker prints them, and the plain lines
//! of a pull's steps.

use std::collections::BTreeMap;

use berth_proto::v1::layer_progress::State;
use berth_proto::v1::{ImageSummary, LayerProgress, ListImagesResponse};

use crate::units::human_size;

/// One row of `berth images`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ImageRow {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub id: String,
    pub created: i64,
    pub size: u64,
    pub node: String,
    pub node_id: String,
    pub name: String,
    pub used_by: Vec<String>,
}

/// Every node's images as rows (sorted by repository, tag, node), and the
/// nodes that failed with why.
pub fn rows(answer: ListImagesResponse) -> (Vec<ImageRow>, Vec<(String, String)>) {
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for node in answer.nodes {
        let name = super::node_name(node.node.as_ref());
        if !node.error.is_empty() {
            failed.push((name, node.error));
            continue;
        }
        let node_id = node.node.map(|n| n.node_id).unwrap_or_default();
        for image in node.images {
            rows.push(row(image, &name, &node_id));
        }
    }
    rows.sort_by(|a, b| {
        (&a.repository, &a.tag, &a.node, &a.digest).cmp(&(
            &b.repository,
            &b.tag,
            &b.node,
            &b.digest,
        ))
    });
    (rows, failed)
}

fn row(image: ImageSummary, node: &str, node_id: &str) -> ImageRow {
    ImageRow {
        repository: image.repository,
        tag: image.tag,
        digest: image.digest,
        id: image.id,
        created: image.created,
        size: image.size,
        node: node.to_string(),
        node_id: node_id.to_string(),
        name: image.name,
        used_by: image.used_by,
    }
}

/// The table's cells for `row`, as of `now` (seconds since the epoch).
pub fn cells(row: &ImageRow, now: i64) -> Vec<String> {
    vec![
        row.repository.clone(),
        if row.tag.is_empty() {
            "<none>".to_string()
        } else {
            row.tag.clone()
        },
        short_digest(&row.digest),
        short_id(&row.id),
        ago(now - row.created),
        human_size(row.size),
        row.node.clone(),
    ]
}

pub const HEADER: [&str; 7] = [
    "REPOSITORY",
    "TAG",
    "DIGEST",
    "IMAGE ID",
    "CREATED",
    "SIZE",
    "NODE",
];

/// `sha256:3f57d9401f8d…` → `3f57d9401f8d` (Docker's IMAGE ID).
pub fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// `sha256:` and the first 12 hex digits.
pub fn short_digest(digest: &str) -> String {
    match digest.strip_prefix("sha256:") {
        Some(hex) => format!("sha256:{}", &hex[..hex.len().min(12)]),
        None => digest.to_string(),
    }
}

/// "3 minutes ago", as Docker's `units.HumanDuration` words it.
pub fn ago(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    let span = if s < 1 {
        "Less than a second".to_string()
    } else if s == 1 {
        "1 second".to_string()
    } else if s < 60 {
        format!("{s} seconds")
    } else if m == 1 {
        "About a minute".to_string()
    } else if m < 60 {
        format!("{m} minutes")
    } else if h == 1 {
        "About an hour".to_string()
    } else if h < 48 {
        format!("{h} hours")
    } else if d < 14 {
        format!("{d} days")
    } else if d < 60 {
        format!("{} weeks", d / 7)
    } else if d < 730 {
        format!("{} months", d / 30)
    } else {
        format!("{} years", d / 365)
    };
    format!("{span} ago")
}

/// What a layer's state reads as, Docker's words.
pub fn state_word(state: i32) -> &'static str {
    match State::try_from(state).unwrap_or(State::Waiting) {
        State::Waiting => "Waiting",
        State::Downloading => "Downloading",
        State::Exists => "Already exists",
        State::Unpacking => "Extracting",
        State::Done => "Pull complete",
        State::Failed => "Failed",
    }
}

/// The layer states seen so far per node, to print one line per step when
/// the output is not a terminal.
#[derive(Debug, Default)]
pub struct Steps {
    seen: BTreeMap<(String, String), i32>,
}

impl Steps {
    /// Lines for the layers of `node` whose state changed since last time
    /// (bytes alone are no step).
    pub fn lines(&mut self, node: &str, layers: &[LayerProgress]) -> Vec<String> {
        let mut out = Vec::new();
        for layer in layers {
            let key = (node.to_string(), layer.digest.clone());
            if self.seen.get(&key) == Some(&layer.state) {
                continue;
            }
            self.seen.insert(key, layer.state);
            if layer.state == State::Waiting as i32 {
                continue;
            }
            out.push(format!(
                "{node}: {}: {}",
                short_id(&layer.digest),
                state_word(layer.state)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use berth_proto::v1::{NodeImages, NodeRef};

    use super::*;

    fn image(repository: &str, tag: &str, id: &str) -> ImageSummary {
        ImageSummary {
            name: format!("{repository}:{tag}"),
            repository: repository.into(),
            tag: tag.into(),
            digest: format!("sha256:{}", "d".repeat(64)),
            id: format!("sha256:{id}{}", "0".repeat(64 - id.len())),
            created: 1_000,
            size: 2048,
            used_by: Vec::new(),
        }
    }

    fn node(name: &str, images: Vec<ImageSummary>, error: &str) -> NodeImages {
        NodeImages {
            node: Some(NodeRef {
                node_id: format!("id-{name}"),
                node_name: name.into(),
            }),
            images,
            error: error.into(),
        }
    }

    #[test]
    fn nodes_answers_merge_into_sorted_rows_and_failures_apart() {
        let answer = ListImagesResponse {
            nodes: vec![
                node(
                    "n2",
                    vec![image("r/web", "1", "ab"), image("r/busybox", "1", "cd")],
                    "",
                ),
                node("n1", vec![image("r/web", "1", "ab")], ""),
                node("n3", Vec::new(), "the agent of node n3 does not answer"),
            ],
        };
        let (rows, failed) = rows(answer);
        let keys: Vec<(String, String)> = rows
            .iter()
            .map(|r| (r.repository.clone(), r.node.clone()))
            .collect();
        assert_eq!(
            keys,
            [
                ("r/busybox".to_string(), "n2".to_string()),
                ("r/web".to_string(), "n1".to_string()),
                ("r/web".to_string(), "n2".to_string()),
            ]
        );
        assert_eq!(
            failed,
            [(
                "n3".to_string(),
                "the agent of node n3 does not answer".to_string()
            )]
        );
        let cells = cells(&rows[0], 1_000 + 180);
        assert_eq!(
            cells,
            [
                "r/busybox",
                "1",
                "sha256:dddddddddddd",
                "cd0000000000",
                "3 minutes ago",
                "2 KiB",
                "n2"
            ]
        );
        let mut untagged = rows[0].clone();
        untagged.tag.clear();
        assert_eq!(super::cells(&untagged, 1_000)[1], "<none>");
    }

    #[test]
    fn ages_read_as_dockers() {
        assert_eq!(ago(0), "Less than a second ago");
        assert_eq!(ago(45), "45 seconds ago");
        assert_eq!(ago(90), "About a minute ago");
        assert_eq!(ago(3 * 3600), "3 hours ago");
        assert_eq!(ago(3 * 86400), "3 days ago");
        assert_eq!(ago(-5), "Less than a second ago");
    }

    #[test]
    fn a_pull_prints_a_line_per_step_not_per_byte() {
        let layer = |state: State, done: u64| LayerProgress {
            digest: format!("sha256:{}", "a".repeat(64)),
            done,
            total: 100,
            state: state as i32,
        };
        let mut steps = Steps::default();
        assert!(steps.lines("n1", &[layer(State::Waiting, 0)]).is_empty());
        assert_eq!(
            steps.lines("n1", &[layer(State::Downloading, 10)]),
            ["n1: aaaaaaaaaaaa: Downloading"]
        );
        assert!(
            steps
                .lines("n1", &[layer(State::Downloading, 60)])
                .is_empty()
        );
        assert_eq!(
            steps.lines("n2", &[layer(State::Exists, 100)]),
            ["n2: aaaaaaaaaaaa: Already exists"]
        );
        assert_eq!(
            steps.lines("n1", &[layer(State::Done, 100)]),
            ["n1: aaaaaaaaaaaa: Pull complete"]
        );
    }
}
