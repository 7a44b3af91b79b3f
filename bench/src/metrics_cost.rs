//! bench-metrics: what scraping `/metrics` every second costs a daemon — its
//! CPU time and resident memory over a window with scrapes against windows
//! without (one before, one after, averaged, so drift shows).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::scale::usage::{cpu_time, rss_kib};

/// One window of a process's life.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub cpu: Duration,
    pub elapsed: Duration,
    /// Resident memory at the window's end.
    pub rss_kib: u64,
    pub scrapes: usize,
    /// Mean bytes of one scrape's answer, and its mean time.
    pub body_bytes: usize,
    pub scrape_time: Duration,
}

impl Window {
    /// CPU over the window as a percentage of one core.
    pub fn cpu_percent(&self) -> f64 {
        self.cpu.as_secs_f64() / self.elapsed.as_secs_f64() * 100.0
    }
}

/// `GET /metrics` over HTTP/1.0 to `addr`; the answer's body size.
pub fn scrape_tcp(addr: SocketAddr) -> Result<usize> {
    body_size(&get_metrics(addr)?)
}

/// The whole answer of `GET /metrics` over HTTP/1.0 to `addr`.
fn get_metrics(addr: SocketAddr) -> Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(answer)
}

/// The body of `GET /metrics` at `addr` (an error unless it answered 200).
pub fn scrape_text(addr: SocketAddr) -> Result<String> {
    let answer = get_metrics(addr)?;
    let size = body_size(&answer)?;
    Ok(String::from_utf8_lossy(&answer[answer.len() - size..]).into_owned())
}

/// The address a daemon started with `--metrics-listen 127.0.0.1:0` logged
/// (`metrics_listen=ADDR`), waiting up to 30 s for it to appear in `log`.
pub async fn logged_metrics_address(log: &std::path::Path) -> Result<SocketAddr> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text
            .split_whitespace()
            .find_map(|word| word.strip_prefix("metrics_listen="));
        if let Some(addr) = found {
            return addr.parse().context("the logged metrics address");
        }
        if Instant::now() > deadline {
            bail!("{} never said where /metrics is served", log.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The values of counter `name` by the value of its one label, from a scrape.
pub fn counter_by_label(text: &str, name: &str) -> Vec<(String, f64)> {
    let prefix = format!("{name}{{");
    text.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (labels, value) = rest.split_once("} ")?;
            let label = labels.split_once('=')?.1.trim_matches('"').to_string();
            Some((label, value.trim().parse().ok()?))
        })
        .collect()
}

/// The size of a 200 answer's body (an error for any other status).
pub fn body_size(answer: &[u8]) -> Result<usize> {
    let head_end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of the HTTP header")?;
    let status = String::from_utf8_lossy(&answer[..answer.len().min(12)]);
    if !status.ends_with(" 200") {
        bail!("the metrics endpoint answered {status}");
    }
    Ok(answer.len() - head_end - 4)
}

/// Watches `pid` for `window`, calling `scrape` once a second when given.
pub fn measure(
    pid: u32,
    window: Duration,
    mut scrape: Option<&mut dyn FnMut() -> Result<usize>>,
) -> Result<Window> {
    let cpu_before = cpu_time(pid)?;
    let started = Instant::now();
    let (mut scrapes, mut bytes, mut scrape_time) = (0, 0, Duration::ZERO);
    let mut next = started;
    while started.elapsed() < window {
        if let Some(scrape) = scrape.as_mut() {
            let at = Instant::now();
            bytes += scrape()?;
            scrape_time += at.elapsed();
            scrapes += 1;
        }
        next += Duration::from_secs(1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok(Window {
        cpu: cpu_time(pid)?.saturating_sub(cpu_before),
        elapsed: started.elapsed(),
        rss_kib: rss_kib(pid)?,
        scrapes,
        body_bytes: bytes.checked_div(scrapes).unwrap_or(0),
        scrape_time: scrape_time.checked_div(scrapes as u32).unwrap_or_default(),
    })
}

/// Quiet, scraped, quiet again: the cost is the scraped window's CPU above
/// the quiet windows' mean. Prints the figures and returns the added CPU in
/// percent of one core.
pub fn compare(
    what: &str,
    pid: u32,
    window: Duration,
    scrape: &mut dyn FnMut() -> Result<usize>,
) -> Result<f64> {
    let before = measure(pid, window, None)?;
    let scraped = measure(pid, window, Some(scrape))?;
    let after = measure(pid, window, None)?;
    let quiet = (before.cpu_percent() + after.cpu_percent()) / 2.0;
    let added = scraped.cpu_percent() - quiet;
    println!("{what}:");
    println!(
        "  no scraping:       cpu {:.2} % / {:.2} % of a core (before / after), rss {} / {} KiB",
        before.cpu_percent(),
        after.cpu_percent(),
        before.rss_kib,
        after.rss_kib
    );
    println!(
        "  scraped every 1 s: cpu {:.2} % of a core, rss {} KiB; {} scrapes of {} bytes, {:.1} ms each",
        scraped.cpu_percent(),
        scraped.rss_kib,
        scraped.scrapes,
        scraped.body_bytes,
        scraped.scrape_time.as_secs_f64() * 1000.0
    );
    let ratio = if quiet > 0.0 {
        format!("{:.2}x", scraped.cpu_percent() / quiet)
    } else {
        "n/a".into()
    };
    println!(
        "  cost of scraping:  +{added:.2} % of a core (scraped/quiet cpu ratio {ratio}), rss {:+} KiB; target < 2 %: {}",
        scraped.rss_kib as i64 - before.rss_kib as i64,
        if added < 2.0 { "met" } else { "missed" }
    );
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_measured_after_the_header_and_only_for_200() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nabcde";
        assert_eq!(body_size(ok).unwrap(), 5);
        let missing = b"HTTP/1.1 404 Not Found\r\n\r\nno";
        assert!(body_size(missing).unwrap_err().to_string().contains("404"));
        assert!(body_size(b"garbage").is_err());
    }

    #[test]
    fn a_window_of_this_process_is_measured() {
        let mut calls = 0;
        let mut scrape = || -> Result<usize> {
            calls += 1;
            Ok(10)
        };
        let w = measure(
            std::process::id(),
            Duration::from_millis(1500),
            Some(&mut scrape),
        )
        .unwrap();
        assert_eq!(w.scrapes, 2);
        assert_eq!(w.body_bytes, 10);
        assert!(w.rss_kib > 0);
    }
}
