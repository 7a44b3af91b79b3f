//! berth-agent: the per-host daemon. Session with the controllers, task supervisor,
//! images and network. `berth-agent image ...` manages this host's images.
use std::path::PathBuf;

use anyhow::Context;
use berth_agent::image::{Image, ImageStore, ImportOptions, PruneScope, PullOptions};
use clap::{Parser, Subcommand, ValueEnum};

/// The berth node agent: runs the tasks the controllers assign to this host.
#[derive(Debug, Parser)]
#[command(name = "berth-agent", version = berth_proto::VERSION, subcommand_negates_reqs = true)]
struct Args {
    /// Directory for images, containers and the agent's local state.
    #[arg(long, required = true)]
    data_dir: Option<PathBuf>,
    /// Controllers to reach the cluster through (comma-separated).
    #[arg(long, value_delimiter = ',')]
    controller: Vec<String>,
    /// Address other nodes reach this one at (default: the one used to reach
    /// the controllers).
    #[arg(long)]
    advertise: Option<String>,
    /// Node name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// KEY=VALUE node label; repeatable.
    #[arg(long)]
    label: Vec<String>,
    /// OCI runtime binary: a path, or a name on PATH (e.g. runc). Default:
    /// berth-runtime beside this executable, else on PATH.
    #[arg(long)]
    runtime: Option<PathBuf>,
    /// The runtime's state directory.
    #[arg(long, default_value = "/run/berth/runtime")]
    runtime_root: PathBuf,
    /// A registry (HOST:PORT) reached over plain HTTP; repeatable.
    #[arg(long)]
    insecure_registry: Vec<String>,
    /// Top-level cgroup the containers' cgroups go below.
    #[arg(long, default_value = "berth")]
    cgroup_parent: String,
    /// Where the agent's API (task logs for `berth service logs`) listens.
    #[arg(long, default_value = "0.0.0.0:7401")]
    api_listen: std::net::SocketAddr,
    /// Where task network namespaces are bind-mounted.
    #[arg(long, default_value = "/run/berth/netns")]
    netns_dir: PathBuf,
    /// The agent join token (`berth cluster join-token agent`): needed the
    /// first time, and to rejoin after the certificate expired while off.
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    token: Option<String>,
    /// Read the join token from this file (keeps it out of `ps`).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Speak plain text without authentication, to controllers started with
    /// --insecure-plaintext. For benchmarks on a private machine only.
    #[arg(long)]
    insecure_plaintext: bool,
    /// Where each task's secrets tmpfs is mounted (keep it outside the data dir:
    /// secrets are never on disk).
    #[arg(long, default_value = "/run/berth/secrets")]
    secrets_dir: PathBuf,
    /// Serve Prometheus metrics at http://ADDR/metrics (plain HTTP, no
    /// authentication: keep it on a private address). Off when not given.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Log lines as text, or as one JSON object each with the event's fields
    /// (ids) as keys. BERTH_LOG filters what is logged.
    #[arg(long, value_enum, default_value_t = berth_telemetry::LogFormat::Text)]
    log_format: berth_telemetry::LogFormat,
    /// Image garbage collection starts when the data dir's disk is this
    /// full (percent)...
    #[arg(long, value_name = "PERCENT", default_value_t = 85)]
    image_gc_high: u8,
    /// ...and removes unused images, least recently used first, until it is
    /// under this (percent).
    #[arg(long, value_name = "PERCENT", default_value_t = 80)]
    image_gc_low: u8,
    /// Images used (a task started or ended, a pull) less than this long ago
    /// are kept by garbage collection.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    image_gc_keep_recent: u64,
    /// How often garbage collection measures the disk (besides after pulls).
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    image_gc_interval: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage the images on this host.
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Debug, clap::Args)]
struct Store {
    /// The agent's data directory (images live in DIR/images).
    #[arg(long)]
    data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Pull an image from a registry and unpack it.
    Pull {
        /// Image reference, e.g. 127.0.0.1:5000/busybox:1.
        reference: String,
        #[command(flatten)]
        store: Store,
        /// A registry (HOST:PORT) to reach over plain HTTP; repeatable.
        #[arg(long)]
        insecure_registry: Vec<String>,
        /// Registry credentials in the docker config.json format.
        #[arg(long, env = "BERTH_REGISTRY_AUTH")]
        registry_auth: Option<PathBuf>,
        /// Layers downloaded at once.
        #[arg(long, default_value_t = 3)]
        max_concurrent_downloads: usize,
        /// Platform to pull from an image index, as OS/ARCH (default: this host's).
        #[arg(long, value_parser = parse_platform)]
        platform: Option<(String, String)>,
        /// No progress display.
        #[arg(long)]
        quiet: bool,
    },
    /// List the images.
    Ls {
        #[command(flatten)]
        store: Store,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show an image and its config (entrypoint, cmd, env, ...) as JSON.
    Inspect {
        name: String,
        #[command(flatten)]
        store: Store,
    },
    /// Remove images by name or id, as `docker rmi` (refused while a
    /// container uses one); their content goes when nothing else needs it.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        store: Store,
        /// Remove every name of an image given by id.
        #[arg(short, long)]
        force: bool,
    },
    /// Import an OCI layout (directory or tar) or a docker save archive.
    Import {
        path: PathBuf,
        #[command(flatten)]
        store: Store,
        /// Name for the image (for an archive holding one image).
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove dangling content (blobs and layers no image or container
    /// uses), as `docker image prune`; with -a every image no container uses.
    Prune {
        #[command(flatten)]
        store: Store,
        /// Also every image no container uses.
        #[arg(short, long)]
        all: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Table,
    Json,
}

fn main() -> anyhow::Result<()> {
    berth_pki::install_crypto_provider();
    let args = Args::parse();
    // The daemon reports what it does; image commands stay quiet.
    // hickory-server logs every DNS query at info.
    let default = if args.command.is_none() {
        "info,hickory_server=warn"
    } else {
        "warn"
    };
    berth_telemetry::logs::init_stderr(args.log_format, "BERTH_LOG", default)?;
    match args.command {
        Some(Command::Image(cmd)) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("failed to start the async runtime")?;
            rt.block_on(image(cmd))
        }
        None => daemon(args),
    }
}

fn daemon(args: Args) -> anyhow::Result<()> {
    // First of all: without a runtime every task would fail, one by one.
    let runtime = berth_agent::daemon::locate_runtime(args.runtime.as_deref())?;
    let data_dir = args.data_dir.context("--data-dir is required")?;
    if args.controller.is_empty() {
        anyhow::bail!("--controller ADDR[,ADDR...] is required to run the agent");
    }
    let mut labels = std::collections::BTreeMap::new();
    for item in &args.label {
        let (k, v) = item
            .split_once('=')
            .with_context(|| format!("label {item:?} is not KEY=VALUE"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    let name = match args.name {
        Some(name) => name,
        None => nix::unistd::gethostname()
            .context("cannot read the host name; pass --name")?
            .to_string_lossy()
            .to_string(),
    };
    let token = berth_pki::token::from_flags(args.token.as_deref(), args.token_file.as_deref())?;
    let image_gc = berth_agent::image::GcPolicy {
        marks: berth_agent::image::Marks::new(args.image_gc_high, args.image_gc_low)?,
        interval: std::time::Duration::from_secs(args.image_gc_interval),
        keep_recent: std::time::Duration::from_secs(args.image_gc_keep_recent),
    };
    let opts = berth_agent::daemon::AgentOptions {
        token,
        insecure_plaintext: args.insecure_plaintext,
        data_dir,
        controllers: args.controller,
        name,
        advertise: args.advertise.unwrap_or_default(),
        labels,
        runtime: Some(runtime),
        runtime_root: args.runtime_root,
        insecure_registries: args.insecure_registry,
        cgroup_parent: args.cgroup_parent,
        api_listen: args.api_listen,
        shim: Vec::new(),
        netns_dir: args.netns_dir,
        secrets_dir: args.secrets_dir,
        metrics_listen: args.metrics_listen,
        image_gc,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    rt.block_on(berth_agent::daemon::run(opts))?;
    Ok(())
}

/// The store; while an agent runs on it, the error says to go through
/// `berth images/pull/rmi` (the running agent serves them).
fn open(store: &Store) -> anyhow::Result<ImageStore> {
    match ImageStore::open(&store.data_dir) {
        Ok(s) => Ok(s),
        Err(e @ berth_agent::image::ImageError::Locked { .. }) => Err(e.into()),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "failed to open the image store in {}",
            store.data_dir.display()
        ))),
    }
}

fn parse_platform(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((os, arch)) if !os.is_empty() && !arch.is_empty() && !arch.contains('/') => {
            Ok((os.to_string(), arch.to_string()))
        }
        _ => Err(format!("{s:?} is not OS/ARCH, e.g. linux/amd64")),
    }
}

async fn image(cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Pull {
            reference,
            store,
            insecure_registry,
            registry_auth,
            max_concurrent_downloads,
            platform,
            quiet,
        } => {
            let opts = PullOptions {
                insecure_registries: insecure_registry,
                credentials_file: registry_auth,
                credentials: None,
                progress: !quiet,
                max_concurrent_downloads,
                platform,
                progress_to: None,
            };
            let image = open(&store)?.pull(&reference, &opts).await?;
            println!("{} {}", image.name, image.manifest_digest);
        }
        ImageCommand::Ls { store, format } => {
            let images = open(&store)?.list()?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&images)?),
                Format::Table => print_table(&images),
            }
        }
        ImageCommand::Inspect { name, store } => {
            let store = open(&store)?;
            let image = store.get(&name)?;
            let config = store.image_config(&image)?;
            let out = serde_json::json!({ "image": image, "config": config });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        ImageCommand::Rm {
            names,
            store,
            force,
        } => {
            let store = open(&store)?;
            for name in names {
                let report = store.remove_image(&name, force).await?;
                for name in &report.untagged {
                    println!("Untagged: {name}");
                }
                for id in &report.deleted {
                    println!("Deleted: {id}");
                }
                print_removed(&report.content);
            }
        }
        ImageCommand::Import { path, store, name } => {
            let images = open(&store)?.import(&path, &ImportOptions { name }).await?;
            for image in images {
                println!("{} {}", image.name, image.manifest_digest);
            }
        }
        ImageCommand::Prune { store, all } => {
            let scope = if all {
                PruneScope::Unused
            } else {
                PruneScope::Dangling
            };
            let report = open(&store)?.prune_images(scope).await?;
            for name in &report.untagged {
                println!("Untagged: {name}");
            }
            print_removed(&report.content);
        }
    }
    Ok(())
}

fn print_removed(content: &berth_agent::image::PruneReport) {
    println!(
        "removed {} blobs ({} bytes) and {} snapshots",
        content.blobs.len(),
        content.bytes,
        content.snapshots.len()
    );
}

fn print_table(images: &[Image]) {
    println!(
        "{:<50} {:<14} {:>7} {:>12}",
        "NAME", "MANIFEST", "LAYERS", "SIZE"
    );
    for i in images {
        println!(
            "{:<50} {:<14} {:>7} {:>12}",
            i.name,
            i.manifest_digest.short(),
            i.layers.len(),
            i.size()
        );
    }
}
