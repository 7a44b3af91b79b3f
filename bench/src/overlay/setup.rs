//! Two test hosts with berth's overlay reconciled on both and one container
//! network namespace per host attached to it: the endpoints the overlay
//! benchmark sends between.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use berth_agent::dataplane::{
    AttachRequest, LocalPlan, NetworkPlan, Overlay, RemoteNode, RtNetlink,
};
use berth_proto::net::Block;
use berth_testhost::TestNet;
use berth_testhost::netruntime::run;
use berth_testhost::ns::in_netns;
use nix::sched::{CloneFlags, unshare};

/// The benchmark's network.
pub const VNI: u32 = 4242;

/// Somewhere sockets can be opened: a network namespace and the address to
/// bind or connect to in it.
pub struct Endpoint {
    pub name: String,
    pub ip: Ipv4Addr,
    ns: File,
}

impl Endpoint {
    pub(crate) fn new(name: String, ip: Ipv4Addr, ns: File) -> Endpoint {
        Endpoint { name, ip, ns }
    }

    /// The endpoint's network namespace as a path this process can open
    /// (for `ip ... netns PATH`).
    pub fn ns_path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.ns.as_raw_fd())
    }

    /// Runs `f` on a fresh thread inside the endpoint's network namespace and
    /// returns its result. Sockets made there stay in that namespace, so they
    /// can be used from any thread afterwards.
    pub fn inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        in_netns(&self.ns, f).with_context(|| format!("in {}", self.name))
    }

    /// Runs `program ARGS` inside the endpoint's network namespace (the
    /// caller's mount namespace) and returns its stdout.
    pub fn command(&self, program: &str, args: &[&str]) -> Result<String> {
        let net = format!("--net={}", self.ns_path());
        let mut full = vec![net.as_str(), program];
        full.extend_from_slice(args);
        let out = std::process::Command::new("nsenter")
            .args(&full)
            .output()
            .context("failed to run nsenter")?;
        anyhow::ensure!(
            out.status.success(),
            "{program} {} in {} failed: {}",
            args.join(" "),
            self.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Two hosts, their overlays, a container on each. Dropping it removes
/// everything: the container namespaces are held only by fds of this process,
/// the hosts' namespaces (with the overlay devices in them) by the harness's
/// holder processes, which also die with this process.
pub struct OverlayBed {
    pub hosts: [Endpoint; 2],
    pub containers: [Endpoint; 2],
    // Drop order: the agents' runtimes, then the network.
    _runtimes: Vec<tokio::runtime::Runtime>,
    net: TestNet,
}

/// Host `i`'s block: 10.42.(i+1).0/24.
fn block(i: usize) -> Block {
    Block::containing(Ipv4Addr::new(10, 42, i as u8 + 1, 0), 24).expect("block")
}

fn plan_for(net: &TestNet, i: usize) -> LocalPlan {
    let other = 1 - i;
    LocalPlan {
        networks: vec![NetworkPlan {
            name: "bench".into(),
            vni: VNI,
            // Not the baseline device's 4789 (bx-<vni>, same VNI).
            port: 7420,
            local_blocks: vec![block(i)],
            underlay_ip: net.host(i).address(),
            remotes: vec![RemoteNode {
                underlay_ip: net.host(other).address(),
                blocks: vec![block(other)],
            }],
        }],
    }
}

/// An anonymous network namespace held by an fd of this process.
pub(crate) fn new_netns() -> Result<File> {
    std::thread::spawn(|| -> Result<File> {
        unshare(CloneFlags::CLONE_NEWNET).context("failed to unshare a netns")?;
        Ok(File::open("/proc/thread-self/ns/net")?)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("netns thread panicked"))?
}

impl OverlayBed {
    pub fn new() -> Result<OverlayBed> {
        let net = TestNet::new("bench_overlay", 2)?;
        let mut runtimes = Vec::new();
        let mut hosts = Vec::new();
        let mut containers = Vec::new();
        for i in 0..2 {
            let host = net.host(i);
            let rt = host.runtime()?;
            let overlay = Arc::new(Overlay::new(
                run(&rt, async { RtNetlink::new() }).context("netlink in a test host")?,
            ));
            let plan = plan_for(&net, i);
            let o = overlay.clone();
            run(&rt, async move { o.reconcile(&plan).await })
                .with_context(|| format!("reconcile on {}", host.name()))?;
            let ns = new_netns()?;
            let ip = Ipv4Addr::new(10, 42, i as u8 + 1, 10);
            let req = AttachRequest {
                container: format!("bench{}", i + 1),
                netns: PathBuf::from(format!(
                    "/proc/{}/fd/{}",
                    std::process::id(),
                    ns.as_raw_fd()
                )),
                vni: VNI,
                address: ip,
                prefix: 24,
                gateway: block(i).gateway(),
                position: 0,
                subnet: block(i).net(),
            };
            let o = overlay.clone();
            run(&rt, async move { o.attach(&req).await })
                .with_context(|| format!("attach a container on {}", host.name()))?;
            // SAFETY: the harness keeps the host's netns fd open while `net` lives;
            // we only duplicate it.
            let host_ns = unsafe { BorrowedFd::borrow_raw(host.ns().net) }.try_clone_to_owned()?;
            hosts.push(Endpoint {
                name: format!("{} (host)", host.name()),
                ip: host.address(),
                ns: File::from(host_ns),
            });
            containers.push(Endpoint {
                name: format!("container on {}", host.name()),
                ip,
                ns,
            });
            runtimes.push(rt);
        }
        let pair = |v: Vec<Endpoint>| -> [Endpoint; 2] {
            let mut it = v.into_iter();
            [it.next().expect("two"), it.next().expect("two")]
        };
        Ok(OverlayBed {
            hosts: pair(hosts),
            containers: pair(containers),
            _runtimes: runtimes,
            net,
        })
    }

    /// Runs `program ARGS` inside test host `i` (its network and mount
    /// namespace) and returns its stdout.
    pub fn host_command(&self, i: usize, program: &str, args: &[&str]) -> Result<String> {
        let out = self.net.host(i).run(program, args)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
