//! `berth images`, `image ls|pull|rm|prune`, `pull`, `rmi`: the images on the
//! cluster's nodes, served by their running agents through a controller
//! (the `Images` service). Each node answers for itself: a node that fails
//! is reported and the others' answers still count.

mod list;
mod pull;
mod remove;
mod view;

use anyhow::Result;
use berth_proto::v1::NodeSelector;
use berth_proto::v1::images_client::ImagesClient;
use clap::Subcommand;
use tonic::transport::Channel;

use crate::client::Access;
use crate::output::Format;

#[derive(Debug, Subcommand)]
pub enum ImageVerbs {
    /// List the images on the nodes (as `docker images`; `image ls`).
    Images(ListArgs),
    /// Images on the nodes: ls, pull, rm, prune.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Pull an image onto nodes, with progress (as `docker pull`).
    Pull(PullArgs),
    /// Remove images from nodes (as `docker rmi`).
    Rmi(RmiArgs),
}

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// List the images on the nodes.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Pull an image onto nodes.
    Pull(PullArgs),
    /// Remove images from nodes.
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Remove dangling image content (-a: every image no task uses).
    Prune(PruneArgs),
}

/// Which nodes: one, or every ready node.
#[derive(Debug, Default, clap::Args)]
pub struct Nodes {
    /// The node (id, unique id prefix or name).
    #[arg(long, conflicts_with = "all_nodes")]
    node: Option<String>,
    /// Every ready node.
    #[arg(long)]
    all_nodes: bool,
}

impl Nodes {
    fn selector(&self) -> NodeSelector {
        NodeSelector {
            node: self.node.clone().unwrap_or_default(),
            all_nodes: self.all_nodes,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only this node's images (id, unique id prefix or name).
    #[arg(long)]
    node: Option<String>,
    /// Only the image ids.
    #[arg(short, long)]
    quiet: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// The image, e.g. busybox, 127.0.0.1:5000/web:1, web@sha256:….
    image: String,
    #[command(flatten)]
    nodes: Nodes,
    /// No progress, only the result per node.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct RmiArgs {
    /// Image names or ids (a unique id prefix will do).
    #[arg(required = true)]
    images: Vec<String>,
    /// Remove every name of an image given by id. An image a task uses
    /// stays, forced or not (as Docker keeps one a running container uses).
    #[arg(short, long)]
    force: bool,
    #[command(flatten)]
    nodes: Nodes,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Every image no task uses, not only dangling content.
    #[arg(short, long)]
    all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    force: bool,
    #[command(flatten)]
    nodes: Nodes,
}

type Client = ImagesClient<Channel>;

async fn connect(access: &Access) -> Result<Client> {
    Ok(ImagesClient::new(crate::client::channel(access).await?)
        .max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES))
}

pub async fn run(access: &Access, verb: &ImageVerbs) -> Result<()> {
    let mut client = connect(access).await?;
    match verb {
        ImageVerbs::Images(args) | ImageVerbs::Image(ImageCmd::Ls(args)) => {
            list::run(&mut client, args).await
        }
        ImageVerbs::Pull(args) | ImageVerbs::Image(ImageCmd::Pull(args)) => {
            pull::run(&mut client, args).await
        }
        ImageVerbs::Rmi(args) | ImageVerbs::Image(ImageCmd::Rm(args)) => {
            remove::rmi(&mut client, args).await
        }
        ImageVerbs::Image(ImageCmd::Prune(args)) => remove::prune(&mut client, args).await,
    }
}

/// A node's name as answers carry it.
fn node_name(node: Option<&berth_proto::v1::NodeRef>) -> String {
    node.map(|n| {
        if n.node_name.is_empty() {
            n.node_id.clone()
        } else {
            n.node_name.clone()
        }
    })
    .unwrap_or_else(|| "?".to_string())
}

/// The error when some nodes failed: `what` failed on those, by name.
fn failed_on(what: &str, failed: &[String], asked: usize) -> Result<()> {
    if failed.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{what} failed on {} of {asked} nodes ({})",
        failed.len(),
        failed.join(", ")
    )
}
