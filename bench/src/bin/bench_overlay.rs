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

use anyhow::{Context, Result, bail};
use berth_bench::overlay::routed::{Carrier, big_tcp, macvlan_pair, routed_pair};
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
    /// Container-to-container paths to measure (repeatable; default: bridge):
    /// berth's bridge attachment, or bridge-less routed ones the benchmark
    /// builds itself. All are measured in the same rounds as host-to-host.
    #[arg(long, value_enum)]
    path: Vec<OverlayPath>,
    /// Print h2's per-device packet counters (bytes per packet) at the end.
    #[arg(long)]
    counters: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Only {
    Host,
    Overlay,
}

/// A container-to-container path.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum OverlayPath {
    /// berth's attachment (node-agent's attach): veth as a port of bb-<vni>.
    Bridge,
    /// Bridge-less veth, /32 host route, over berth's bv-<vni>.
    Routed,
    /// As `routed`, over a VXLAN device made without UDP checksums.
    RoutedNocsum,
    /// As `routed`, over a VXLAN device made with UDP checksums (the kernel's
    /// default, as bv-<vni>): the control for `routed-nocsum`.
    RoutedCsum,
    /// As `routed`, with BIG TCP (185,000-byte GSO/GRO) on both veth ends.
    RoutedBigtcp,
    /// A bound, not a design: no veth and no IP forward, the containers as
    /// macvlans of a VXLAN device made like bv-<vni> (L2 over it).
    Macvlan,
}

impl OverlayPath {
    fn label(self) -> &'static str {
        match self {
            OverlayPath::Bridge => "bridge (berth)",
            OverlayPath::Routed => "routed",
            OverlayPath::RoutedNocsum => "routed, vxlan noudpcsum",
            OverlayPath::RoutedCsum => "routed, own vxlan udpcsum",
            OverlayPath::RoutedBigtcp => "routed, BIG TCP 185000",
            OverlayPath::Macvlan => "bound: macvlan on vxlan",
        }
    }

    fn short(self) -> &'static str {
        match self {
            OverlayPath::Bridge => "bridge",
            OverlayPath::Routed => "routed",
            OverlayPath::RoutedNocsum => "r-nocsum",
            OverlayPath::RoutedCsum => "r-csum",
            OverlayPath::RoutedBigtcp => "r-big",
            OverlayPath::Macvlan => "macvlan",
        }
    }

    /// Builds the path's two containers (the bridge path's are the bed's).
    fn build(self, bed: &OverlayBed) -> Result<Option<[Endpoint; 2]>> {
        let own = |vni: u32, octet: u8, udp_csum: bool| Carrier::Own {
            vni,
            octet,
            udp_csum,
        };
        Ok(Some(match self {
            OverlayPath::Bridge => return Ok(None),
            OverlayPath::Routed => routed_pair(bed, Carrier::Berth, "t", 20)?,
            OverlayPath::RoutedNocsum => routed_pair(bed, own(4243, 43, false), "n", 20)?,
            OverlayPath::RoutedCsum => routed_pair(bed, own(4244, 44, true), "c", 20)?,
            OverlayPath::RoutedBigtcp => {
                let pair = routed_pair(bed, Carrier::Berth, "b", 21)?;
                big_tcp(bed, &pair, "b", 185_000)?;
                pair
            }
            OverlayPath::Macvlan => macvlan_pair(bed, 4246, 46, 20)?,
        }))
    }
}

/// One measured path: host-to-host or one of the container-to-container ones.
struct Measured<'a> {
    label: &'static str,
    short: &'static str,
    from: &'a Endpoint,
    to: &'a Endpoint,
    figures: Figures,
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
    let mut overlay_paths = args.path.clone();
    if overlay_paths.is_empty() {
        overlay_paths.push(OverlayPath::Bridge);
    }
    overlay_paths.dedup();
    let mut built = Vec::new();
    for &path in &overlay_paths {
        built.push(
            path.build(&bed)
                .with_context(|| format!("building the {} path", path.label()))?,
        );
    }
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
    let mut paths = Vec::new();
    if !matches!(args.only, Some(Only::Overlay)) {
        paths.push(Measured {
            label: "host-to-host",
            short: "host",
            from: &bed.hosts[0],
            to: &bed.hosts[1],
            figures: Figures::default(),
        });
    }
    if !matches!(args.only, Some(Only::Host)) {
        for (&path, pair) in overlay_paths.iter().zip(&built) {
            let [from, to] = pair.as_ref().unwrap_or(&bed.containers);
            paths.push(Measured {
                label: path.label(),
                short: path.short(),
                from,
                to,
                figures: Figures::default(),
            });
        }
    }
    let n = paths.len();
    for round in 0..args.rounds {
        // Each path goes first in turn (a rotation per round), and the order
        // is reversed every other round, so no path always follows another.
        let mut order: Vec<usize> = (0..n).map(|k| (k + round / 2) % n).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for &k in &order {
            let p = &mut paths[k];
            let gbps = throughput(p.from, p.to, warmup, time, pinning)?;
            p.figures.gbps.push(gbps);
        }
        for &k in &order {
            let p = &mut paths[k];
            let mut rtts = round_trips(p.from, p.to, 2_000, args.round_trips, pinning)?;
            p.figures
                .rtt_median_us
                .push(us(percentile(&mut rtts, 50.0)));
            p.figures.rtt_p99_us.push(us(percentile(&mut rtts, 99.0)));
        }
        let shown: Vec<String> = paths
            .iter()
            .map(|p| {
                let f = &p.figures;
                format!(
                    "{} {:.2} Gbit/s, rtt {:.1} µs (p99 {:.1})",
                    p.short, f.gbps[round], f.rtt_median_us[round], f.rtt_p99_us[round]
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
        "  {:<26} {:>10} {:>12} {:>10}",
        "", "Gbit/s", "rtt median", "rtt p99"
    );
    for p in &paths {
        let f = &p.figures;
        println!(
            "  {:<26} {:>10.2} {:>9.1} µs {:>7.1} µs",
            p.label,
            median(&mut f.gbps.clone()),
            median(&mut f.rtt_median_us.clone()),
            median(&mut f.rtt_p99_us.clone()),
        );
    }
    if let Some((host, overlays)) = paths.split_first()
        && host.short == "host"
    {
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        for o in overlays {
            // Paired per round: both paths of a round saw the same machine load.
            let mut ratios: Vec<f64> = (o.figures.gbps.iter().zip(&host.figures.gbps))
                .map(|(o, h)| o / h)
                .collect();
            let mut added: Vec<f64> = (o.figures.rtt_median_us.iter())
                .zip(&host.figures.rtt_median_us)
                .map(|(o, h)| o - h)
                .collect();
            let (ratio, added) = (median(&mut ratios), median(&mut added));
            println!(
                "  {}: throughput ratio {ratio:.2} (target ≥ {}: {}), added round trip {added:.1} µs \
                 (target ≤ {} µs: {})",
                o.label,
                args.min_ratio,
                verdict(ratio >= args.min_ratio),
                args.max_added_us,
                verdict(added <= args.max_added_us)
            );
        }
        // Paired against berth's bridge path, when measured: what another
        // attachment gains over it, with less of the machine's noise.
        if let Some(bridge) = overlays.iter().find(|o| o.short == "bridge") {
            for o in overlays.iter().filter(|o| o.short != "bridge") {
                let mut ratios: Vec<f64> = (o.figures.gbps.iter().zip(&bridge.figures.gbps))
                    .map(|(o, b)| o / b)
                    .collect();
                println!(
                    "  {}: throughput vs bridge {:.2}",
                    o.label,
                    median(&mut ratios)
                );
            }
        }
        println!("  (ratios: medians of per-round ratios; added: of per-round differences)");
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
