//! Three berth controllers on loopback.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth_proto::v1::ClusterStatusRequest;
use berth_proto::v1::cluster_client::ClusterClient;

use berth_pki::{Bundle, Credentials, Role, Security};
use tonic::transport::{Channel, Endpoint};

use crate::procs::{Daemon, sibling_binary};

/// The admin bundle `--init` writes in `dir` (waits for it).
async fn admin_security(dir: &Path) -> Result<Security> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !Bundle::exists(dir) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no admin bundle in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Security::Tls(Credentials::new(Bundle::load(dir)?)?))
}

pub struct BerthCluster {
    pub members: Vec<Daemon>,
    ports: Vec<u16>,
    /// The admin's credentials (mutual TLS), or plain text.
    security: Security,
}

/// Whether the cluster speaks mutual TLS (the default) or plain text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tls,
    Plaintext,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tls => "tls",
            Transport::Plaintext => "plaintext",
        }
    }
}

impl BerthCluster {
    pub async fn start(dir: &Path, base_port: u16, transport: Transport) -> Result<BerthCluster> {
        Self::start_with(dir, base_port, &[], transport).await
    }

    /// [`BerthCluster::start`] with `extra` arguments for every member.
    pub async fn start_with(
        dir: &Path,
        base_port: u16,
        extra: &[String],
        transport: Transport,
    ) -> Result<BerthCluster> {
        berth_pki::install_crypto_provider();
        let bin = sibling_binary("berth-controller")?;
        let ports: Vec<u16> = (0..3).map(|i| base_port + i).collect();
        let mut cluster = BerthCluster {
            members: Vec::new(),
            ports: ports.clone(),
            security: Security::Plaintext,
        };
        for (i, port) in ports.iter().enumerate() {
            let mut args = vec![
                "--data-dir".to_string(),
                dir.join(format!("b{i}")).to_string_lossy().to_string(),
                "--listen".to_string(),
                format!("127.0.0.1:{port}"),
            ];
            if transport == Transport::Plaintext {
                args.push("--insecure-plaintext".into());
            }
            if i == 0 {
                args.push("--init".into());
            } else {
                args.push("--join".into());
                args.push(format!("127.0.0.1:{}", ports[0]));
                if transport == Transport::Tls {
                    let token = dir.join("controller.token");
                    std::fs::write(&token, cluster.join_token("controller").await?)?;
                    args.push("--token-file".into());
                    args.push(token.to_string_lossy().to_string());
                }
            }
            args.extend_from_slice(extra);
            cluster
                .members
                .push(Daemon::start(&format!("berth-{i}"), &bin, &args, dir)?);
            if i == 0 && transport == Transport::Tls {
                cluster.security = admin_security(&dir.join("b0").join("admin")).await?;
            }
            cluster.wait_voters(i + 1).await?;
        }
        Ok(cluster)
    }

    /// The admin's credentials (or plain text).
    pub fn security(&self) -> &Security {
        &self.security
    }

    /// The join token of `role` ("agent" or "controller").
    pub async fn join_token(&self, role: &str) -> Result<String> {
        let mut client = self.client(0).await?;
        Ok(client
            .join_token(berth_proto::v1::JoinTokenRequest {
                role: role.to_string(),
                rotate: false,
            })
            .await?
            .into_inner()
            .token)
    }

    /// A client of member `member`'s API.
    pub async fn client(&self, member: usize) -> Result<ClusterClient<Channel>> {
        let endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{}", self.ports[member]))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_millis(300));
        let channel = berth_pki::tls::connect(endpoint, &self.security, Role::Controller).await?;
        Ok(ClusterClient::new(channel).max_decoding_message_size(berth_proto::MAX_MESSAGE_BYTES))
    }

    pub fn addresses(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    async fn wait_voters(&self, n: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(status) = self.status(0).await
                && status.members.len() == n
                && status.members.iter().all(|m| m.role != 2)
                && status.leader_id != 0
            {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "berth cluster did not form");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn status(&self, member: usize) -> Result<berth_proto::v1::ClusterStatusResponse> {
        let mut client = self.client(member).await?;
        Ok(client
            .cluster_status(ClusterStatusRequest {})
            .await?
            .into_inner())
    }

    pub async fn leader(&self) -> Result<usize> {
        for member in 0..self.ports.len() {
            if let Ok(status) = self.status(member).await
                && status.leader_id != 0
            {
                let leader = status
                    .members
                    .iter()
                    .find(|m| m.id == status.leader_id)
                    .context("leader not among members")?;
                let port: u16 = leader.address.rsplit(':').next().unwrap_or("0").parse()?;
                return self
                    .ports
                    .iter()
                    .position(|p| *p == port)
                    .context("unknown leader port");
            }
        }
        anyhow::bail!("no berth member knows a leader")
    }
}
