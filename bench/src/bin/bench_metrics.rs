//! What `/metrics` scraped every second costs, against no scraping (issue
//! #17's benchmark; target: < 2 % of a core).
//!
//!     cargo build -p berth-bench -p berth-controller -p berth-agent -p berth-cli
//!     target/debug/bench-metrics controller --nodes 50 --tasks-per-node 20
//!     target/debug/bench-metrics agent --tasks 50
//!
//! controller: 3 controllers (plain text) and simulated agents (bench-scale's
//! fleet) running nodes x tasks-per-node tasks; the leader's CPU and memory.
//! agent: one real agent in a test host running --tasks busybox containers
//! (the per-task cgroup gauges read at each scrape); the agent's CPU and
//! memory. Release builds show the daemons' real cost; debug builds cost more.
//! Not part of CI.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_bench::controller::berth::{BerthCluster, Transport};
use berth_bench::metrics_cost::{compare, logged_metrics_address, scrape_tcp};
use berth_bench::scale::api::Api;
use berth_bench::scale::fleet::Fleet;
use berth_testhost::cluster::Cluster;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "The CPU and memory cost of scraping /metrics every second")]
struct Args {
    /// Seconds of each window (quiet, scraped, quiet).
    #[arg(long, default_value_t = 30, global = true)]
    window: u64,
    #[command(subcommand)]
    side: Side,
}

#[derive(Subcommand)]
enum Side {
    /// The leader of 3 controllers with simulated agents.
    Controller {
        #[arg(long, default_value_t = 50)]
        nodes: usize,
        #[arg(long, default_value_t = 20)]
        tasks_per_node: u64,
        /// First of the controllers' three API ports on 127.0.0.1.
        #[arg(long, default_value_t = 27400)]
        base_port: u16,
    },
    /// One real agent running busybox containers.
    Agent {
        #[arg(long, default_value_t = 50)]
        tasks: usize,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    let window = Duration::from_secs(args.window.max(2));
    match args.side {
        Side::Controller {
            nodes,
            tasks_per_node,
            base_port,
        } => tokio::runtime::Runtime::new()?.block_on(controller(
            nodes,
            tasks_per_node,
            base_port,
            window,
        )),
        Side::Agent { tasks } => agent(tasks, window),
    }
}

/// The address a daemon logged it serves /metrics on (started with port 0).
async fn wait_for(what: &str, deadline: Duration, done: impl Fn() -> bool) -> Result<()> {
    let until = Instant::now() + deadline;
    while !done() {
        if Instant::now() > until {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn controller(
    nodes: usize,
    tasks_per_node: u64,
    base_port: u16,
    window: Duration,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let extra = ["--metrics-listen".to_string(), "127.0.0.1:0".to_string()];
    let cluster =
        BerthCluster::start_with(dir.path(), base_port, &extra, Transport::Plaintext).await?;
    let leader = cluster.leader().await?;
    let pid = cluster.members[leader].pid().context("the leader runs")?;
    let metrics = logged_metrics_address(&dir.path().join(format!("berth-{leader}.log"))).await?;
    let addresses = cluster.addresses();
    let api = Api::connect(&addresses[leader], cluster.security()).await?;
    let fleet = Fleet::start(addresses.clone(), nodes, 16, Vec::new());
    wait_for("the agents", Duration::from_secs(120), || {
        fleet.connected() >= nodes
    })
    .await?;
    api.create_services(nodes, tasks_per_node, None, 8).await?;
    let tasks = nodes * tasks_per_node as usize;
    wait_for("every task running", Duration::from_secs(300), || {
        fleet.running() >= tasks
    })
    .await?;
    eprintln!("{nodes} nodes, {tasks} tasks running; leader pid {pid}, /metrics at {metrics}");
    // Let the convergence's writes settle before the quiet window.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let what = format!("controller (leader of 3, {nodes} simulated nodes, {tasks} tasks)");
    tokio::task::spawn_blocking(move || {
        compare(&what, pid, window, &mut || scrape_tcp(metrics)).map(|_| ())
    })
    .await??;
    drop(fleet);
    Ok(())
}

fn agent(tasks: usize, window: Duration) -> Result<()> {
    const PORT: u16 = 9401;
    let mut cluster = Cluster::start("bench-metrics", 1, 0, 1)?;
    cluster.agent_args = vec!["--metrics-listen".into(), format!("127.0.0.1:{PORT}")];
    cluster.start_agent(0)?;
    cluster.wait_nodes_ready(1)?;
    let replicas = tasks.to_string();
    cluster.create_service("load", &["--replicas", &replicas], &["sleep", "86400"])?;
    cluster.wait_running("load", tasks, Duration::from_secs(60 + tasks as u64 * 2))?;
    let pid = cluster.agent(0)?.pid().context("the agent runs")?;
    let host = cluster.agent_hosts[0];
    eprintln!("{tasks} tasks running; agent pid {pid}");
    std::thread::sleep(Duration::from_secs(5));
    let net = &cluster.c.net;
    let mut scrape = || -> Result<usize> {
        let body = net
            .host(host)
            .http_get(std::net::Ipv4Addr::LOCALHOST, PORT, "/metrics")?
            .context("no answer from the agent's /metrics")?;
        Ok(body.len())
    };
    let what = format!("agent ({tasks} running busybox tasks)");
    compare(&what, pid, window, &mut scrape)?;
    Ok(())
}
