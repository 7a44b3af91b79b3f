//! `berth images` / `berth image ls`.

use anyhow::{Result, bail};
use berth_proto::v1::{ListImagesRequest, NodeSelector};

use super::view::{self, HEADER};
use super::{Client, ListArgs};
use crate::client::explain;
use crate::output::{self, Format};

pub async fn run(client: &mut Client, args: &ListArgs) -> Result<()> {
    let answer = client
        .list(ListImagesRequest {
            nodes: Some(NodeSelector {
                node: args.node.clone().unwrap_or_default(),
                all_nodes: args.node.is_none(),
            }),
        })
        .await
        .map_err(explain)?
        .into_inner();
    let asked = answer.nodes.len();
    let (rows, failed) = view::rows(answer);
    for (node, why) in &failed {
        eprintln!("berth: node {node}: {why}");
    }
    if asked > 0 && failed.len() == asked {
        bail!("no node could list its images");
    }
    if args.quiet {
        let mut seen = std::collections::HashSet::new();
        for row in &rows {
            let id = view::short_id(&row.id);
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(());
    }
    match args.format {
        Format::Json => output::json(&serde_json::to_value(&rows)?),
        Format::Table => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let cells: Vec<Vec<String>> = rows.iter().map(|r| view::cells(r, now)).collect();
            output::table(&HEADER, &cells);
            Ok(())
        }
    }
}
