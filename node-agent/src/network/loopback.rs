//! Published TCP ports on loopback: `curl localhost:8080` on a node answers as
//! it does on the node's other addresses.
//!
//! The load balancer DNATs connections to any local address on a published
//! port, but a connection to 127.0.0.1 cannot be DNATed to a container without
//! the machine-wide `route_localnet` switch (the kernel drops packets with a
//! loopback source on other devices). So, as docker-proxy does, a small
//! userspace proxy listens on 127.0.0.1 for each published TCP port and relays
//! each connection to the same port on one of the host's own non-loopback
//! addresses, where the nftables rules (output hook) take it like any other
//! connection: the same backends, the same drain, the same routing mesh.
//!
//! A port something else already holds on 127.0.0.1 is left to it (logged
//! once); the bind is retried at every later pass. Connections in flight keep
//! going when their port is unpublished: only the listener goes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// How long a relayed connection may take to reach the published port.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct LoopbackProxy {
    /// Where the listeners bind (127.0.0.1; other loopback addresses in tests).
    bind: Ipv4Addr,
    /// The host address connections are relayed to (None: none known yet, so
    /// connections are closed at once).
    target: Arc<Mutex<Option<Ipv4Addr>>>,
    /// Published port -> its accept loop (aborted when the port goes).
    listeners: Mutex<BTreeMap<u16, JoinHandle<()>>>,
    /// Ports whose bind failed, so the failure is logged once, not every pass.
    refused: Mutex<BTreeSet<u16>>,
}

impl LoopbackProxy {
    pub fn new(bind: Ipv4Addr) -> LoopbackProxy {
        LoopbackProxy {
            bind,
            target: Arc::new(Mutex::new(None)),
            listeners: Mutex::new(BTreeMap::new()),
            refused: Mutex::new(BTreeSet::new()),
        }
    }

    /// Listens on exactly `ports` from now on, relaying to `target`'s port.
    /// Call inside a tokio runtime.
    pub fn sync(&self, ports: &BTreeSet<u16>, target: Option<Ipv4Addr>) {
        *lock(&self.target) = target;
        let mut listeners = lock(&self.listeners);
        let mut refused = lock(&self.refused);
        listeners.retain(|port, accept| {
            let keep = ports.contains(port) && !accept.is_finished();
            if !keep {
                accept.abort();
                debug!(port, "loopback proxy closed");
            }
            keep
        });
        refused.retain(|port| ports.contains(port));
        for &port in ports {
            if listeners.contains_key(&port) {
                continue;
            }
            match self.listen(port) {
                Ok(accept) => {
                    refused.remove(&port);
                    info!(port, bind = %self.bind, "published port answers on loopback");
                    listeners.insert(port, accept);
                }
                Err(error) => {
                    if refused.insert(port) {
                        warn!(port, bind = %self.bind, %error,
                            "published port not proxied on loopback (something else listens there?)");
                    }
                }
            }
        }
    }

    /// The ports that have a listener now.
    #[cfg(test)]
    fn ports(&self) -> BTreeSet<u16> {
        lock(&self.listeners).keys().copied().collect()
    }

    fn listen(&self, port: u16) -> std::io::Result<JoinHandle<()>> {
        let std_listener = std::net::TcpListener::bind(SocketAddr::from((self.bind, port)))?;
        std_listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(std_listener)?;
        let target = self.target.clone();
        Ok(tokio::spawn(async move {
            loop {
                let (client, _) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of fds and the like: back off instead of spinning.
                        warn!(port, %error, "loopback proxy accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let to = *lock(&target);
                tokio::spawn(relay(client, to.map(|ip| SocketAddr::from((ip, port)))));
            }
        }))
    }
}

impl Drop for LoopbackProxy {
    fn drop(&mut self) {
        for accept in lock(&self.listeners).values() {
            accept.abort();
        }
    }
}

/// Copies both ways between the client and the published port until both
/// sides are done.
async fn relay(mut client: TcpStream, to: Option<SocketAddr>) {
    let Some(to) = to else {
        debug!("no host address to relay a loopback connection to");
        return;
    };
    let mut upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            debug!(%to, %error, "loopback proxy could not reach the published port");
            return;
        }
        Err(_) => {
            debug!(%to, "loopback proxy timed out reaching the published port");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        debug!(%to, %error, "loopback proxy connection ended");
    }
}

/// The host address loopback connections are relayed to: its lowest
/// non-loopback IPv4 address (any local address takes the published-port rules).
pub fn relay_address(addresses: impl IntoIterator<Item = Ipv4Addr>) -> Option<Ipv4Addr> {
    addresses
        .into_iter()
        .filter(|a| !a.is_loopback() && !a.is_unspecified())
        .min()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An echo server on `ip`, on a free port; returns the port.
    async fn echo_server(ip: Ipv4Addr) -> u16 {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind echo");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        port
    }

    async fn round_trip(bind: Ipv4Addr, port: u16, text: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect((bind, port)).await?;
        stream.write_all(text).await?;
        stream.shutdown().await?;
        let mut back = Vec::new();
        stream.read_to_end(&mut back).await?;
        Ok(back)
    }

    #[tokio::test]
    async fn relays_published_ports_and_closes_unpublished_ones() {
        // Loopback aliases stand in for "127.0.0.1" and "the host's address".
        let (bind, host) = (Ipv4Addr::new(127, 0, 0, 61), Ipv4Addr::new(127, 0, 0, 62));
        let port = echo_server(host).await;
        let proxy = LoopbackProxy::new(bind);
        proxy.sync(&BTreeSet::from([port]), Some(host));
        assert_eq!(proxy.ports(), BTreeSet::from([port]));
        let back = round_trip(bind, port, b"hello").await.expect("relayed");
        assert_eq!(back, b"hello");

        // A connection in flight survives the unpublish; new ones are refused.
        // (One echo first: the proxy has taken the connection, not just the
        // kernel's backlog, which goes with the listener.)
        let mut open = TcpStream::connect((bind, port)).await.expect("open");
        open.write_all(b"first").await.expect("write");
        let mut first = [0u8; 5];
        open.read_exact(&mut first).await.expect("echo");
        proxy.sync(&BTreeSet::new(), Some(host));
        assert!(proxy.ports().is_empty());
        open.write_all(b"still").await.expect("write");
        open.shutdown().await.expect("shutdown");
        let mut back = Vec::new();
        open.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"still");
        let refused = round_trip(bind, port, b"x").await;
        assert!(refused.is_err(), "{refused:?}");
    }

    #[tokio::test]
    async fn a_port_held_by_someone_else_is_left_alone_and_retried() {
        let (bind, host) = (Ipv4Addr::new(127, 0, 0, 63), Ipv4Addr::new(127, 0, 0, 64));
        let port = echo_server(host).await;
        let squatter = std::net::TcpListener::bind((bind, port)).expect("squat");
        let proxy = LoopbackProxy::new(bind);
        proxy.sync(&BTreeSet::from([port]), Some(host));
        assert!(proxy.ports().is_empty());
        drop(squatter);
        proxy.sync(&BTreeSet::from([port]), Some(host));
        assert_eq!(proxy.ports(), BTreeSet::from([port]));
        assert_eq!(round_trip(bind, port, b"ok").await.expect("relayed"), b"ok");
    }

    #[test]
    fn the_relay_address_is_the_lowest_non_loopback_one() {
        let addrs = [
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(10, 0, 9, 1),
            Ipv4Addr::new(192, 168, 1, 5),
        ];
        assert_eq!(relay_address(addrs), Some(Ipv4Addr::new(10, 0, 9, 1)));
        assert_eq!(relay_address([Ipv4Addr::LOCALHOST]), None);
    }
}
