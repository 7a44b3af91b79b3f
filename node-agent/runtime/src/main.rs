use clap::Parser;

const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BERTH_GIT_COMMIT"),
    ")"
);

/// berth's OCI runtime, with runc's command-line surface.
#[derive(Debug, Parser)]
#[command(name = "berth-runtime", version = VERSION)]
struct Args {
    /// Directory for the runtime's container state.
    #[arg(long, default_value = "/run/berth-runtime")]
    root: std::path::PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::bail!(
        "no command given; state lives under {}",
        args.root.display()
    )
}
