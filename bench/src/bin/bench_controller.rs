//! berth's replicated store against a 3-member etcd, same machine, same run.
//!
//!     cargo build --release --workspace && target/release/bench-controller
//!
//! Prints p50/p99 latency of 256-byte writes with one client, throughput with 64
//! clients, and the time from kill -9 of the leader to the next write, for both
//! systems, and berth's ratios to etcd.

use std::time::Duration;

use anyhow::Result;
use berth_bench::controller::{Cluster, berth::BerthCluster, etcd::EtcdCluster, workload};
use berth_bench::stats::ms;
use clap::Parser;

#[derive(Parser)]
#[command(about = "berth controllers vs etcd: latency, throughput, failover")]
struct Args {
    /// Sequential writes for the latency figure.
    #[arg(long, default_value_t = 2000)]
    writes: usize,
    /// Concurrent clients for the throughput figure.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds of the throughput run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Failovers measured per system (median reported).
    #[arg(long, default_value_t = 3)]
    failovers: usize,
    /// Measure berth only (for profiling); no ratios.
    #[arg(long)]
    berth_only: bool,
}

struct Figures {
    p50: Duration,
    p99: Duration,
    throughput: f64,
    failover: Duration,
}

async fn measure(cluster: &mut Cluster, args: &Args) -> Result<Figures> {
    cluster.prepare_keys(args.clients.max(64)).await?;
    let (p50, p99) = workload::latency(cluster, args.writes).await?;
    let read_p50 = workload::read_latency(cluster, args.writes).await?;
    let throughput =
        workload::throughput(cluster, args.clients, Duration::from_secs(args.seconds)).await?;
    let mut failovers = Vec::new();
    for _ in 0..args.failovers {
        failovers.push(workload::failover(cluster).await?);
        // Let the restarted member rejoin before the next round.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    failovers.sort();
    let failover = failovers[failovers.len() / 2];
    println!(
        "{:>6}: local (non-Raft) read p50 {:.3} ms",
        cluster.name(),
        ms(read_p50)
    );
    println!(
        "{:>6}: p50 {:.3} ms  p99 {:.3} ms  {:.0} writes/s with {} clients  failover {:.0} ms (runs: {:?})",
        cluster.name(),
        ms(p50),
        ms(p99),
        throughput,
        args.clients,
        ms(failover),
        failovers.iter().map(|d| ms(*d).round()).collect::<Vec<_>>()
    );
    Ok(Figures {
        p50,
        p99,
        throughput,
        failover,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    println!("logs and data in {}", dir.path().display());
    let mut berth = Cluster::Berth(BerthCluster::start(dir.path(), 27401).await?);
    let b = measure(&mut berth, &args).await?;
    drop(berth);
    if args.berth_only {
        return Ok(());
    }
    let mut etcd = Cluster::Etcd(EtcdCluster::start(dir.path(), 23791).await?);
    let e = measure(&mut etcd, &args).await?;
    drop(etcd);
    println!(
        "berth/etcd: p50 {:.2} (target <= 1)  p99 {:.2}  throughput {:.2} (target >= 1)  failover {:.2} (target <= 1)",
        ms(b.p50) / ms(e.p50),
        ms(b.p99) / ms(e.p99),
        b.throughput / e.throughput,
        ms(b.failover) / ms(e.failover),
    );
    Ok(())
}
