//! A few shared HTTP/2 connections per controller for all simulated agents.
//!
//! The dispatcher tells sessions apart by node id and session id, never by
//! connection, so a thousand agents need not open a thousand TCP connections:
//! agent i uses connection i mod K to whichever controller it talks to, and
//! each of its calls (the session stream included) is its own HTTP/2 stream.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("controller address {address}: {why}")]
    BadAddress { address: String, why: String },
}

pub struct Channels {
    per_address: usize,
    open: Mutex<HashMap<String, Vec<Channel>>>,
}

impl Channels {
    pub fn new(per_address: usize) -> Self {
        Channels {
            per_address: per_address.max(1),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The connection agent `index` uses to `address` (connected on first use,
    /// reconnected by tonic when it breaks).
    pub fn get(&self, address: &str, index: usize) -> Result<Channel, ChannelError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if !open.contains_key(address) {
            let endpoint = Endpoint::from_shared(format!("http://{address}"))
                .map_err(|e| ChannelError::BadAddress {
                    address: address.to_string(),
                    why: e.to_string(),
                })?
                // As the real agent's connection.
                .connect_timeout(Duration::from_secs(2))
                // Each agent's stream keeps the window of its own connection
                // (hyper's 2 MiB), and the shared connection's window never
                // binds first: with hyper's 5 MiB for the whole connection, a
                // few agents' unread session messages would stall every other
                // agent's heartbeats on it, which separate connections never do.
                .initial_stream_window_size(Some(2 << 20))
                .initial_connection_window_size(Some(i32::MAX as u32))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(2))
                .keep_alive_timeout(Duration::from_secs(4));
            let channels = (0..self.per_address)
                .map(|_| endpoint.connect_lazy())
                .collect();
            open.insert(address.to_string(), channels);
        }
        let channels = &open[address];
        Ok(channels[index % channels.len()].clone())
    }
}
