//! `berth rmi [-f] IMAGE... [--node N | --all-nodes]` and `berth image prune
//! [-a] [-f] [--node N | --all-nodes]`, Docker's output per node.

use std::io::{BufRead, Write};

use anyhow::{Result, bail};
use berth_proto::v1::{
    AgentPruneImagesRequest, AgentRemoveImageRequest, PruneImagesRequest, RemoveImageRequest,
};

use super::{Client, PruneArgs, RmiArgs};
use crate::client::explain;
use crate::units::human_size;

pub async fn rmi(client: &mut Client, args: &RmiArgs) -> Result<()> {
    let mut failed = Vec::new();
    for image in &args.images {
        let answer = client
            .remove(RemoveImageRequest {
                nodes: Some(args.nodes.selector()),
                remove: Some(AgentRemoveImageRequest {
                    image: image.clone(),
                    force: args.force,
                }),
            })
            .await
            .map_err(explain)?
            .into_inner();
        let mut found = false;
        for node in &answer.nodes {
            let name = super::node_name(node.node.as_ref());
            if !node.error.is_empty() {
                eprintln!("berth: node {name}: {}", node.error);
                failed.push(format!("{image} on {name}"));
                continue;
            }
            let Some(result) = &node.result else {
                continue;
            };
            found = true;
            for untagged in &result.untagged {
                println!("{name}: Untagged: {untagged}");
            }
            for deleted in &result.deleted {
                println!("{name}: Deleted: {deleted}");
            }
        }
        let errors = answer.nodes.iter().any(|n| !n.error.is_empty());
        if !found && !errors {
            eprintln!("berth: No such image: {image}");
            failed.push(image.clone());
        }
    }
    if !failed.is_empty() {
        bail!("could not remove {}", failed.join(", "));
    }
    Ok(())
}

pub async fn prune(client: &mut Client, args: &PruneArgs) -> Result<()> {
    if !args.force && !confirm(args)? {
        return Ok(());
    }
    let answer = client
        .prune(PruneImagesRequest {
            nodes: Some(args.nodes.selector()),
            prune: Some(AgentPruneImagesRequest { all: args.all }),
        })
        .await
        .map_err(explain)?
        .into_inner();
    let mut total = 0;
    let mut failed = Vec::new();
    for node in &answer.nodes {
        let name = super::node_name(node.node.as_ref());
        let Some(result) = node.result.as_ref().filter(|_| node.error.is_empty()) else {
            eprintln!("berth: node {name}: {}", node.error);
            failed.push(name);
            continue;
        };
        for untagged in &result.untagged {
            println!("{name}: untagged: {untagged}");
        }
        for deleted in &result.deleted {
            println!("{name}: deleted: {deleted}");
        }
        println!(
            "{name}: reclaimed {} ({} blobs, {} layers)",
            human_size(result.reclaimed_bytes),
            result.blobs,
            result.layers
        );
        total += result.reclaimed_bytes;
    }
    println!("Total reclaimed space: {}", human_size(total));
    super::failed_on("image prune", &failed, answer.nodes.len())
}

/// Docker's question; anything but y/yes (or no answer) is a no.
fn confirm(args: &PruneArgs) -> Result<bool> {
    let what = if args.all {
        "all images without at least one task using them"
    } else {
        "all dangling images"
    };
    let where_ = match (&args.nodes.node, args.nodes.all_nodes) {
        (Some(node), _) => format!("node {node}"),
        (None, true) => "every ready node".to_string(),
        (None, false) => "the cluster's only node".to_string(),
    };
    print!(
        "WARNING! This will remove {what} on {where_}.\nAre you sure you want to continue? [y/N] "
    );
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
