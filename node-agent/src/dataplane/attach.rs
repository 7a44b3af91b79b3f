//! A container's network: its namespace (made by the agent before the runtime
//! starts the container, which joins it by path) and a veth pair, one end `eth0`
//! in the namespace with the task address and a default route via the gateway,
//! the other end a port of the network's bridge. MTU is the bridge's (underlay
//! − 50) on both ends.

use std::collections::HashSet;
use std::fs::File;
use std::future::Future;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use berth_proto::net::Ipv4Net;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use tracing::info;

use super::Overlay;
use super::error::NetworkError;
use super::names::{CONTAINER_IFACE_PREFIX, VETH_PREFIX, bridge_name, veth_names};
use super::netlink::{Address, LinkKind, LinkUpdate, Neighbour, Netlink, Route, RtNetlink};

type R<T> = Result<T, NetworkError>;

/// One container joining one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachRequest {
    /// The container (task) id; names the veth.
    pub container: String,
    /// The container's network namespace: a bind mount made by [`create_netns`]
    /// or any `/proc/<pid>/ns/net`.
    pub netns: PathBuf,
    pub vni: u32,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// Which of the container's networks this is: 0 is `eth0` and carries the
    /// default route; n is `eth<n>`, routed to `subnet` only.
    pub position: u8,
    /// The network's whole subnet (its VIPs included).
    pub subnet: Ipv4Net,
}

impl AttachRequest {
    /// The interface name inside the container.
    pub fn iface(&self) -> String {
        format!("{CONTAINER_IFACE_PREFIX}{}", self.position)
    }
}

/// Creates a network namespace bind-mounted at `path` (e.g.
/// `/run/berth/netns/<task>`), with nothing in it; the runtime joins it by path.
/// An existing namespace at `path` is kept.
pub async fn create_netns(path: &Path) -> R<()> {
    if path.exists() && File::open(path).is_ok_and(|f| is_netns(&f)) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(NetworkError::io(format!(
            "failed to create {}",
            dir.display()
        )))?;
    }
    File::create(path).map_err(NetworkError::io(format!(
        "failed to create {}",
        path.display()
    )))?;
    let target = path.to_path_buf();
    on_thread(move || {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| {
            NetworkError::Kernel(format!("failed to unshare a network namespace: {e}"))
        })?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            NetworkError::Kernel(format!(
                "failed to bind-mount a netns on {}: {e}",
                target.display()
            ))
        })
    })
    .await
}

/// Unmounts and removes a namespace made by [`create_netns`]; a missing one is
/// fine.
pub fn remove_netns(path: &Path) -> R<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => {
            return Err(NetworkError::Kernel(format!(
                "failed to unmount netns {}: {e}",
                path.display()
            )));
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(NetworkError::Io {
            what: format!("failed to remove {}", path.display()),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn is_netns(file: &File) -> bool {
    // A bind-mounted namespace file lives on nsfs.
    nix::sys::statfs::fstatfs(file)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// Runs `f` on a fresh thread and waits for it without blocking the runtime.
async fn on_thread<T: Send + 'static>(f: impl FnOnce() -> R<T> + Send + 'static) -> R<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(NetworkError::io("failed to start a netns thread"))?;
    rx.await
        .map_err(|_| NetworkError::Kernel("netns thread died".into()))?
}

/// Runs the future made by `f` on a thread inside the namespace at `netns`
/// (netlink sockets belong to their creating thread's namespace).
async fn in_netns<T, F, Fut>(netns: &Path, f: F) -> R<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = R<T>>,
{
    let file = File::open(netns).map_err(NetworkError::io(format!(
        "failed to open netns {}",
        netns.display()
    )))?;
    let shown = netns.display().to_string();
    on_thread(move || {
        setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetworkError::Kernel(format!("failed to enter netns {shown}: {e}")))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(NetworkError::io("failed to build a netns runtime"))?;
        rt.block_on(f())
    })
    .await
}

impl<N: Netlink> Overlay<N> {
    /// Joins a container to a network: a veth pair whose host end (returned) is
    /// a port of the network's bridge and whose other end is `eth0` in the
    /// container's namespace. Attaching again re-creates the pair.
    pub async fn attach(&self, req: &AttachRequest) -> R<String> {
        let nl = self.netlink();
        let bridge_link = bridge_name(req.vni);
        // Each device by name, not a dump of every link: attaches of many
        // tasks go on side by side (dumps take turns on the connection).
        let bridge = nl
            .link(&bridge_link)
            .await?
            .filter(|l| l.kind == LinkKind::Bridge)
            .ok_or_else(|| {
                NetworkError::Kernel(format!(
                    "container {}: network vni {} has no bridge {bridge_link} on this host",
                    req.container, req.vni
                ))
            })?;
        let (bridge, mtu) = (bridge.index, bridge.mtu);
        let (host, peer) = veth_names(&req.container, req.vni);
        for name in [&host, &peer] {
            if let Some(stale) = nl.link(name).await? {
                // It may be on its way out with a namespace the kernel is tearing down.
                NetworkError::gone_is_done(nl.del_link(stale.index).await)?;
            }
        }
        let netns = File::open(&req.netns).map_err(NetworkError::io(format!(
            "container {}: failed to open netns {}",
            req.container,
            req.netns.display()
        )))?;
        // The container end is created inside the container's namespace.
        nl.add_veth(&host, &peer, mtu, Some(netns.as_raw_fd()))
            .await?;
        let host_index = nl.link(&host).await?.map(|l| l.index).ok_or_else(|| {
            NetworkError::Kernel(format!("veth end {host} missing after creation"))
        })?;
        let configured = configure_container(req.clone(), peer.clone(), mtu).await;
        if let Err(e) = configured {
            let _ = nl.del_link(host_index).await;
            return Err(e);
        }
        nl.set_link(
            host_index,
            &LinkUpdate {
                mtu: Some(mtu),
                up: true,
                master: Some(bridge),
                ..LinkUpdate::default()
            },
        )
        .await?;
        nl.set_hairpin(host_index, true).await?;
        // Addresses are handed out again once their task is gone: a neighbour
        // entry the earlier holder left on the bridge would send the new
        // task's traffic to a MAC no port has until the kernel gives up on it
        // (seconds of connect timeouts through VIPs and published ports).
        NetworkError::gone_is_done(
            nl.del_neighbour(&Neighbour {
                index: bridge,
                ip: req.address,
                mac: Vec::new(),
                permanent: false,
            })
            .await,
        )?;
        info!(container = %req.container, vni = req.vni, veth = %host, address = %req.address, "attached");
        Ok(host)
    }

    /// Puts containers' veths back on their networks' bridges where they fell
    /// off (a bridge deleted and re-created by a reconcile drops its ports):
    /// `ports` lists (container, vni) of the containers this host runs.
    /// Returns the veths re-attached.
    pub async fn reattach(&self, ports: &[(String, u32)]) -> R<Vec<String>> {
        let nl = self.netlink();
        let links = nl.links().await?;
        let mut fixed = Vec::new();
        for (container, vni) in ports {
            let (host, _) = veth_names(container, *vni);
            let bridge_link = bridge_name(*vni);
            let (Some(veth), Some(bridge)) = (
                links.iter().find(|l| l.name == host),
                links
                    .iter()
                    .find(|l| l.name == bridge_link && l.kind == LinkKind::Bridge),
            ) else {
                continue;
            };
            if veth.master == Some(bridge.index) && veth.up {
                continue;
            }
            nl.set_link(
                veth.index,
                &LinkUpdate {
                    mtu: Some(bridge.mtu),
                    up: true,
                    master: Some(bridge.index),
                    ..LinkUpdate::default()
                },
            )
            .await?;
            nl.set_hairpin(veth.index, true).await?;
            info!(container = %container, vni, veth = %host, "re-attached to its bridge");
            fixed.push(host);
        }
        Ok(fixed)
    }

    /// Removes berth's container veths whose host end is not in `keep`: the
    /// safety net for namespaces that outlived their task (something else held
    /// them when the task's namespace was removed). Returns the veths removed.
    pub async fn remove_veths_except(&self, keep: &HashSet<String>) -> R<Vec<String>> {
        let nl = self.netlink();
        let mut removed = Vec::new();
        for link in nl.links().await? {
            if !link.name.starts_with(VETH_PREFIX) || keep.contains(&link.name) {
                continue;
            }
            NetworkError::gone_is_done(nl.del_link(link.index).await)?;
            removed.push(link.name);
        }
        Ok(removed)
    }

    /// Removes the container's veth pair in network `vni` (deleting the host end
    /// takes the other with it). Returns whether there was one.
    pub async fn detach(&self, container: &str, vni: u32) -> R<bool> {
        let nl = self.netlink();
        let (host, _) = veth_names(container, vni);
        let links = nl.links().await?;
        let Some(link) = links.iter().find(|l| l.name == host) else {
            return Ok(false);
        };
        NetworkError::gone_is_done(nl.del_link(link.index).await)?;
        info!(container, vni, veth = %host, "detached");
        Ok(true)
    }
}

/// Inside the container's namespace: lo up; the veth end renamed `eth<n>`, MTU,
/// up, with the task address; a route via the gateway (the default route for
/// the first network, the network's subnet for the others).
async fn configure_container(req: AttachRequest, peer: String, mtu: u32) -> R<()> {
    let netns = req.netns.clone();
    in_netns(&netns, move || async move {
        let nl = RtNetlink::new()?;
        let links = nl.links().await?;
        let find = |name: &str| {
            links
                .iter()
                .find(|l| l.name == name)
                .map(|l| l.index)
                .ok_or_else(|| {
                    NetworkError::Kernel(format!(
                        "container {}: no {name} in its netns",
                        req.container
                    ))
                })
        };
        let lo = find("lo")?;
        let eth = find(&peer)?;
        nl.set_link(
            lo,
            &LinkUpdate {
                up: true,
                ..LinkUpdate::default()
            },
        )
        .await?;
        let iface = req.iface();
        if let Some(old) = links.iter().find(|l| l.name == iface) {
            nl.del_link(old.index).await?;
        }
        nl.set_link(
            eth,
            &LinkUpdate {
                name: Some(iface),
                mtu: Some(mtu),
                up: true,
                ..LinkUpdate::default()
            },
        )
        .await?;
        nl.add_address(Address {
            index: eth,
            addr: req.address,
            prefix: req.prefix,
        })
        .await?;
        let (dst, prefix) = if req.position == 0 {
            (Ipv4Addr::UNSPECIFIED, 0)
        } else {
            (req.subnet.network(), req.subnet.prefix_len())
        };
        nl.replace_route(Route {
            dst,
            prefix,
            gateway: req.gateway,
            oif: eth,
        })
        .await
    })
    .await
}
