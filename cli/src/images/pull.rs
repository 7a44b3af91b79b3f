//! `berth pull IMAGE [--node N | --all-nodes]`: one bar per node and layer
//! on a terminal, a plain line per step otherwise. The user's own registry
//! credentials (where `docker login` keeps them) go with the request, held
//! in memory on the way, as `--with-registry-auth` sends a service's.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;

use anyhow::Result;
use berth_proto::v1::{AgentPullRequest, PullCredentials, PullImageRequest, pull_update};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::view::{self, Steps};
use super::{Client, PullArgs};
use crate::client::explain;
use crate::registry_auth::{credentials_if_any, docker_config_dir};

/// What the terminal shows: a line per node, a bar per layer under it.
struct Bars {
    multi: MultiProgress,
    nodes: HashMap<String, ProgressBar>,
    layers: HashMap<(String, String), ProgressBar>,
    /// The bar the node's next layer goes under (its last one, else its line).
    last: HashMap<String, ProgressBar>,
    style: ProgressStyle,
}

impl Bars {
    fn new() -> Bars {
        Bars {
            multi: MultiProgress::new(),
            nodes: HashMap::new(),
            layers: HashMap::new(),
            last: HashMap::new(),
            style: ProgressStyle::with_template("  {prefix} {bar:30} {bytes}/{total_bytes} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        }
    }

    fn node(&mut self, node: &str) -> &ProgressBar {
        self.nodes.entry(node.to_string()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_message(format!("{node}: pulling"));
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        })
    }

    fn layer(&mut self, node: &str, layer: &berth_proto::v1::LayerProgress) {
        let key = (node.to_string(), layer.digest.clone());
        let bar = match self.layers.get(&key) {
            Some(bar) => bar.clone(),
            None => {
                let after = match self.last.get(node) {
                    Some(bar) => bar.clone(),
                    None => self.node(node).clone(),
                };
                let bar = self
                    .multi
                    .insert_after(&after, ProgressBar::new(layer.total));
                bar.set_style(self.style.clone());
                bar.set_prefix(view::short_id(&layer.digest));
                self.layers.insert(key, bar.clone());
                self.last.insert(node.to_string(), bar.clone());
                bar
            }
        };
        bar.set_length(layer.total);
        bar.set_position(layer.done);
        bar.set_message(view::state_word(layer.state));
    }
}

pub async fn run(client: &mut Client, args: &PullArgs) -> Result<()> {
    let credentials =
        credentials_if_any(&args.image, &docker_config_dir())?.map(|c| PullCredentials {
            docker_config: c.to_config_json(),
        });
    let mut stream = client
        .pull(PullImageRequest {
            nodes: Some(args.nodes.selector()),
            pull: Some(AgentPullRequest {
                image: args.image.clone(),
                credentials,
            }),
        })
        .await
        .map_err(explain)?
        .into_inner();
    let mut bars = (!args.quiet && std::io::stdout().is_terminal()).then(Bars::new);
    let mut steps = Steps::default();
    // Per node: Some(Ok(name)) pulled, Some(Err(why)) failed, None running.
    let mut outcome: BTreeMap<String, Option<Result<String, String>>> = BTreeMap::new();
    while let Some(update) = stream.message().await.map_err(explain)? {
        let node = super::node_name(update.node.as_ref());
        if !update.error.is_empty() {
            if let Some(bars) = &mut bars {
                bars.node(&node)
                    .finish_with_message(format!("{node}: failed: {}", update.error));
            }
            outcome.insert(node, Some(Err(update.error)));
            continue;
        }
        match update.update.and_then(|u| u.update) {
            None => {
                if let Some(bars) = &mut bars {
                    bars.node(&node);
                } else if !args.quiet {
                    println!("{node}: Pulling {}", args.image);
                }
                outcome.entry(node).or_insert(None);
            }
            Some(pull_update::Update::Layers(list)) => match &mut bars {
                Some(bars) => list.layers.iter().for_each(|l| bars.layer(&node, l)),
                None if !args.quiet => {
                    for line in steps.lines(&node, &list.layers) {
                        println!("{line}");
                    }
                }
                None => {}
            },
            Some(pull_update::Update::Done(image)) => {
                let said = format!(
                    "{node}: Digest: {}, Status: pulled {}",
                    image.digest, image.name
                );
                match &mut bars {
                    Some(bars) => bars.node(&node).finish_with_message(said),
                    None => println!("{said}"),
                }
                outcome.insert(node, Some(Ok(image.name)));
            }
        }
    }
    if let Some(bars) = &bars {
        for bar in bars.nodes.values().filter(|b| !b.is_finished()) {
            bar.abandon();
        }
    }
    let mut failed = Vec::new();
    for (node, result) in &outcome {
        match result {
            Some(Ok(_)) => {}
            Some(Err(why)) => {
                eprintln!("berth: node {node}: {why}");
                failed.push(node.clone());
            }
            None => {
                eprintln!("berth: node {node}: the pull ended without an answer");
                failed.push(node.clone());
            }
        }
    }
    super::failed_on(&format!("pull of {}", args.image), &failed, outcome.len())
}
