//! The simulated agents' HTTP/2 connections.
//!
//! With mutual TLS (the default) every agent has its own certificate, so its
//! own connection to each controller it talks to, as real agents do. In plain
//! text the dispatcher tells sessions apart by node id and session id, never by
//! connection, so a thousand agents share a few: agent i uses connection
//! i mod K to whichever controller it talks to, and each of its calls (the
//! session stream included) is its own HTTP/2 stream.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use berth_pki::tls::connect_lazy;
use berth_pki::{Role, Security};
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("controller address {address}: {why}")]
    BadAddress { address: String, why: String },
}

pub struct Channels {
    per_address: usize,
    open: Mutex<HashMap<String, Vec<Channel>>>,
    /// Each agent's credentials (mutual TLS); empty: plain text, shared.
    identities: Vec<Security>,
    own: Mutex<HashMap<(String, usize), Channel>>,
}

impl Channels {
    pub fn new(per_address: usize, identities: Vec<Security>) -> Self {
        Channels {
            per_address: per_address.max(1),
            open: Mutex::new(HashMap::new()),
            identities,
            own: Mutex::new(HashMap::new()),
        }
    }

    /// The connection agent `index` uses to `address` (connected on first use,
    /// reconnected by tonic when it breaks).
    pub fn get(&self, address: &str, index: usize) -> Result<Channel, ChannelError> {
        if let Some(security) = self.identities.get(index) {
            let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
            let key = (address.to_string(), index);
            if let Some(channel) = own.get(&key) {
                return Ok(channel.clone());
            }
            let channel = connect_lazy(endpoint(address)?, security, Role::Controller);
            own.insert(key, channel.clone());
            return Ok(channel);
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if !open.contains_key(address) {
            let endpoint = endpoint(address)?;
            let channels = (0..self.per_address)
                .map(|_| endpoint.connect_lazy())
                .collect();
            open.insert(address.to_string(), channels);
        }
        let channels = &open[address];
        Ok(channels[index % channels.len()].clone())
    }
}

/// As the real agent's connection.
fn endpoint(address: &str) -> Result<Endpoint, ChannelError> {
    Ok(Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| ChannelError::BadAddress {
            address: address.to_string(),
            why: e.to_string(),
        })?
        // As the real agent's connection.
        .connect_timeout(Duration::from_secs(2))
        // Each agent's stream has the real agent's window (64 KiB: what
        // the leader may hold in flight per session), and the shared
        // connection's window never binds first: with hyper's 5 MiB for
        // the whole connection, a few agents' unread session messages
        // would stall every other agent's heartbeats on it, which
        // separate connections never do.
        .initial_stream_window_size(Some(berth_agent::session::LEADER_STREAM_WINDOW))
        .initial_connection_window_size(Some(i32::MAX as u32))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(berth_agent::session::LEADER_KEEPALIVE)
        .keep_alive_timeout(Duration::from_secs(4)))
}
