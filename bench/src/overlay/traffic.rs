//! The two measurements: one TCP stream's throughput, and 1-byte TCP
//! request/response round trips. Sockets are opened inside the endpoints'
//! namespaces and then driven by plain threads of this process.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

use super::setup::Endpoint;

/// Set by SIGINT/SIGTERM: measurements stop early and return an error, so the
/// test network is dropped (and removed) on the normal path.
pub static STOP: AtomicBool = AtomicBool::new(false);

fn check_stop() -> Result<()> {
    if STOP.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// CPUs the two ends' threads are pinned to (`None`: left to the scheduler).
/// Pinned, each end keeps its own CPU in every round, as two machines would,
/// instead of a placement that changes from run to run.
#[derive(Clone, Copy, Debug)]
pub struct Pinning {
    pub from: Option<usize>,
    pub to: Option<usize>,
}

impl Pinning {
    /// The sending end on the first CPU, the receiving end on the second, when
    /// there are two.
    pub fn spread() -> Pinning {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus >= 2 {
            Pinning {
                from: Some(0),
                to: Some(1),
            }
        } else {
            Pinning::NONE
        }
    }

    pub const NONE: Pinning = Pinning {
        from: None,
        to: None,
    };
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: Option<usize>) -> Result<()> {
    if let Some(cpu) = cpu {
        let mut set = CpuSet::new();
        set.set(cpu)?;
        sched_setaffinity(Pid::from_raw(0), &set).with_context(|| format!("pin to CPU {cpu}"))?;
    }
    Ok(())
}

/// A connected pair: (`from`'s end, `to`'s accepted end).
fn connect(from: &Endpoint, to: &Endpoint) -> Result<(TcpStream, TcpStream)> {
    let bind = SocketAddr::new(to.ip.into(), 0);
    let listener = to
        .inside(move || TcpListener::bind(bind))?
        .with_context(|| format!("listen in {}", to.name))?;
    let addr = listener.local_addr()?;
    let client = from
        .inside(move || TcpStream::connect_timeout(&addr, Duration::from_secs(5)))?
        .with_context(|| format!("connect {} -> {addr}", from.name))?;
    let (server, _) = listener.accept()?;
    Ok((client, server))
}

/// Bytes per write and per read: large, as iperf3's default (128 KiB).
const CHUNK: usize = 128 * 1024;

/// One TCP stream from `from` to `to` for `warmup + time`; returns the rate in
/// Gbit/s seen by the receiver after the warm-up.
pub fn throughput(
    from: &Endpoint,
    to: &Endpoint,
    warmup: Duration,
    time: Duration,
    pinning: Pinning,
) -> Result<f64> {
    let (mut tx, mut rx) = connect(from, to)?;
    let receiver = std::thread::spawn(move || -> Result<(u64, Duration)> {
        pin(pinning.to)?;
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        let mut mark: Option<(Instant, u64)> = None;
        let start = Instant::now();
        loop {
            let n = rx.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if mark.is_none() && start.elapsed() >= warmup {
                mark = Some((Instant::now(), total));
            }
        }
        let (at, base) = mark.context("the stream ended before its warm-up did")?;
        Ok((total - base, at.elapsed()))
    });
    let buf = vec![0x5au8; CHUNK];
    let end = Instant::now() + warmup + time;
    let sent = (|| -> Result<()> {
        pin(pinning.from)?;
        while Instant::now() < end {
            check_stop()?;
            tx.write_all(&buf)?;
        }
        Ok(())
    })();
    let _ = tx.shutdown(Shutdown::Write);
    let received = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))?;
    sent?;
    let (bytes, elapsed) = received?;
    Ok(bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e9)
}

/// `warmup` then `count` round trips of one byte each way with Nagle off;
/// returns each measured round trip.
pub fn round_trips(
    from: &Endpoint,
    to: &Endpoint,
    warmup: usize,
    count: usize,
    pinning: Pinning,
) -> Result<Vec<Duration>> {
    let (mut client, mut server) = connect(from, to)?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let echo = std::thread::spawn(move || -> Result<()> {
        pin(pinning.to)?;
        let mut b = [0u8; 1];
        loop {
            if server.read(&mut b)? == 0 {
                return Ok(());
            }
            server.write_all(&b)?;
        }
    });
    let mut samples = Vec::with_capacity(count);
    let result = (|| -> Result<()> {
        pin(pinning.from)?;
        let mut b = [7u8; 1];
        for i in 0..warmup + count {
            if i % 1000 == 0 {
                check_stop()?;
            }
            let start = Instant::now();
            client.write_all(&b)?;
            client.read_exact(&mut b)?;
            if i >= warmup {
                samples.push(start.elapsed());
            }
        }
        Ok(())
    })();
    let _ = client.shutdown(Shutdown::Both);
    let echoed = echo.join().map_err(|_| anyhow::anyhow!("echo panicked"))?;
    result?;
    echoed?;
    Ok(samples)
}
