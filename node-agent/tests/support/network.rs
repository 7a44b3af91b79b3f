//! Shared parts of the overlay tests: an agent's overlay on a test host (netlink
//! writes counted), containers as bare network namespaces, UDP probes.
#![allow(dead_code)] // each test binary uses a different part

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_agent::dataplane::netlink::{
    Address, Fdb, Link, LinkUpdate, Neighbour, Route, VxlanSpec,
};
use berth_agent::dataplane::{
    AttachRequest, LocalPlan, Netlink, NetworkError, NetworkPlan, Overlay, RemoteNode, RtNetlink,
};
use berth_proto::net::Block;
use berth_proto::v1::{Assignments, Network, NetworkBlocks, Node};
use berth_testhost::netruntime::run;
use berth_testhost::{Host, TestNet};
use nix::sched::{CloneFlags, setns, unshare};

pub const VNI: u32 = 4097;
/// The VXLAN port of the test plans (berth's default, not 4789).
pub const VXLAN_PORT: u16 = 7420;

/// The real netlink, counting writes.
pub struct Counting {
    inner: RtNetlink,
    pub writes: Arc<AtomicUsize>,
}

type R<T> = Result<T, NetworkError>;

impl Counting {
    fn w(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }
}

impl Netlink for Counting {
    async fn links(&self) -> R<Vec<Link>> {
        self.inner.links().await
    }
    async fn link(&self, name: &str) -> R<Option<Link>> {
        self.inner.link(name).await
    }
    async fn addresses(&self) -> R<Vec<Address>> {
        self.inner.addresses().await
    }
    async fn routes(&self) -> R<Vec<Route>> {
        self.inner.routes().await
    }
    async fn neighbours(&self, index: u32) -> R<Vec<Neighbour>> {
        self.inner.neighbours(index).await
    }
    async fn fdb(&self, index: u32) -> R<Vec<Fdb>> {
        self.inner.fdb(index).await
    }
    async fn add_bridge(&self, name: &str, mtu: u32) -> R<()> {
        self.w();
        self.inner.add_bridge(name, mtu).await
    }
    async fn add_vxlan(&self, spec: &VxlanSpec) -> R<()> {
        self.w();
        self.inner.add_vxlan(spec).await
    }
    async fn add_veth(
        &self,
        name: &str,
        peer: &str,
        mtu: u32,
        peer_netns: Option<std::os::fd::RawFd>,
    ) -> R<()> {
        self.w();
        self.inner.add_veth(name, peer, mtu, peer_netns).await
    }
    async fn set_link(&self, index: u32, update: &LinkUpdate) -> R<()> {
        self.w();
        self.inner.set_link(index, update).await
    }
    async fn set_hairpin(&self, index: u32, on: bool) -> R<()> {
        self.w();
        self.inner.set_hairpin(index, on).await
    }
    async fn del_link(&self, index: u32) -> R<()> {
        self.w();
        self.inner.del_link(index).await
    }
    async fn add_address(&self, a: Address) -> R<()> {
        self.w();
        self.inner.add_address(a).await
    }
    async fn del_address(&self, a: Address) -> R<()> {
        self.w();
        self.inner.del_address(a).await
    }
    async fn replace_route(&self, r: Route) -> R<()> {
        self.w();
        self.inner.replace_route(r).await
    }
    async fn del_route(&self, r: Route) -> R<()> {
        self.w();
        self.inner.del_route(r).await
    }
    async fn replace_neighbour(&self, n: &Neighbour) -> R<()> {
        self.w();
        self.inner.replace_neighbour(n).await
    }
    async fn del_neighbour(&self, n: &Neighbour) -> R<()> {
        self.w();
        self.inner.del_neighbour(n).await
    }
    async fn replace_fdb(&self, f: &Fdb) -> R<()> {
        self.w();
        self.inner.replace_fdb(f).await
    }
    async fn del_fdb(&self, f: &Fdb) -> R<()> {
        self.w();
        self.inner.del_fdb(f).await
    }
    async fn enable_forwarding(&self) -> R<bool> {
        let changed = self.inner.enable_forwarding().await?;
        if changed {
            self.w();
        }
        Ok(changed)
    }
}

/// One host's overlay, as the agent would hold it (a runtime in the host's netns).
pub struct Agent {
    pub rt: tokio::runtime::Runtime,
    pub overlay: Arc<Overlay<Counting>>,
    pub writes: Arc<AtomicUsize>,
}

impl Agent {
    pub fn start(host: &Host) -> Result<Agent> {
        let rt = host.runtime()?;
        let nl = run(&rt, async { RtNetlink::new() }).context("netlink in the host")?;
        let writes = Arc::new(AtomicUsize::new(0));
        let overlay = Arc::new(Overlay::new(Counting {
            inner: nl,
            writes: writes.clone(),
        }));
        Ok(Agent {
            rt,
            overlay,
            writes,
        })
    }

    pub fn reconcile(&self, plan: &LocalPlan) -> Result<Vec<String>> {
        let overlay = self.overlay.clone();
        let plan = plan.clone();
        let report = run(&self.rt, async move { overlay.reconcile(&plan).await })?;
        Ok(report.changes)
    }

    pub fn attach(&self, req: AttachRequest) -> Result<String> {
        let overlay = self.overlay.clone();
        Ok(run(&self.rt, async move { overlay.attach(&req).await })?)
    }

    pub fn detach(&self, container: &str) -> Result<bool> {
        let overlay = self.overlay.clone();
        let container = container.to_string();
        Ok(run(&self.rt, async move {
            overlay.detach(&container, VNI).await
        })?)
    }

    /// Removes the host's container veths but those of `keep` (in the test VNI).
    pub fn sweep_veths_except(&self, keep: &[&str]) -> Result<Vec<String>> {
        let overlay = self.overlay.clone();
        let keep = keep
            .iter()
            .map(|c| berth_agent::dataplane::names::veth_names(c, VNI).0)
            .collect();
        Ok(run(&self.rt, async move {
            overlay.remove_veths_except(&keep).await
        })?)
    }

    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
}

/// Host `i`'s block in the test network: 10.20.(i+1).0/24.
pub fn block(i: usize) -> Block {
    Block::containing(Ipv4Addr::new(10, 20, i as u8 + 1, 0), 24).expect("block")
}

/// Host `i`'s plan when the network spans the hosts in `members`.
pub fn plan_for(net: &TestNet, i: usize, members: &[usize]) -> LocalPlan {
    LocalPlan {
        networks: vec![NetworkPlan {
            name: "web".into(),
            vni: VNI,
            port: VXLAN_PORT,
            local_blocks: vec![block(i)],
            underlay_ip: net.host(i).address(),
            remotes: members
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| RemoteNode {
                    underlay_ip: net.host(j).address(),
                    blocks: vec![block(j)],
                })
                .collect(),
        }],
    }
}

/// The assignment set from which host `i`'s network service computes
/// [`plan_for`]`(net, i, members)`: the test network with every member's
/// block (node ids `h1`, `h2`, ...).
pub fn assignments_for(net: &TestNet, i: usize, members: &[usize]) -> Assignments {
    let node = |j: usize| Node {
        id: format!("h{}", j + 1),
        address: net.host(j).address().to_string(),
        network_blocks: [("web".to_string(), NetworkBlocks::of(&[block(j)]))].into(),
        ..Default::default()
    };
    Assignments {
        node_id: node(i).id,
        networks: vec![Network {
            name: "web".into(),
            subnet: "10.20.0.0/16".into(),
            vxlan_id: VNI,
            vxlan_port: u32::from(VXLAN_PORT),
            ..Default::default()
        }],
        nodes: members.iter().map(|&j| node(j)).collect(),
        ..Default::default()
    }
}

/// A container without a runtime: an anonymous network namespace held by an fd
/// of the test process (gone when dropped, also after a crash).
pub struct Container {
    pub id: String,
    pub ns: File,
    pub ip: Ipv4Addr,
}

impl Container {
    pub fn new(id: &str, ip: Ipv4Addr) -> Result<Container> {
        let ns = std::thread::spawn(|| -> Result<File> {
            unshare(CloneFlags::CLONE_NEWNET).context("unshare a netns")?;
            Ok(File::open("/proc/thread-self/ns/net")?)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("netns thread panicked"))??;
        Ok(Container {
            id: id.to_string(),
            ns,
            ip,
        })
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.ns.as_raw_fd()
        ))
    }

    /// Attach request for host `i`'s block.
    pub fn request(&self, i: usize) -> AttachRequest {
        AttachRequest {
            container: self.id.clone(),
            netns: self.path(),
            vni: VNI,
            address: self.ip,
            prefix: 24,
            gateway: block(i).gateway(),
            position: 0,
            subnet: block(i).net(),
        }
    }

    /// Runs `f` on a thread inside the container.
    pub fn inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let ns = self.ns.try_clone()?;
        std::thread::spawn(move || -> Result<T> {
            setns(&ns, CloneFlags::CLONE_NEWNET).context("enter container netns")?;
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("container thread panicked"))?
    }

    /// A UDP socket bound in the container.
    pub fn udp(&self, port: u16) -> Result<UdpSocket> {
        let addr = SocketAddr::new(self.ip.into(), port);
        let sock = self.inside(move || UdpSocket::bind(addr))??;
        sock.set_read_timeout(Some(Duration::from_millis(300)))?;
        Ok(sock)
    }
}

pub use berth_testhost::netprobe::dont_fragment;

/// Sends `size` bytes (don't-fragment) from `from` to `to` until one arrives
/// whole (the first may wait for ARP); fails after a few tries.
pub fn probe(from: &Container, to: &Container, size: usize) -> Result<()> {
    let port = 7100;
    let rx = to.udp(port)?;
    let tx = from.udp(0)?;
    dont_fragment(&tx)?;
    let payload = vec![0xabu8; size];
    let dst = SocketAddr::new(to.ip.into(), port);
    let mut buf = vec![0u8; 65536];
    for _ in 0..10 {
        tx.send_to(&payload, dst)
            .with_context(|| format!("send {size} bytes {} -> {}", from.ip, to.ip))?;
        if let Ok((n, src)) = rx.recv_from(&mut buf) {
            if n == size && src.ip() == std::net::IpAddr::V4(from.ip) {
                return Ok(());
            }
            bail!("got {n} bytes from {src}, want {size} from {}", from.ip);
        }
    }
    bail!("{size} bytes from {} never reached {}", from.ip, to.ip)
}

/// Output of a command inside host `host` as text.
pub fn sh(host: &Host, program: &str, args: &[&str]) -> Result<String> {
    let out = host.run(program, args)?;
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}
