//! The controller store benchmark: berth's 3-member Raft store against a
//! 3-member etcd, both on loopback, same workload.

pub mod berth;
pub mod etcd;
pub mod workload;

/// One system under test.
pub enum Cluster {
    Berth(berth::BerthCluster),
    Etcd(etcd::EtcdCluster),
}

/// A client connection to one member.
#[derive(Clone)]
pub enum Conn {
    Berth(berth_proto::v1::cluster_client::ClusterClient<tonic::transport::Channel>),
    Etcd(tonic::client::Grpc<tonic::transport::Channel>),
}

impl Cluster {
    pub fn name(&self) -> &'static str {
        match self {
            Cluster::Berth(_) => "berth",
            Cluster::Etcd(_) => "etcd",
        }
    }

    pub fn client_addresses(&self) -> Vec<String> {
        match self {
            Cluster::Berth(c) => c.addresses(),
            Cluster::Etcd(c) => c.addresses(),
        }
    }

    pub async fn connect(&self, member: usize) -> anyhow::Result<Conn> {
        let addr = self.client_addresses()[member].clone();
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect_timeout(std::time::Duration::from_millis(300));
        let security = match self {
            Cluster::Berth(c) => c.security(),
            Cluster::Etcd(c) => c.security(),
        };
        let channel =
            berth_pki::tls::connect(endpoint, security, berth_pki::Role::Controller).await?;
        Ok(match self {
            Cluster::Berth(_) => {
                Conn::Berth(berth_proto::v1::cluster_client::ClusterClient::new(channel))
            }
            Cluster::Etcd(_) => Conn::Etcd(tonic::client::Grpc::new(channel)),
        })
    }

    /// Index of the current leader among the members.
    pub async fn leader(&self) -> anyhow::Result<usize> {
        match self {
            Cluster::Berth(c) => c.leader().await,
            Cluster::Etcd(c) => c.leader().await,
        }
    }

    /// Creates the keys the workload writes to (berth writes update existing
    /// configs; etcd puts need no setup but get the same treatment).
    pub async fn prepare_keys(&self, keys: usize) -> anyhow::Result<()> {
        let leader = self.leader().await?;
        let mut conn = self.connect(leader).await?;
        for k in 0..keys {
            match (&mut conn, self) {
                (Conn::Berth(client), _) => {
                    client
                        .create_config(berth_proto::v1::CreateConfigRequest {
                            name: format!("k{k}"),
                            data: vec![b'0'; 256],
                            labels: Default::default(),
                        })
                        .await?;
                }
                (conn @ Conn::Etcd(_), _) => {
                    workload::put(conn, k, &[b'0'; 256]).await?;
                }
            }
        }
        Ok(())
    }

    pub fn kill(&mut self, member: usize) {
        match self {
            Cluster::Berth(c) => c.members[member].kill9(),
            Cluster::Etcd(c) => c.members[member].kill9(),
        }
    }

    pub fn restart(&mut self, member: usize) -> anyhow::Result<()> {
        match self {
            Cluster::Berth(c) => c.members[member].restart(),
            Cluster::Etcd(c) => c.members[member].restart(),
        }
    }
}
