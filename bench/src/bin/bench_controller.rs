//! berth's replicated store against a 3-member etcd, same machine, same run.
//!
//!     cargo build --release --workspace && target/release/bench-controller
//!
//! Both clusters run side by side; each round measures p50/p99 latency of
//! 256-byte writes with one client and throughput with 64 clients on both
//! (alternating which goes first), so a slow spell of a shared machine hits both.
//! Ratios are medians of the per-round ratios. Then the time from kill -9 of the
//! leader to the next write, for both.

use std::time::Duration;

use anyhow::Result;
use berth_bench::controller::berth::{BerthCluster, Transport};
use berth_bench::controller::{Cluster, etcd::EtcdCluster, workload};
use berth_bench::stats::{median, ms};
use clap::Parser;

#[derive(Parser)]
#[command(about = "berth controllers vs etcd: latency, throughput, failover")]
struct Args {
    /// Sequential writes per round for the latency figure.
    #[arg(long, default_value_t = 2000)]
    writes: usize,
    /// Concurrent clients for the throughput figure.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds of each round's throughput run.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Interleaved rounds (medians reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Failovers measured per system (median reported).
    #[arg(long, default_value_t = 3)]
    failovers: usize,
    /// Measure berth only (for profiling); no ratios.
    #[arg(long)]
    berth_only: bool,
    /// Both sides in plain text (default: mutual TLS on both, etcd with its
    /// own TLS flags and client certificates).
    #[arg(long)]
    plaintext: bool,
    /// Skip measuring berth in plain text for the cost of TLS.
    #[arg(long)]
    no_tls_cost: bool,
}

/// One round's figures of one system.
#[derive(Clone, Copy)]
struct Round {
    p50: f64,
    p99: f64,
    read_p50: f64,
    throughput: f64,
}

async fn round(cluster: &Cluster, args: &Args) -> Result<Round> {
    let (p50, p99) = workload::latency(cluster, args.writes).await?;
    let read_p50 = workload::read_latency(cluster, args.writes).await?;
    let throughput =
        workload::throughput(cluster, args.clients, Duration::from_secs(args.seconds)).await?;
    let r = Round {
        p50: ms(p50),
        p99: ms(p99),
        read_p50: ms(read_p50),
        throughput,
    };
    println!(
        "{:>6}: p50 {:.3} ms  p99 {:.3} ms  {:.0} writes/s with {} clients  (local read p50 {:.3} ms)",
        cluster.name(),
        r.p50,
        r.p99,
        r.throughput,
        args.clients,
        r.read_p50
    );
    Ok(r)
}

async fn failovers(cluster: &mut Cluster, n: usize) -> Result<f64> {
    let mut runs = Vec::new();
    for _ in 0..n {
        runs.push(ms(workload::failover(cluster).await?));
        // Let the restarted member rejoin before the next one.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let failover = median(&mut runs.clone());
    println!(
        "{:>6}: failover {failover:.0} ms (runs: {:?})",
        cluster.name(),
        runs.iter().map(|r| r.round()).collect::<Vec<_>>()
    );
    Ok(failover)
}

/// What mutual TLS costs berth: medians of the per-round ratios of berth with
/// TLS to berth in plain text, measured in the same interleaved rounds.
fn tls_cost(tls: &[Round], plain: &[Round]) {
    let ratios: Vec<Round> = tls
        .iter()
        .zip(plain)
        .map(|(t, p)| Round {
            p50: t.p50 / p.p50,
            p99: t.p99 / p.p99,
            read_p50: t.read_p50 / p.read_p50,
            throughput: t.throughput / p.throughput,
        })
        .collect();
    if ratios.is_empty() {
        return;
    }
    println!(
        "berth tls/plaintext (medians of {} interleaved rounds): p50 {:.2}  p99 {:.2}  \
         throughput {:.2}  local read {:.2}",
        ratios.len(),
        medians(&ratios, |r| r.p50),
        medians(&ratios, |r| r.p99),
        medians(&ratios, |r| r.throughput),
        medians(&ratios, |r| r.read_p50),
    );
}

fn medians(rounds: &[Round], f: impl Fn(&Round) -> f64) -> f64 {
    median(&mut rounds.iter().map(f).collect::<Vec<_>>())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    println!("logs and data in {}", dir.path().display());
    let transport = if args.plaintext {
        Transport::Plaintext
    } else {
        Transport::Tls
    };
    println!("transport: {}", transport.name());
    let mut berth = Cluster::Berth(BerthCluster::start(dir.path(), 27401, transport).await?);
    berth.prepare_keys(args.clients.max(64)).await?;
    // berth in plain text beside it, for the cost of TLS.
    let plain = if transport == Transport::Tls && !args.no_tls_cost {
        let plain_dir = dir.path().join("plaintext");
        std::fs::create_dir_all(&plain_dir)?;
        let plain =
            Cluster::Berth(BerthCluster::start(&plain_dir, 27501, Transport::Plaintext).await?);
        plain.prepare_keys(args.clients.max(64)).await?;
        Some(plain)
    } else {
        None
    };
    let (mut with_tls, mut without) = (Vec::new(), Vec::new());
    let mut etcd = if args.berth_only {
        None
    } else {
        let etcd = Cluster::Etcd(EtcdCluster::start(dir.path(), 23791, transport).await?);
        etcd.prepare_keys(args.clients.max(64)).await?;
        Some(etcd)
    };
    let mut pairs = Vec::new();
    for i in 0..args.rounds {
        println!("round {}", i + 1);
        if let Some(plain) = &plain {
            // Plain text first in odd rounds, after berth with TLS in even ones.
            if i % 2 == 1 {
                without.push(round(plain, &args).await?);
                with_tls.push(round(&berth, &args).await?);
            } else {
                with_tls.push(round(&berth, &args).await?);
                without.push(round(plain, &args).await?);
            }
        }
        let Some(etcd) = &etcd else {
            round(&berth, &args).await?;
            continue;
        };
        let (b, e) = if i % 2 == 0 {
            let b = round(&berth, &args).await?;
            (b, round(etcd, &args).await?)
        } else {
            let e = round(etcd, &args).await?;
            (round(&berth, &args).await?, e)
        };
        pairs.push((b, e));
    }
    tls_cost(&with_tls, &without);
    drop(plain);
    let berth_failover = failovers(&mut berth, args.failovers).await?;
    drop(berth);
    let Some(etcd) = &mut etcd else {
        return Ok(());
    };
    let etcd_failover = failovers(etcd, args.failovers).await?;
    let ratios: Vec<Round> = pairs
        .iter()
        .map(|(b, e)| Round {
            p50: b.p50 / e.p50,
            p99: b.p99 / e.p99,
            read_p50: b.read_p50 / e.read_p50,
            throughput: b.throughput / e.throughput,
        })
        .collect();
    for (name, side) in [("berth", 0), ("etcd", 1)] {
        let all: Vec<Round> = pairs
            .iter()
            .map(|(b, e)| if side == 0 { *b } else { *e })
            .collect();
        println!(
            "{name:>6} medians: p50 {:.3} ms  p99 {:.3} ms  {:.0} writes/s  local read p50 {:.3} ms",
            medians(&all, |r| r.p50),
            medians(&all, |r| r.p99),
            medians(&all, |r| r.throughput),
            medians(&all, |r| r.read_p50),
        );
    }
    println!(
        "berth/etcd (medians of {} interleaved rounds): p50 {:.2} (target <= 1)  p99 {:.2}  \
         throughput {:.2} (target >= 1)  failover {:.2} (target <= 1)  local read {:.2}",
        ratios.len(),
        medians(&ratios, |r| r.p50),
        medians(&ratios, |r| r.p99),
        medians(&ratios, |r| r.throughput),
        berth_failover / etcd_failover,
        medians(&ratios, |r| r.read_p50),
    );
    Ok(())
}
