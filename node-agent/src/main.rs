use std::path::PathBuf;

use clap::Parser;

/// The berth node agent: runs the tasks the controllers assign to this host.
#[derive(Debug, Parser)]
#[command(name = "berth-agent", version = berth_proto::VERSION)]
struct Args {
    /// Directory for images, containers and the agent's local state.
    #[arg(long)]
    data_dir: PathBuf,
    /// Controllers to reach the cluster through (comma-separated).
    #[arg(long, value_delimiter = ',')]
    controller: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::bail!(
        "the agent cannot run tasks yet: the supervisor is not built (data dir {})",
        args.data_dir.display()
    )
}
