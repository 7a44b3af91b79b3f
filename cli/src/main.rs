use clap::Parser;

/// The berth command-line interface.
#[derive(Debug, Parser)]
#[command(name = "berth", version = berth_proto::VERSION)]
struct Args {
    /// Controller API address (also BERTH_CONTROLLER).
    #[arg(
        long,
        env = "BERTH_CONTROLLER",
        default_value = "127.0.0.1:7400",
        global = true
    )]
    controller: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::bail!("no command given (controller {})", args.controller)
}
