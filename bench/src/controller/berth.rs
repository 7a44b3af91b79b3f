//! Three berth controllers on loopback.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth_proto::v1::ClusterStatusRequest;
use berth_proto::v1::cluster_client::ClusterClient;

use crate::procs::{Daemon, sibling_binary};

pub struct BerthCluster {
    pub members: Vec<Daemon>,
    ports: Vec<u16>,
}

impl BerthCluster {
    pub async fn start(dir: &Path, base_port: u16) -> Result<BerthCluster> {
        Self::start_with(dir, base_port, &[]).await
    }

    /// [`BerthCluster::start`] with `extra` arguments for every member.
    pub async fn start_with(dir: &Path, base_port: u16, extra: &[String]) -> Result<BerthCluster> {
        let bin = sibling_binary("berth-controller")?;
        let ports: Vec<u16> = (0..3).map(|i| base_port + i).collect();
        let mut members = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let mut args = vec![
                "--data-dir".to_string(),
                dir.join(format!("b{i}")).to_string_lossy().to_string(),
                "--listen".to_string(),
                format!("127.0.0.1:{port}"),
            ];
            if i == 0 {
                args.push("--init".into());
            } else {
                args.push("--join".into());
                args.push(format!("127.0.0.1:{}", ports[0]));
            }
            args.extend_from_slice(extra);
            members.push(Daemon::start(&format!("berth-{i}"), &bin, &args, dir)?);
            let cluster = BerthCluster {
                members: Vec::new(),
                ports: ports.clone(),
            };
            cluster.wait_voters(i + 1).await?;
        }
        Ok(BerthCluster { members, ports })
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
        let addr = format!("http://127.0.0.1:{}", self.ports[member]);
        let mut client = ClusterClient::connect(addr).await?;
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
