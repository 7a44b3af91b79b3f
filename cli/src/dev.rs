//! `berth dev`: a whole single-host cluster in one process — a one-member
//! controller and an agent, data under one directory — for trying berth out.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use berth_agent::daemon::AgentOptions;
use berth_controller::dispatcher::DispatcherSettings;
use berth_controller::raft::RaftSettings;
use berth_controller::server::ControllerOptions;
use berth_pki::Bundle;
use clap::Args;

use crate::dev_log;

pub const DEFAULT_API: &str = "127.0.0.1:7400";
/// The daemons' log, in the data dir.
const LOG_FILE: &str = "berth-dev.log";

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where the cluster keeps its data (default: /var/lib/berth-dev as root,
    /// else ~/.local/share/berth-dev).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A registry (HOST:PORT) reached over plain HTTP, by the agent's pulls
    /// and the controller's digest lookups; repeatable.
    #[arg(long)]
    insecure_registry: Vec<String>,
    /// Where the controller's API listens.
    #[arg(long, default_value = DEFAULT_API)]
    listen: SocketAddr,
    /// OCI runtime (default: berth-runtime next to this binary, else from PATH).
    #[arg(long)]
    runtime: Option<PathBuf>,
    /// UDP port of the overlay's VXLAN devices, for a new data dir (not 4789:
    /// Docker Swarm's; not 8472: flannel's).
    #[arg(long, default_value_t = berth_controller::allocator::subnets::DEFAULT_VXLAN_PORT,
          value_parser = clap::value_parser!(u16).range(1..))]
    vxlan_port: u16,
    /// What the daemons log to <data-dir>/berth-dev.log: a level (error, warn,
    /// info, debug, trace) or tracing directives such as
    /// `info,berth_agent=debug` (default: RUST_LOG, else info).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// The cgroup the containers' cgroups go under (the agent's
    /// --cgroup-parent).
    #[arg(long, default_value = "berth-dev")]
    cgroup_parent: String,
    /// Also show the daemons' logs on the terminal (by default it shows only
    /// errors; the full log is in <data-dir>/berth-dev.log).
    #[arg(short, long)]
    verbose: bool,
    /// Serve Prometheus metrics: the controller's at http://ADDR/metrics, the
    /// agent's on the next port (e.g. 127.0.0.1:9400 and :9401).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// The daemons' log lines as text, or as one JSON object each.
    #[arg(long, value_enum, default_value_t = berth_telemetry::LogFormat::Text)]
    log_format: berth_telemetry::LogFormat,
}

fn default_data_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        PathBuf::from("/var/lib/berth-dev")
    } else {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".local/share/berth-dev")
    }
}

/// A binary installed next to this one, else the bare name (found on PATH).
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The agent's metrics address: the controller's, one port up.
fn next_port(addr: SocketAddr) -> Result<SocketAddr> {
    let port = addr.port().checked_add(1).filter(|_| addr.port() != 0);
    match port {
        Some(port) => Ok(SocketAddr::new(addr.ip(), port)),
        None => anyhow::bail!(
            "--metrics-listen {addr}: the agent's metrics go on the next port, so give a port \
             between 1 and 65534"
        ),
    }
}

fn is_initialized(dir: &Path) -> bool {
    dir.join("berth-controller.json").exists()
}

/// The agent join token, asked of the controller at `api` with the admin
/// bundle in `admin_dir`; waits up to 30 s for the controller to come up.
async fn agent_token(api: &str, admin_dir: &Path) -> Result<String> {
    let access = crate::client::Access {
        address: api.to_string(),
        tls_dir: Some(admin_dir.to_path_buf()),
        insecure_plaintext: false,
    };
    let mut last = String::new();
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if !Bundle::exists(admin_dir) {
            continue;
        }
        let mut client = match crate::client::connect(&access).await {
            Ok(client) => client,
            Err(err) => {
                last = format!("{err:#}");
                continue;
            }
        };
        let request = berth_proto::v1::JoinTokenRequest {
            role: "agent".to_string(),
            rotate: false,
        };
        match client.join_token(request).await {
            Ok(answer) => return Ok(answer.into_inner().token),
            Err(status) => last = status.message().to_string(),
        }
    }
    anyhow::bail!("the controller did not come up within 30 s: {last}")
}

pub async fn run(args: DevArgs) -> Result<()> {
    // Before anything starts: without a runtime every task would fail.
    let runtime = berth_agent::daemon::locate_runtime(args.runtime.as_deref())?;
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let log = data_dir.join(LOG_FILE);
    dev_log::init(
        &log,
        args.log_level.as_deref(),
        args.verbose,
        args.log_format,
    )?;
    let agent_metrics = match args.metrics_listen {
        Some(addr) => Some(next_port(addr)?),
        None => None,
    };
    let controller_dir = data_dir.join("controller");
    let controller = ControllerOptions {
        init: !is_initialized(&controller_dir),
        data_dir: controller_dir,
        listen: args.listen,
        advertise: None,
        join: None,
        token: None,
        cert_expiry: berth_pki::ca::DEFAULT_LIFETIME,
        insecure_plaintext: false,
        autolock: false,
        task_history_limit: None,
        raft: RaftSettings::default(),
        dispatcher: DispatcherSettings::default(),
        planner: berth_controller::planner::PlannerSettings {
            new_cluster: berth_controller::allocator::subnets::NewClusterNetwork {
                vxlan_port: args.vxlan_port,
                ..Default::default()
            },
            ..Default::default()
        },
        pins: berth_controller::api::PinSettings {
            insecure_registries: args.insecure_registry.clone(),
            ..Default::default()
        },
        metrics_listen: args.metrics_listen,
        recover: Default::default(),
    };
    let api = args.listen.to_string();
    let admin_dir = berth_controller::datadir::admin_dir(&controller.data_dir);
    let mut controller_task = tokio::spawn(berth_controller::server::run(controller, async {
        let _ = tokio::signal::ctrl_c().await;
    }));
    // The agent joins with the cluster's agent token, which the admin asks for
    // once the controller has elected itself. A controller that stops meanwhile
    // (a data dir it refuses, a port in use) says why at once.
    let token = tokio::select! {
        token = agent_token(&api, &admin_dir) => token?,
        ended = &mut controller_task => {
            ended.context("controller task")?.with_context(|| {
                format!(
                    "the controller stopped (to start afresh, remove {} or pass another --data-dir)",
                    data_dir.display()
                )
            })?;
            anyhow::bail!("the controller stopped before it served");
        }
    };
    let cli_dir = crate::client::default_tls_dir();
    let replaced = Bundle::exists(&cli_dir);
    Bundle::load(&admin_dir)?.save(&cli_dir).with_context(|| {
        format!(
            "cannot write the admin credentials to {}",
            cli_dir.display()
        )
    })?;
    let agent = AgentOptions {
        token: Some(token),
        insecure_plaintext: false,
        data_dir: data_dir.join("agent"),
        controllers: vec![api.clone()],
        name: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().to_string())
            .unwrap_or_else(|_| "dev".to_string()),
        advertise: args.listen.ip().to_string(),
        labels: Default::default(),
        runtime: Some(runtime),
        runtime_root: PathBuf::from("/run/berth-dev/runtime"),
        insecure_registries: args.insecure_registry,
        cgroup_parent: args.cgroup_parent,
        api_listen: SocketAddr::new(args.listen.ip(), args.listen.port() + 1),
        shim: vec![sibling(berth_agent::supervisor::SHIM_BINARY).into_os_string()],
        netns_dir: PathBuf::from("/run/berth-dev/netns"),
        secrets_dir: PathBuf::from("/run/berth-dev/secrets"),
        metrics_listen: agent_metrics,
        image_gc: Default::default(),
    };
    let agent_task = tokio::spawn(berth_agent::daemon::run(agent));
    println!(
        "berth dev: a single-host cluster, data in {}",
        data_dir.display()
    );
    if api == DEFAULT_API {
        println!("  controller API: {api}   (berth talks to it by default)");
    } else {
        println!("  controller API: {api}   (berth --controller {api} ...)");
    }
    println!(
        "  log:            {}   (-v shows it here too)",
        log.display()
    );
    if let (Some(controller), Some(agent)) = (args.metrics_listen, agent_metrics) {
        println!(
            "  metrics:        http://{controller}/metrics (controller), http://{agent}/metrics (agent)"
        );
    }
    println!(
        "  credentials:    {}   ({}this cluster's admin bundle; berth reads it by default)",
        cli_dir.display(),
        if replaced { "replaced with " } else { "" }
    );
    println!(
        "  try:  berth service create hello --image <registry>/busybox:1 --replicas 2 --publish 8080:80 -- sh -c 'mkdir -p /www && hostname >/www/index.html && httpd -f -p 80 -h /www'"
    );
    println!("        berth service ps hello; curl localhost:8080");
    println!("  stop with Ctrl-C (containers keep running; the next `berth dev` re-adopts them)");
    tokio::select! {
        result = controller_task => {
            result.context("controller task")?.context("controller")?;
        }
        result = agent_task => {
            result.context("agent task")?.context("agent")?;
        }
    }
    Ok(())
}
