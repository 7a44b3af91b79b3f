use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use berth_controller::allocator::subnets::NewClusterNetwork;
use berth_controller::api::PinSettings;
use berth_controller::dispatcher::DispatcherSettings;
use berth_controller::planner::PlannerSettings;
use berth_controller::raft::RaftSettings;
use berth_controller::recovery::Recover;
use berth_controller::server::{ControllerOptions, run};
use berth_proto::net::parse_subnet;
use berth_telemetry::LogFormat;
use clap::Parser;

// The Raft loop and gRPC allocate many small, short-lived buffers; mimalloc
// handles that pattern markedly better than glibc's malloc. The
// `system-allocator` feature leaves it out, so a heap profiler that watches
// malloc (heaptrack) sees the controller's allocations.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A berth controller: a member of the Raft group that stores the cluster's state.
///
/// Start a new cluster with --init, join one with --join ADDR; a restart with an
/// existing data dir needs neither.
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
    /// With --init: lock the secrets key with an unlock key, printed once; a
    /// restarted controller then waits for `berth cluster unlock`.
    #[arg(long, requires = "init")]
    autolock: bool,
    /// With --init: ended tasks kept per slot before the oldest are removed
    /// with their logs (default 5; `berth cluster update` changes it later).
    #[arg(long, requires = "init", value_name = "N")]
    task_history_limit: Option<u32>,
    /// With --init: start the new cluster from a backup (`berth cluster backup`).
    #[arg(
        long,
        value_name = "FILE",
        requires = "init",
        conflicts_with = "autolock"
    )]
    restore: Option<PathBuf>,
    /// With --restore: the unlock key of an autolocked cluster's backup.
    #[arg(
        long,
        value_name = "KEY",
        requires = "restore",
        conflicts_with = "unlock_key_file"
    )]
    unlock_key: Option<String>,
    /// With --restore: read the unlock key from this file (keeps it out of `ps`).
    #[arg(long, value_name = "FILE", requires = "restore")]
    unlock_key_file: Option<PathBuf>,
    /// After losing quorum: make this surviving member a one-member cluster on
    /// its data (the lost members are removed, the controller token rotated).
    #[arg(long, conflicts_with_all = ["init", "join"])]
    force_new_cluster: bool,
    /// Join the cluster through this member (any member; followers pass it on).
    #[arg(long, value_name = "ADDR")]
    join: Option<String>,
    /// The controller join token for --join (`berth cluster join-token controller`).
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    token: Option<String>,
    /// Read the join token from this file (keeps it out of `ps`).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Lifetime of node certificates, set at --init: e.g. 90d, 12h, 30m, 45s.
    #[arg(long, default_value = "90d", value_parser = parse_lifetime)]
    cert_expiry: Duration,
    /// Serve plain text without authentication. For benchmarks on a private
    /// machine only: anyone who reaches the port controls the cluster.
    #[arg(long)]
    insecure_plaintext: bool,
    /// Raft tick in milliseconds.
    #[arg(long, default_value_t = 50)]
    tick_ms: u64,
    /// Election timeout in ticks (the real one is random in [N, 1.2 N)).
    #[arg(long, default_value_t = 16)]
    election_ticks: usize,
    /// Heartbeat interval in ticks.
    #[arg(long, default_value_t = 2)]
    heartbeat_ticks: usize,
    /// Compact the log (and serve laggards a snapshot) after this many entries.
    #[arg(long, default_value_t = 10_000)]
    snapshot_entries: u64,
    /// Declare a node down after this long without a heartbeat (8s, 1m; a
    /// bare number is seconds; at least 2s).
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    node_down_after: Duration,
    /// Address space overlay networks are carved from (one /16 each), fixed when
    /// the cluster's first leader creates the default network.
    #[arg(long, default_value = "10.96.0.0/12")]
    cluster_cidr: String,
    /// UDP port of the overlay's VXLAN devices, fixed when the cluster's first
    /// leader creates the default network (not 4789: Docker Swarm's; not 8472:
    /// flannel's). Every node's firewall must let it through between nodes.
    #[arg(long, default_value_t = berth_controller::allocator::subnets::DEFAULT_VXLAN_PORT,
          value_parser = clap::value_parser!(u16).range(1..))]
    vxlan_port: u16,
    /// VXLAN id of the default network; later networks count up from it.
    /// Fixed when the cluster's first leader creates the default network.
    #[arg(long, default_value_t = berth_controller::allocator::subnets::FIRST_VXLAN_ID,
          value_parser = clap::value_parser!(u32).range(1..=16_000_000))]
    vni_base: u32,
    /// A registry (HOST[:PORT]) asked over plain HTTP when a service's image
    /// tag is pinned to a digest (as the agents' --insecure-registry).
    #[arg(long, value_name = "HOST[:PORT]")]
    insecure_registry: Vec<String>,
    /// How long `service create` and `update` wait for a registry to give
    /// an image's digest before leaving the tag unpinned (3s, 500ms; a bare
    /// number is seconds; at least 100ms).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    resolve_image_timeout: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics (plain HTTP, no
    /// authentication: keep it on a private address). Off when not given.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Log lines as text, or as one JSON object each with the event's fields
    /// (ids) as keys. RUST_LOG filters what is logged.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// No transparent huge pages for this process. The allocator's arenas and the
/// per-thread heaps of a leader serving 1,000 agents touch memory sparsely;
/// with THP on (`always`, the default of many distributions) the kernel backs
/// them with 2 MB pages, so a few live bytes pin a whole huge page and the RSS
/// grows well past what is in use (and a fault clears 2 MB: `clear_page_erms`
/// was a third of an idle leader's CPU profile). Best effort: a kernel without
/// THP refuses, and nothing changes.
fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "cannot disable transparent huge pages"
        );
    }
}

fn main() {
    // Before any thread or arena exists: the flag is per process and
    // inherited by threads made after it.
    disable_transparent_huge_pages();
    if let Err(err) = real_main() {
        eprintln!("berth-controller: {err:#}");
        std::process::exit(1);
    }
}

/// A flag's duration ("90d", "12h", "1m30s", "500ms"; a bare number is
/// seconds), as every berth flag writes one.
fn parse_duration(text: &str) -> Result<Duration, String> {
    berth_proto::units::parse_duration_ms(text).map(Duration::from_millis)
}

/// A certificate lifetime: a duration above 0 (tests shorten lifetimes to
/// seconds, so no minimum beyond that).
fn parse_lifetime(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err("the certificate lifetime must be longer than 0".into()),
        d => Ok(d),
    }
}

fn real_main() -> anyhow::Result<()> {
    berth_pki::install_crypto_provider();
    let args = Args::parse();
    berth_telemetry::logs::init_stderr(
        args.log_format,
        "RUST_LOG",
        "info,raft=warn,h2=warn,tower=warn",
    )?;
    if args.election_ticks <= args.heartbeat_ticks {
        anyhow::bail!(
            "--election-ticks ({}) must be larger than --heartbeat-ticks ({})",
            args.election_ticks,
            args.heartbeat_ticks
        );
    }
    let raft = RaftSettings {
        tick: Duration::from_millis(args.tick_ms.max(1)),
        election_ticks: args.election_ticks,
        max_election_ticks: args.election_ticks + (args.election_ticks / 5).max(1),
        heartbeat_ticks: args.heartbeat_ticks,
        snapshot_entries: args.snapshot_entries.max(1),
        compact_margin: (args.snapshot_entries / 20).clamp(1, 500),
        metrics: Default::default(),
    };
    let token = berth_pki::token::from_flags(args.token.as_deref(), args.token_file.as_deref())?;
    let unlock_key = match (args.unlock_key, &args.unlock_key_file) {
        (Some(key), _) => Some(key),
        (None, Some(file)) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("--unlock-key-file {}: {e}", file.display()))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    let opts = ControllerOptions {
        data_dir: args.data_dir,
        listen: args.listen,
        advertise: args.advertise,
        init: args.init,
        join: args.join,
        token,
        cert_expiry: args.cert_expiry,
        insecure_plaintext: args.insecure_plaintext,
        autolock: args.autolock,
        task_history_limit: args.task_history_limit,
        raft,
        planner: PlannerSettings {
            new_cluster: NewClusterNetwork {
                cidr: parse_subnet(&args.cluster_cidr)
                    .map_err(|e| anyhow::anyhow!("--cluster-cidr {}: {e}", args.cluster_cidr))?,
                vxlan_port: args.vxlan_port,
                vni_base: args.vni_base,
            },
            ..PlannerSettings::default()
        },
        dispatcher: DispatcherSettings {
            down_after: args.node_down_after.max(Duration::from_secs(2)),
            ..DispatcherSettings::default()
        },
        pins: PinSettings {
            insecure_registries: args.insecure_registry,
            timeout: args.resolve_image_timeout.max(Duration::from_millis(100)),
        },
        metrics_listen: args.metrics_listen,
        recover: match (args.restore, args.force_new_cluster) {
            (Some(file), _) => Recover::Restore { file, unlock_key },
            (None, true) => Recover::ForceNewCluster,
            (None, false) => Recover::None,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        run(opts, shutdown).await
    })?;
    Ok(())
}
