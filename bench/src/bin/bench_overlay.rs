//! Container-to-container over berth's VXLAN overlay against host-to-host, across
//! two test hosts, in the same run: one TCP stream's throughput and 1-byte TCP
//! request/response round trips. Rounds interleave the two paths (the order
//! alternates) and medians are reported; targets: throughput ≥ 0.9 of
//! host-to-host, added round trip ≤ 10 µs.
//!
//!     cargo build --release -p berth-bench && target/release/bench-overlay
//!
//! Needs root (namespaces, as the test harness). Traffic flows only between
//! namespaces the benchmark makes; they are gone when it exits, also on Ctrl-C
//! or a panic. Not part of CI.

use std::time::Duration;

use anyhow::{Result, bail};
use berth_bench::overlay::setup::{Endpoint, OverlayBed};
use berth_bench::overlay::traffic::{Pinning, round_trips, throughput};
use berth_bench::overlay::{install_stop_handler, setup::VNI};
use berth_bench::stats::{median, percentile, us};
use clap::Parser;

#[derive(Parser)]
#[command(
    about = "TCP throughput and 1-byte RTT: container-to-container over the overlay vs host-to-host"
)]
struct Args {
    /// Rounds per path (medians reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds of each throughput run (after a 0.5 s warm-up).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Measured round trips per latency run (after 2,000 unmeasured ones).
    #[arg(long, default_value_t = 20_000)]
    round_trips: usize,
    /// Throughput target: overlay / host-to-host at least this.
    #[arg(long, default_value_t = 0.9)]
    min_ratio: f64,
    /// Latency target: added median round trip at most this many µs.
    #[arg(long, default_value_t = 10.0)]
    max_added_us: f64,
    /// A shell command run in both test hosts once the overlay is up, before
    /// measuring (to try data plane settings); may be repeated.
    #[arg(long, value_name = "CMD")]
    host_setup: Vec<String>,
    /// Measure only one path (to profile it).
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Pin the sending end's threads to CPU 0 and the receiving end's to CPU 1
    /// (default: the scheduler places them). On a 2-vCPU VM every cross-CPU
    /// wake-up is an IPI, which makes both paths several times slower.
    #[arg(long)]
    pin: bool,
    /// Print h2's per-device packet counters (bytes per packet) at the end.
    #[arg(long)]
    counters: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Only {
    Host,
    Overlay,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Host = 0,
    Overlay = 1,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::Host => "host-to-host",
            Path::Overlay => "container-to-container",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Path::Host => "host",
            Path::Overlay => "overlay",
        }
    }
}

fn ends(bed: &OverlayBed, path: Path) -> (&Endpoint, &Endpoint) {
    match path {
        Path::Host => (&bed.hosts[0], &bed.hosts[1]),
        Path::Overlay => (&bed.containers[0], &bed.containers[1]),
    }
}

#[derive(Default)]
struct Figures {
    gbps: Vec<f64>,
    rtt_median_us: Vec<f64>,
    rtt_p99_us: Vec<f64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.rounds == 0 || args.round_trips == 0 || args.seconds <= 0.0 {
        bail!("--rounds, --round-trips and --seconds must be positive");
    }
    install_stop_handler()?;
    let bed = OverlayBed::new()?;
    for cmd in &args.host_setup {
        for i in 0..2 {
            bed.host_command(i, "sh", &["-c", cmd])?;
        }
    }
    describe(&bed)?;
    let warmup = Duration::from_millis(500);
    let time = Duration::from_secs_f64(args.seconds);
    let pinning = if args.pin {
        Pinning::spread()
    } else {
        Pinning::NONE
    };
    let paths = match args.only {
        None => vec![Path::Host, Path::Overlay],
        Some(Only::Host) => vec![Path::Host],
        Some(Only::Overlay) => vec![Path::Overlay],
    };
    let mut figures = [Figures::default(), Figures::default()];
    for round in 0..args.rounds {
        // ABBA: each path goes first in every other round.
        let mut order = paths.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for &path in &order {
            let (a, b) = ends(&bed, path);
            let gbps = throughput(a, b, warmup, time, pinning)?;
            figures[path as usize].gbps.push(gbps);
        }
        for &path in &order {
            let (a, b) = ends(&bed, path);
            let mut rtts = round_trips(a, b, 2_000, args.round_trips, pinning)?;
            let f = &mut figures[path as usize];
            f.rtt_median_us.push(us(percentile(&mut rtts, 50.0)));
            f.rtt_p99_us.push(us(percentile(&mut rtts, 99.0)));
        }
        let shown: Vec<String> = paths
            .iter()
            .map(|&path| {
                let f = &figures[path as usize];
                format!(
                    "{} {:.2} Gbit/s, rtt {:.1} µs (p99 {:.1})",
                    path.short(),
                    f.gbps[round],
                    f.rtt_median_us[round],
                    f.rtt_p99_us[round]
                )
            })
            .collect();
        println!("round {}: {}", round + 1, shown.join("; "));
    }
    println!(
        "\nmedians of {} interleaved rounds ({} s streams, {} round trips each):",
        args.rounds, args.seconds, args.round_trips
    );
    println!(
        "  {:<24} {:>10} {:>12} {:>10}",
        "", "Gbit/s", "rtt median", "rtt p99"
    );
    for &path in &paths {
        let f = &figures[path as usize];
        println!(
            "  {:<24} {:>10.2} {:>9.1} µs {:>7.1} µs",
            path.label(),
            median(&mut f.gbps.clone()),
            median(&mut f.rtt_median_us.clone()),
            median(&mut f.rtt_p99_us.clone()),
        );
    }
    if paths.len() == 2 {
        let [host, overlay] = &figures;
        // Paired per round: both paths of a round saw the same machine load.
        let mut ratios: Vec<f64> = (overlay.gbps.iter().zip(&host.gbps))
            .map(|(o, h)| o / h)
            .collect();
        let mut added: Vec<f64> = (overlay.rtt_median_us.iter().zip(&host.rtt_median_us))
            .map(|(o, h)| o - h)
            .collect();
        let (ratio, added) = (median(&mut ratios), median(&mut added));
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        println!(
            "  throughput ratio {ratio:.2} (median of per-round ratios; target ≥ {}: {})",
            args.min_ratio,
            verdict(ratio >= args.min_ratio)
        );
        println!(
            "  added round trip {added:.1} µs (median of per-round differences; target ≤ {} µs: {})",
            args.max_added_us,
            verdict(added <= args.max_added_us)
        );
    }
    if args.counters {
        counters(&bed)?;
    }
    Ok(())
}

/// h2's receive counters per device: bytes per packet shows how large the
/// (GSO/GRO) packets travelling the data plane are.
fn counters(bed: &OverlayBed) -> Result<()> {
    let out = bed.host_command(1, "ip", &["-s", "-o", "link", "show"])?;
    println!("\nh2 counters (rx packets, rx bytes/packet, tx packets, tx bytes/packet):");
    for line in out.lines() {
        let name = line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .trim_end_matches(':');
        let nums = |tag: &str| -> Option<(u64, u64)> {
            let rest = line.split(tag).nth(1)?;
            let mut it = rest
                .split_whitespace()
                .skip_while(|w| !w.chars().all(|c| c.is_ascii_digit()));
            let bytes = it.next()?.parse().ok()?;
            let packets = it.next()?.parse().ok()?;
            Some((bytes, packets))
        };
        if let (Some((rb, rp)), Some((tb, tp))) = (nums("RX:"), nums("TX:")) {
            let per = |b: u64, p: u64| b.checked_div(p).unwrap_or(0);
            println!(
                "  {name:<24} {rp:>10} {:>8} {tp:>10} {:>8}",
                per(rb, rp),
                per(tb, tp)
            );
        }
    }
    Ok(())
}

/// Prints the data plane under test: MTUs and the overlay devices' details.
fn describe(bed: &OverlayBed) -> Result<()> {
    let links = bed.host_command(0, "ip", &["-o", "link", "show"])?;
    println!("h1 links (underlay eth0, berth's bridge/vxlan/veth):");
    for line in links.lines() {
        let mut fields = line.split_whitespace();
        let name = fields.nth(1).unwrap_or("").trim_end_matches(':');
        let mtu = line.split(" mtu ").nth(1).and_then(|s| s.split(' ').next());
        if name != "lo" {
            println!("  {name:<24} mtu {}", mtu.unwrap_or("?"));
        }
    }
    let vxlan = bed.host_command(0, "ip", &["-d", "-o", "link", "show", &format!("bv-{VNI}")])?;
    if let Some(details) = vxlan.split(" vxlan ").nth(1) {
        println!(
            "  vxlan {}",
            details
                .split(" addrgenmode")
                .next()
                .unwrap_or(details)
                .trim()
        );
    }
    let eth0 = bed.containers[0].command("ip", &["-o", "link", "show", "eth0"])?;
    let mtu = eth0.split(" mtu ").nth(1).and_then(|s| s.split(' ').next());
    println!("  container eth0           mtu {}\n", mtu.unwrap_or("?"));
    Ok(())
}
