//! Three etcd members (Debian's etcd-server) on loopback, and the two gRPC calls
//! the benchmark needs, declared by hand (no protoc in the product's build).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tonic::codegen::http::uri::PathAndQuery;

use berth_pki::{Authority, Credentials, Identity, Role, Security, Validity};

use super::berth::Transport;
use crate::procs::Daemon;

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// etcd's RangeRequest, the fields the benchmark sets.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// Served by the member without a read-index round.
    #[prost(bool, tag = "7")]
    pub serializable: bool,
}

/// etcd's RangeResponse, only its header (the rest is skipped when decoding).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(uint64, tag = "4")]
    pub leader: u64,
}

pub async fn unary<Req, Resp>(
    grpc: &mut tonic::client::Grpc<tonic::transport::Channel>,
    path: &'static str,
    request: Req,
) -> Result<Resp, tonic::Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    let response = grpc
        .unary(
            tonic::Request::new(request),
            PathAndQuery::from_static(path),
            codec,
        )
        .await?;
    Ok(response.into_inner())
}

pub struct EtcdCluster {
    pub members: Vec<Daemon>,
    client_ports: Vec<u16>,
    /// The client's credentials with TLS (a CA made for the run), or plain text.
    security: Security,
}

/// etcd's own TLS on client and peer ports, with a CA made for the run: each
/// member a certificate for 127.0.0.1 (etcd checks peers by address) and for
/// the name the benchmark's client checks; the client an admin certificate.
fn etcd_tls(dir: &Path) -> Result<(Vec<Vec<String>>, Security)> {
    let now = berth_pki::now_ms();
    let ca = Authority::create("etcd-bench", now)?;
    let validity = Validity::starting_at(now, Duration::from_secs(24 * 3600));
    let identity = |node_id: String, role| Identity {
        node_id,
        role,
        cluster_id: "etcd-bench".into(),
    };
    let mut flags = Vec::new();
    for i in 0..3 {
        let member = ca.issue_bundle_for_ips(
            &identity(format!("e{i}"), Role::Controller),
            validity,
            &["127.0.0.1".parse()?],
        )?;
        let tls = dir.join(format!("e{i}-tls"));
        member.save(&tls)?;
        let file = |name: &str| tls.join(name).to_string_lossy().to_string();
        flags.push(vec![
            "--client-cert-auth".to_string(),
            "--trusted-ca-file".into(),
            file("ca.pem"),
            "--cert-file".into(),
            file("cert.pem"),
            "--key-file".into(),
            file("key.pem"),
            "--peer-client-cert-auth".into(),
            "--peer-trusted-ca-file".into(),
            file("ca.pem"),
            "--peer-cert-file".into(),
            file("cert.pem"),
            "--peer-key-file".into(),
            file("key.pem"),
        ]);
    }
    let client = ca.issue_bundle(&identity("bench".into(), Role::Admin), validity)?;
    Ok((flags, Security::Tls(Credentials::new(client)?)))
}

impl EtcdCluster {
    pub async fn start(dir: &Path, base_port: u16, transport: Transport) -> Result<EtcdCluster> {
        let etcd = which("etcd").context("etcd not found: apt-get install etcd-server")?;
        let client_ports: Vec<u16> = (0..3).map(|i| base_port + i).collect();
        let peer_ports: Vec<u16> = (0..3).map(|i| base_port + 10 + i).collect();
        let (tls_flags, security) = match transport {
            Transport::Tls => etcd_tls(dir)?,
            Transport::Plaintext => (vec![Vec::new(); 3], Security::Plaintext),
        };
        let scheme = match transport {
            Transport::Tls => "https",
            Transport::Plaintext => "http",
        };
        let initial: Vec<String> = (0..3)
            .map(|i| format!("e{i}={scheme}://127.0.0.1:{}", peer_ports[i]))
            .collect();
        let mut members = Vec::new();
        for i in 0..3 {
            let mut args = vec![
                "--name".to_string(),
                format!("e{i}"),
                "--data-dir".into(),
                dir.join(format!("e{i}")).to_string_lossy().to_string(),
                "--listen-client-urls".into(),
                format!("{scheme}://127.0.0.1:{}", client_ports[i]),
                "--advertise-client-urls".into(),
                format!("{scheme}://127.0.0.1:{}", client_ports[i]),
                "--listen-peer-urls".into(),
                format!("{scheme}://127.0.0.1:{}", peer_ports[i]),
                "--initial-advertise-peer-urls".into(),
                format!("{scheme}://127.0.0.1:{}", peer_ports[i]),
                "--initial-cluster".into(),
                initial.join(","),
                "--initial-cluster-state".into(),
                "new".into(),
                "--log-level".into(),
                "warn".into(),
            ];
            args.extend(tls_flags[i].iter().cloned());
            members.push(Daemon::start(&format!("etcd-{i}"), &etcd, &args, dir)?);
        }
        let cluster = EtcdCluster {
            members,
            client_ports,
            security,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while cluster.leader().await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "etcd cluster did not form");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(cluster)
    }

    /// How clients connect.
    pub fn security(&self) -> &Security {
        &self.security
    }

    pub fn addresses(&self) -> Vec<String> {
        self.client_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    pub async fn leader(&self) -> Result<usize> {
        // Ask every member for its own id and the leader's id.
        let mut ids = Vec::new();
        let mut leader = 0;
        for addr in self.addresses() {
            let status: Option<StatusResponse> = async {
                let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .ok()?
                    .connect_timeout(Duration::from_millis(300))
                    .timeout(Duration::from_millis(500));
                let channel = berth_pki::tls::connect(endpoint, &self.security, Role::Controller)
                    .await
                    .ok()?;
                let mut grpc = tonic::client::Grpc::new(channel);
                unary(
                    &mut grpc,
                    "/etcdserverpb.Maintenance/Status",
                    StatusRequest {},
                )
                .await
                .ok()
            }
            .await;
            let (id, l) = status
                .map(|s| (s.header.map(|h| h.member_id).unwrap_or(0), s.leader))
                .unwrap_or((0, 0));
            if l != 0 {
                leader = l;
            }
            ids.push(id);
        }
        ids.iter()
            .position(|id| *id == leader && leader != 0)
            .context("no etcd leader")
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.exists())
    })
}
