use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// A berth controller: a member of the Raft group that stores the cluster's state.
#[derive(Debug, Parser)]
#[command(name = "berth-controller", version = berth_proto::VERSION)]
struct Args {
    /// Directory for the Raft log, snapshots and the state machine.
    #[arg(long)]
    data_dir: PathBuf,
    /// Address the API and peer endpoints listen on.
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// Address other members and clients reach this one at (default: --listen).
    #[arg(long)]
    advertise: Option<String>,
    /// Start a new one-member cluster.
    #[arg(long, conflicts_with = "join")]
    init: bool,
    /// Join the cluster through this member.
    #[arg(long)]
    join: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::bail!(
        "the controller cannot serve yet: the replicated store is not built (data dir {})",
        args.data_dir.display()
    )
}
