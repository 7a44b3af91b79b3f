//! One embedded DNS server per local block gateway of every network on this
//! host, each answering from its network's table (see [`View::dns_table`]);
//! other names go to the host's resolvers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{Mutex, watch};
use tracing::info;

use super::View;
use crate::dataplane::NetworkError;
use crate::dataplane::dns::{DnsServer, DnsTable, Following, upstreams_from_resolv_conf};

struct Running {
    server: DnsServer,
    table: watch::Sender<Arc<DnsTable>>,
}

pub struct DnsPlane {
    servers: Mutex<BTreeMap<SocketAddr, Running>>,
    upstream: Vec<SocketAddr>,
    following: Arc<Following>,
}

impl DnsPlane {
    /// Forwards to the nameservers of the host's /etc/resolv.conf; asks for
    /// the services it does not follow through `following`.
    pub fn new(following: Arc<Following>) -> DnsPlane {
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        DnsPlane {
            servers: Mutex::new(BTreeMap::new()),
            upstream: upstreams_from_resolv_conf(&text),
            following,
        }
    }

    /// Starts the servers the view needs (their gateway addresses must be on
    /// the bridges already), stops the others, and hands every server its
    /// network's current table.
    pub async fn sync(&self, view: &View) -> Result<(), NetworkError> {
        let mut wanted: BTreeMap<SocketAddr, DnsTable> = BTreeMap::new();
        for plan in &view.plan.networks {
            let table = view.dns_table(&plan.name);
            for block in &plan.local_blocks {
                wanted.insert(SocketAddr::from((block.gateway(), 53)), table.clone());
            }
        }
        let mut servers = self.servers.lock().await;
        let stale: Vec<SocketAddr> = servers
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for address in stale {
            if let Some(running) = servers.remove(&address) {
                running.server.shutdown().await;
                info!(%address, "DNS server stopped");
            }
        }
        for (address, table) in wanted {
            match servers.get(&address) {
                Some(running) => {
                    running.table.send_if_modified(|current| {
                        if **current == table {
                            return false;
                        }
                        *current = Arc::new(table);
                        true
                    });
                }
                None => {
                    let (tx, rx) = watch::channel(Arc::new(table));
                    let server = DnsServer::start(
                        address,
                        rx,
                        self.upstream.clone(),
                        Arc::clone(&self.following),
                    )
                    .await?;
                    info!(%address, "DNS server started");
                    servers.insert(address, Running { server, table: tx });
                }
            }
        }
        Ok(())
    }
}
