//! The embedded DNS server of an overlay network: service discovery by name.
//!
//! The agent runs one [`DnsServer`] per (network, local gateway address), on the
//! bridge gateway port 53 that each container's resolv.conf names. It answers the
//! network's [`DnsTable`] (`NAME` → service VIP, `tasks.NAME` → running tasks'
//! IPs, TTL [`TTL_SECS`]) and forwards every other name to the host's upstream
//! nameservers ([`upstreams_from_resolv_conf`]). Answer rules: see `handler.rs`.
//!
//! Protocol handling (UDP and TCP listeners, parsing, FORMERR for malformed
//! queries, truncation to the client's payload size) is hickory-server's; a
//! server is two tasks on the caller's tokio runtime plus one per request in
//! flight, no threads.

mod follow;
mod forward;
mod handler;
mod resolv_conf;
mod table;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

pub use follow::{Following, MAX_ASKED};
pub use forward::FORWARD_TIMEOUT;
pub use handler::TTL_SECS;
pub use resolv_conf::upstreams_from_resolv_conf;
pub use table::DnsTable;

use super::NetworkError;
use handler::Handler;

/// A TCP client that sends nothing for this long is disconnected.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection (hickory's per-connection channel).
const TCP_RESPONSE_BUFFER: usize = 32;
/// With port 0, how many ephemeral ports to try before giving up on finding one
/// free for both UDP and TCP.
const EPHEMERAL_ATTEMPTS: usize = 16;

/// One DNS listener (UDP and TCP on the same address), answering from the latest
/// table in `table` and forwarding every other name to `upstream`. Stops when
/// dropped (its tasks are aborted; [`DnsServer::shutdown`] waits for the sockets
/// to be closed, for a caller that binds the address again).
pub struct DnsServer {
    local_addr: SocketAddr,
    server: Server<Handler>,
}

impl DnsServer {
    /// Binds `listen` (UDP and TCP; port 0 picks one free for both) and starts
    /// serving on the current tokio runtime. An upstream equal to the listening
    /// address is dropped: forwarding to ourselves would loop. A name of a
    /// service the node does not follow is asked for through `following`.
    pub async fn start(
        listen: SocketAddr,
        table: watch::Receiver<Arc<DnsTable>>,
        upstream: Vec<SocketAddr>,
        following: Arc<Following>,
    ) -> Result<DnsServer, NetworkError> {
        let (udp, tcp) = bind(listen).await?;
        let local_addr = udp.local_addr().map_err(NetworkError::io(format!(
            "cannot read the DNS listening address of {listen}"
        )))?;
        let upstreams = upstream.into_iter().filter(|u| *u != local_addr).collect();
        let mut server = Server::new(Handler {
            table,
            upstreams,
            following,
        });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        Ok(DnsServer { local_addr, server })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving and waits until both sockets are closed.
    pub async fn shutdown(mut self) {
        if let Err(error) = self.server.shutdown_gracefully().await {
            tracing::debug!(%error, addr = %self.local_addr, "DNS server stopped with an error");
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        // Dropping the server aborts its tasks; cancelling first lets a task
        // that is running right now stop at its next select as well.
        self.server.shutdown_token().cancel();
    }
}

/// UDP and TCP sockets on the same address.
async fn bind(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), NetworkError> {
    let attempts = if listen.port() == 0 {
        EPHEMERAL_ATTEMPTS
    } else {
        1
    };
    let mut last = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(NetworkError::io(format!(
                "cannot listen for DNS on {listen} (udp)"
            )))?;
        let addr = udp.local_addr().map_err(NetworkError::io(format!(
            "cannot read the DNS listening address of {listen}"
        )))?;
        // The kernel picked the UDP port; the same TCP port may be taken.
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some((addr, e)),
        }
    }
    let (addr, source) = last.expect("at least one attempt");
    Err(NetworkError::Io {
        what: format!("cannot listen for DNS on {addr} (tcp)"),
        source,
    })
}
