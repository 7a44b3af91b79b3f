//! The control plane at scale: 3 berth controllers and N simulated agents (one
//! process, the real Dispatcher API, no containers) on loopback.
//!
//!     cargo build --release -p berth-bench -p berth-controller && target/release/bench-scale
//!
//! For each size N (default 100, 300, 1,000 nodes) a fresh cluster gets N
//! services of 20 replicas; reported per size: the time from the first create
//! to every task running, the leader's CPU seconds and peak RSS, the bytes sent
//! to the agents. Then the growth ratio t(largest)/t(smallest) (the smallest
//! size is run 3 times, its median taken), and on the largest cluster the
//! leader's CPU while nothing changes and the recovery from lost nodes.
//! Targets are printed as met or missed; the exit code is 0 whenever the run
//! finishes. Not part of CI.

use std::time::Duration;

use anyhow::Result;
use berth_bench::controller::berth::Transport;
use berth_bench::scale::run::{self, IdleResult, Live, LostResult, SizeResult, SizeSettings};
use berth_bench::stats::median;
use clap::Parser;

#[derive(Parser)]
#[command(about = "3 controllers, N simulated agents: convergence time, leader CPU and memory")]
struct Args {
    /// Cluster sizes (nodes), smallest first.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 300, 1000])]
    nodes: Vec<usize>,
    /// Tasks per node: each size gets N services of this many replicas.
    #[arg(long, default_value_t = 20)]
    tasks_per_node: u64,
    /// Runs of the smallest size (its median is the growth ratio's base).
    #[arg(long, default_value_t = 3)]
    small_runs: usize,
    /// Seconds from the first create until a size counts as not converged.
    #[arg(long, default_value_t = 180)]
    deadline: u64,
    /// Seconds for all agents to register before the services are created anyway.
    #[arg(long, default_value_t = 120)]
    register_deadline: u64,
    /// Skip the idle measurement on the largest cluster.
    #[arg(long)]
    skip_idle: bool,
    /// Seconds of the idle measurement.
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
    /// Skip the lost-nodes measurement on the largest cluster.
    #[arg(long)]
    skip_lost: bool,
    /// Agents that stop heartbeating in the lost-nodes measurement.
    #[arg(long, default_value_t = 50)]
    lost: usize,
    /// Seconds after the loss until the lost-nodes measurement gives up.
    #[arg(long, default_value_t = 60)]
    lost_deadline: u64,
    /// The controllers' --node-down-after (seconds).
    #[arg(long, default_value_t = 8)]
    down_after: u64,
    /// Shared HTTP/2 connections per controller for all simulated agents.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Plain text instead of mutual TLS (controllers with --insecure-plaintext;
    /// the agents then share --connections connections per controller).
    #[arg(long)]
    plaintext: bool,
    /// Subnet of the services' network (a /16 default network has blocks for
    /// only 960 nodes).
    #[arg(long, default_value = "10.128.0.0/14")]
    subnet: String,
    /// Put the services on the cluster's default network instead.
    #[arg(long)]
    default_network: bool,
    /// Keep the controllers' data and logs (the directory is printed).
    #[arg(long)]
    keep: bool,
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "missed" }
}

fn print_size(r: &SizeResult, run: &str) {
    let converge = match r.converge {
        Some(t) => format!("{:.2}", t.as_secs_f64()),
        None => "none".to_string(),
    };
    println!(
        "nodes={} tasks={} converge_s={converge} leader_cpu_s={:.2} leader_rss_mb={:.1} \
         bytes_to_agents={} running={} controllers_cpu_s={:.2} registered={} register_s={:.1} \
         session_ends={} re_registrations={} elections={} leader_changed={} \
         leader_session_messages={}{run}",
        r.nodes,
        r.tasks,
        r.leader_cpu.as_secs_f64(),
        r.leader_peak_rss_kib as f64 / 1024.0,
        r.bytes_to_agents,
        r.running,
        r.controllers_cpu.as_secs_f64(),
        r.registered,
        r.register.as_secs_f64(),
        r.session_ends,
        r.re_registrations,
        r.elections,
        r.leader_changed,
        r.session_messages,
    );
}

/// What the targets are judged on.
#[derive(Default)]
struct Figures {
    /// (nodes, converge seconds or None) of every run.
    runs: Vec<(usize, Option<f64>)>,
    largest: Option<SizeResult>,
    idle: Option<IdleResult>,
    lost: Option<LostResult>,
}

async fn run_sizes(args: &Args, parent: &std::path::Path, figures: &mut Figures) {
    let Some(&largest) = args.nodes.iter().max() else {
        return;
    };
    let smallest = args.nodes.iter().copied().min().unwrap_or(largest);
    let mut base_port = 27700u16;
    for &nodes in &args.nodes {
        let runs = if nodes == smallest && smallest != largest {
            args.small_runs.max(1)
        } else {
            1
        };
        for i in 0..runs {
            let settings = SizeSettings {
                nodes,
                tasks_per_node: args.tasks_per_node,
                deadline: Duration::from_secs(args.deadline),
                register_deadline: Duration::from_secs(args.register_deadline),
                connections: args.connections,
                down_after: Duration::from_secs(args.down_after),
                network_subnet: (!args.default_network).then(|| args.subnet.clone()),
                base_port,
                transport: if args.plaintext {
                    Transport::Plaintext
                } else {
                    Transport::Tls
                },
            };
            base_port += 10;
            let run_label = if runs > 1 {
                format!(" run={}/{runs}", i + 1)
            } else {
                String::new()
            };
            eprintln!("{nodes} nodes{run_label}:");
            let (result, live) = match run::size(parent, &settings).await {
                Ok(done) => done,
                Err(err) => {
                    println!("nodes={nodes} error={err:#}{run_label}");
                    figures.runs.push((nodes, None));
                    continue;
                }
            };
            print_size(&result, &run_label);
            figures
                .runs
                .push((nodes, result.converge.map(|t| t.as_secs_f64())));
            if nodes == largest {
                after_largest(args, live, figures).await;
                figures.largest = Some(result);
            } else {
                finish(live, args.keep);
            }
        }
    }
}

/// The idle and lost-node phases on the largest cluster, then its end.
async fn after_largest(args: &Args, mut live: Live, figures: &mut Figures) {
    let note = if live.converged {
        ""
    } else {
        " (the cluster had not converged: things were still changing)"
    };
    if !args.skip_idle {
        eprintln!("idle for {} s:", args.idle_seconds);
        match run::idle(
            &live,
            Duration::from_secs(3),
            Duration::from_secs(args.idle_seconds),
        )
        .await
        {
            Ok(idle) => {
                println!(
                    "idle nodes={} tasks={} seconds={:.0} leader_cpu_pct={:.1} bytes_to_agents={} \
                     re_registrations={} delivery_tail_s={} quiet_s={:.0} quiet_cpu_pct={}{note}",
                    live.fleet.len(),
                    live.tasks,
                    idle.window.as_secs_f64(),
                    idle.leader_cpu_percent,
                    idle.bytes_to_agents,
                    idle.re_registrations,
                    idle.delivery_tail
                        .map_or("none".to_string(), |t| format!("{:.0}", t.as_secs_f64())),
                    idle.quiet.as_secs_f64(),
                    idle.quiet_cpu_percent
                        .map_or("none".to_string(), |p| format!("{p:.1}")),
                );
                figures.idle = Some(idle);
            }
            Err(err) => println!("idle error={err:#}"),
        }
    }
    if !args.skip_lost {
        eprintln!("{} agents stop:", args.lost);
        match run::lose(
            &mut live,
            args.lost,
            Duration::from_secs(args.lost_deadline),
        )
        .await
        {
            Ok(lost) => {
                let recovered = match lost.recovered {
                    Some(t) => format!("{:.2}", t.as_secs_f64()),
                    None => "none".to_string(),
                };
                println!(
                    "lost nodes={} of={} tasks_on_lost={} down_after_s={} recovered_s={recovered} \
                     running={} of {} declared_down={} false_downs={}{note}",
                    lost.lost,
                    live.fleet.len(),
                    lost.tasks_on_lost,
                    live.down_after.as_secs(),
                    lost.running,
                    live.tasks,
                    lost.declared_down,
                    lost.false_downs,
                );
                figures.lost = Some(lost);
            }
            Err(err) => println!("lost error={err:#}"),
        }
    }
    finish(live, args.keep);
}

fn finish(live: Live, keep: bool) {
    let Live { cluster, dir, .. } = live;
    drop(cluster);
    if keep {
        eprintln!("  kept {}", dir.keep().display());
    }
}

fn report_targets(args: &Args, figures: &Figures) {
    let smallest = args.nodes.iter().copied().min().unwrap_or(0);
    let largest = args.nodes.iter().copied().max().unwrap_or(0);
    let times = |n: usize| -> Vec<Option<f64>> {
        figures
            .runs
            .iter()
            .filter(|(nodes, _)| *nodes == n)
            .map(|(_, t)| *t)
            .collect()
    };
    let largest_t = times(largest).first().copied().flatten();
    if smallest != largest {
        let small: Vec<f64> = times(smallest).into_iter().flatten().collect();
        let base = median(&mut small.clone());
        let linear = largest as f64 / smallest as f64;
        match (largest_t, small.is_empty()) {
            (Some(t), false) => {
                let ratio = t / base;
                println!(
                    "growth_ratio={ratio:.2} t({largest})={t:.2} s / median t({smallest})={base:.2} s \
                     (linear = {linear:.0}); target <= {:.0}: {}",
                    linear * 1.2,
                    met(ratio <= linear * 1.2)
                );
            }
            (None, false) => println!(
                "growth_ratio>{:.2} ({largest} nodes did not converge within {} s; median t({smallest})={base:.2} s, \
                 linear = {linear:.0}); target <= {:.0}: missed",
                args.deadline as f64 / base,
                args.deadline,
                linear * 1.2
            ),
            (_, true) => println!("growth_ratio=none ({smallest} nodes never converged)"),
        }
    }
    let Some(big) = &figures.largest else {
        return;
    };
    let tasks = big.tasks;
    match big.converge {
        Some(t) => println!(
            "target: {tasks} tasks on {largest} nodes converge within 60 s: {} ({:.1} s)",
            met(t.as_secs_f64() <= 60.0),
            t.as_secs_f64()
        ),
        None => println!(
            "target: {tasks} tasks on {largest} nodes converge within 60 s: missed (not within {} s; {} running)",
            args.deadline, big.running
        ),
    }
    let rss_mb = big.leader_peak_rss_kib as f64 / 1024.0;
    println!(
        "target: leader RSS <= 500 MB at {tasks} tasks: {} ({rss_mb:.0} MB)",
        met(rss_mb <= 500.0)
    );
    if let Some(idle) = &figures.idle {
        println!(
            "target: idle {largest}-node cluster < 5 % of a core: {} ({:.1} %)",
            met(idle.leader_cpu_percent < 5.0),
            idle.leader_cpu_percent
        );
    }
    if let Some(lost) = &figures.lost {
        let limit = args.down_after as f64 + 5.0;
        // A phase whose lost nodes held nothing, or that ended before they
        // were declared down, measured no recovery.
        let measured = lost.tasks_on_lost > 0 && lost.declared_down == lost.lost;
        let in_time = measured && lost.recovered.is_some_and(|t| t.as_secs_f64() <= limit);
        println!(
            "target: lost nodes' tasks run elsewhere within {limit:.0} s with 0 false downs: {} \
             ({}, {} of {} declared down, {} tasks moved, {} false downs)",
            met(in_time && lost.false_downs == 0),
            lost.recovered
                .map(|t| format!("{:.1} s", t.as_secs_f64()))
                .unwrap_or_else(|| format!("not within {} s", args.lost_deadline)),
            lost.declared_down,
            lost.lost,
            lost.tasks_on_lost,
            lost.false_downs
        );
    }
}

async fn run_all(args: Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut figures = Figures::default();
    run_sizes(&args, dir.path(), &mut figures).await;
    report_targets(&args, &figures);
    if args.keep {
        eprintln!("data and logs kept in {}", dir.keep().display());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    args.nodes.sort_unstable();
    args.nodes.dedup();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // On a signal the run is dropped: controllers killed, data removed.
    tokio::select! {
        done = run_all(args) => done,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted");
            Ok(())
        }
        _ = term.recv() => {
            eprintln!("terminated");
            Ok(())
        }
    }
}
