//! Shared parts of the load-balancer tests: a backend that answers every TCP
//! connection and UDP datagram with its own address, and clients that ask.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::network::Container;

/// A backend in a container: TCP and UDP on `port` of every address of the
/// container, answering with the container's IP. Stops (threads joined, sockets
/// closed) when dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    pub fn start(c: &Container, port: u16) -> Result<Server> {
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        // Bound inside the namespace; a socket stays in the namespace it was made in.
        let (tcp, udp) = c.inside(move || -> std::io::Result<(TcpListener, UdpSocket)> {
            Ok((TcpListener::bind(any)?, UdpSocket::bind(any)?))
        })??;
        tcp.set_nonblocking(true)?;
        udp.set_read_timeout(Some(Duration::from_millis(20)))?;
        let answer = c.ip.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let (s1, s2, a1, a2) = (stop.clone(), stop.clone(), answer.clone(), answer);
        let tcp_thread = std::thread::spawn(move || {
            while !s1.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.write_all(a1.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        let udp_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s2.load(Ordering::Relaxed) {
                if let Ok((_, from)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(a2.as_bytes(), from);
                }
            }
        });
        Ok(Server {
            stop,
            threads: vec![tcp_thread, udp_thread],
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One TCP connection from the calling thread's namespace: what the server said.
pub fn tcp_ask(to: SocketAddr, timeout: Duration) -> Result<String> {
    let mut s =
        TcpStream::connect_timeout(&to, timeout).with_context(|| format!("connect {to}"))?;
    s.set_read_timeout(Some(timeout))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .with_context(|| format!("read from {to}"))?;
    Ok(answer)
}

/// One UDP exchange from the calling thread's namespace (a few tries: the first
/// datagram may wait for ARP).
pub fn udp_ask(to: SocketAddr, timeout: Duration) -> Result<String> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    s.set_read_timeout(Some(timeout))?;
    s.connect(to)?;
    let mut buf = [0u8; 512];
    for _ in 0..3 {
        s.send(b"who")?;
        if let Ok(n) = s.recv(&mut buf) {
            return Ok(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    }
    bail!("no udp answer from {to}")
}

/// `n` TCP connections from inside `from` to `to`: answers counted per backend.
pub fn spread(from: &Container, to: SocketAddr, n: usize) -> Result<BTreeMap<String, usize>> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let answer = from.inside(move || tcp_ask(to, Duration::from_secs(3)))??;
        *seen.entry(answer).or_insert(0) += 1;
    }
    Ok(seen)
}

/// How a TCP connection attempt from inside `from` ended, and how long it took.
pub fn tcp_outcome(
    from: &Container,
    to: SocketAddr,
    timeout: Duration,
) -> Result<(Result<String>, Duration)> {
    let start = Instant::now();
    let outcome = from.inside(move || tcp_ask(to, timeout))?;
    Ok((outcome, start.elapsed()))
}
