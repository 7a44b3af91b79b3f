//! berth-loadgen: keeps sending HTTP GET requests to one target, a new
//! connection per request, from a few threads, until a duration has passed or
//! a stop file appears; then prints a JSON summary on stdout: how many
//! requests answered 2xx, how many failed and why, and every distinct answer
//! body with its count and the first and last time (Unix ms) it was seen.
//!
//! The end-to-end suites run it on a test host (against a published port) and
//! inside a container (against a service's VIP): it needs only std, so the
//! web image carries it with the few shared libraries it links
//! (`berth_testhost::images::web_layout`).
//!
//! ```text
//! berth-loadgen --url http://10.96.240.2:80/ [--threads 2] [--pause-ms 5]
//!               [--timeout-ms 2000] [--duration 30s | --stop-file PATH]
//! ```

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the command line asks for.
struct Options {
    target: SocketAddr,
    host: String,
    path: String,
    threads: usize,
    pause: Duration,
    timeout: Duration,
    duration: Option<Duration>,
    stop_file: Option<PathBuf>,
}

/// One distinct answer body.
#[derive(Clone, Debug)]
struct Seen {
    count: u64,
    first_ms: u128,
    last_ms: u128,
}

#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    failed: u64,
    /// Failure reason → count.
    reasons: BTreeMap<String, u64>,
    /// Failure reason → first and last time (Unix ms).
    failure_times: BTreeMap<String, (u128, u128)>,
    bodies: BTreeMap<String, Seen>,
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn usage(why: &str) -> ! {
    eprintln!(
        "berth-loadgen: {why}\nusage: berth-loadgen --url http://HOST:PORT/PATH [--threads N] \
         [--pause-ms MS] [--timeout-ms MS] [--duration 30s|500ms|10] [--stop-file PATH]"
    );
    std::process::exit(2)
}

/// "500ms", "30s", "2m" or a bare number of seconds.
fn duration(text: &str) -> Option<Duration> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        _ => None,
    }
}

/// "http://HOST:PORT/PATH" → (address, Host header, path).
fn parse_url(url: &str) -> Option<(SocketAddr, String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let with_port = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let address = with_port.to_socket_addrs().ok()?.next()?;
    Some((address, authority.to_string(), path.to_string()))
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let mut url = None;
    let mut o = Options {
        target: SocketAddr::from(([127, 0, 0, 1], 80)),
        host: String::new(),
        path: "/".into(),
        threads: 2,
        pause: Duration::from_millis(5),
        timeout: Duration::from_secs(2),
        duration: None,
        stop_file: None,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let number = |v: &str| -> u64 {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{flag}: {v:?} is not a number")))
        };
        match flag.as_str() {
            "--url" => url = Some(value),
            "--threads" => o.threads = number(&value).max(1) as usize,
            "--pause-ms" => o.pause = Duration::from_millis(number(&value)),
            "--timeout-ms" => o.timeout = Duration::from_millis(number(&value)),
            "--duration" => {
                o.duration = Some(
                    duration(&value).unwrap_or_else(|| usage(&format!("bad duration {value:?}"))),
                )
            }
            "--stop-file" => o.stop_file = Some(PathBuf::from(value)),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    let url = url.unwrap_or_else(|| usage("--url is required"));
    let (target, host, path) =
        parse_url(&url).unwrap_or_else(|| usage(&format!("cannot use URL {url:?}")));
    if o.duration.is_none() && o.stop_file.is_none() {
        usage("give --duration or --stop-file");
    }
    Options {
        target,
        host,
        path,
        ..o
    }
}

/// One request on a new connection: the body of a 2xx answer, or why not.
fn request(o: &Options) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&o.target, o.timeout)
        .map_err(|e| format!("connect: {}", e.kind()))?;
    stream
        .set_read_timeout(Some(o.timeout))
        .and_then(|()| stream.set_write_timeout(Some(o.timeout)))
        .map_err(|e| format!("socket: {}", e.kind()))?;
    let ask = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: berth-loadgen\r\n\r\n",
        o.path, o.host
    );
    stream
        .write_all(ask.as_bytes())
        .map_err(|e| format!("send: {}", e.kind()))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("read: {}", e.kind()))?;
    if answer.is_empty() {
        return Err("closed without an answer".into());
    }
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "an answer without a header end".to_string())?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| "an answer without a status".to_string())?;
    if !(200..300).contains(&status) {
        return Err(format!("status {status}"));
    }
    Ok(body.trim().to_string())
}

fn record(tally: &Mutex<Tally>, outcome: Result<String, String>) {
    let at = now_ms();
    let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
    match outcome {
        Ok(body) => {
            t.ok += 1;
            let seen = t.bodies.entry(body).or_insert(Seen {
                count: 0,
                first_ms: at,
                last_ms: at,
            });
            seen.count += 1;
            seen.last_ms = at;
        }
        Err(reason) => {
            t.failed += 1;
            *t.reasons.entry(reason.clone()).or_default() += 1;
            let times = t.failure_times.entry(reason).or_insert((at, at));
            times.1 = at;
        }
    }
}

fn done(o: &Options, started: Instant) -> bool {
    o.duration.is_some_and(|d| started.elapsed() >= d)
        || o.stop_file.as_ref().is_some_and(|f| f.exists())
}

/// The summary as JSON (hand-written: bodies and reasons are escaped).
fn summary(t: &Tally, started_ms: u128, ended_ms: u128) -> String {
    fn text(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
    let reasons: Vec<String> = t
        .reasons
        .iter()
        .map(|(reason, count)| {
            let (first, last) = t.failure_times.get(reason).copied().unwrap_or_default();
            format!(
                "{{\"reason\":{},\"count\":{count},\"first_ms\":{first},\"last_ms\":{last}}}",
                text(reason)
            )
        })
        .collect();
    let bodies: Vec<String> = t
        .bodies
        .iter()
        .map(|(body, s)| {
            format!(
                "{{\"body\":{},\"count\":{},\"first_ms\":{},\"last_ms\":{}}}",
                text(body),
                s.count,
                s.first_ms,
                s.last_ms
            )
        })
        .collect();
    format!(
        "{{\"ok\":{},\"failed\":{},\"started_ms\":{started_ms},\"ended_ms\":{ended_ms},\
         \"failures\":[{}],\"bodies\":[{}]}}",
        t.ok,
        t.failed,
        reasons.join(","),
        bodies.join(",")
    )
}

fn main() {
    let o = Arc::new(options());
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let started_ms = now_ms();
    let workers: Vec<_> = (0..o.threads)
        .map(|_| {
            let (o, tally, stop) = (o.clone(), tally.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    record(&tally, request(&o));
                    std::thread::sleep(o.pause);
                }
            })
        })
        .collect();
    while !done(&o, started) {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    let t = tally.lock().unwrap_or_else(|e| e.into_inner());
    println!("{}", summary(&t, started_ms, now_ms()));
}
