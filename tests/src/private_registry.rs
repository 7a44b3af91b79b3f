//! A cluster whose nodes pull from a private registry: basic auth, user
//! `alice` with a random password, the busybox image pushed to it as
//! `private/busybox:1`.

use anyhow::Result;

use crate::cluster::Cluster;
use crate::images::HostRegistry;
use crate::testnet::host_address;

/// The private registry's port (the open one has 5000), on the client host.
pub const PRIVATE_PORT: u16 = 5001;

pub struct PrivateCluster {
    pub cluster: Cluster,
    pub registry: HostRegistry,
    pub password: String,
    /// `<registry>/private/busybox:1`.
    pub image: String,
}

/// One controller and `agents` agents, started once the private registry is
/// up (they reach it over plain HTTP like the open one, and so does the
/// controller, to pin images: it runs on the client host, after the
/// controller's and the agents' hosts).
pub fn start(test: &str, agents: usize) -> Result<PrivateCluster> {
    let private_address = format!("{}:{PRIVATE_PORT}", host_address(1 + agents));
    let mut cluster = Cluster::start_with(
        test,
        1,
        0,
        agents,
        &["--insecure-registry", &private_address],
    )?;
    let client = cluster.c.client_host();
    let password = format!("pw-{:016x}", rand::random::<u64>());
    let registry =
        HostRegistry::start_private(&mut cluster.c.net, client, PRIVATE_PORT, "alice", &password)?;
    let image = registry.push(
        &cluster.c.net,
        &cluster.image_layout(),
        "1",
        "private/busybox:1",
    )?;
    cluster
        .insecure_registries
        .push(registry.address().to_string());
    for i in 0..agents {
        cluster.start_agent(i)?;
    }
    cluster.wait_nodes_ready(agents)?;
    Ok(PrivateCluster {
        cluster,
        registry,
        password,
        image,
    })
}

/// Writes `docker login`'s `config.json` for `registry` (user `alice`,
/// `password`) into `dir` (what DOCKER_CONFIG names); returns its `auth`
/// value (base64 `alice:PASSWORD`).
pub fn docker_login(
    dir: &std::path::Path,
    registry: &HostRegistry,
    password: &str,
) -> Result<String> {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
    std::fs::write(
        dir.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.address()
        ),
    )?;
    Ok(auth)
}
