//! The handful of rtnetlink operations the overlay uses, behind our own trait
//! (rtnetlink breaks its API nearly every release; the diff logic is tested
//! against a fake), and the real implementation on rtnetlink (version pinned in
//! the workspace's Cargo.toml).
//!
//! A netlink socket works in the network namespace of the thread that created
//! it: create [`RtNetlink`] on a thread that lives in the namespace to program.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType,
};
use rtnetlink::{
    AddressMessageBuilder, Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, LinkVxlan,
    RouteMessageBuilder,
};

use super::error::NetworkError;
use super::mac::format_mac;
use super::names::ROUTE_PROTOCOL;

/// What a link is, as far as berth cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkKind {
    Bridge,
    Vxlan(VxlanInfo),
    Veth,
    Other,
}

/// The VXLAN attributes berth sets (anything else differing is not looked at).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanInfo {
    pub vni: u32,
    pub local: Option<Ipv4Addr>,
    pub port: u16,
    pub learning: bool,
    /// Index of the lower (underlay) device.
    pub lower: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: LinkKind,
    pub mtu: u32,
    pub mac: Option<Vec<u8>>,
    pub up: bool,
    /// Index of the bridge this link is a port of.
    pub master: Option<u32>,
}

/// An IPv4 address on a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    pub index: u32,
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

/// A berth route: `dst/prefix via gateway dev oif onlink proto 213`, main table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub oif: u32,
}

/// An IPv4 neighbour entry on a link.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Neighbour {
    pub index: u32,
    pub ip: Ipv4Addr,
    pub mac: Vec<u8>,
    pub permanent: bool,
}

/// A forwarding-database entry of a VXLAN device: MAC -> remote VTEP.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fdb {
    pub index: u32,
    pub mac: Vec<u8>,
    pub dst: Option<Ipv4Addr>,
    pub permanent: bool,
}

/// A VXLAN device to create: unicast only, learning off, no L2/L3 miss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanSpec {
    pub name: String,
    pub vni: u32,
    /// UDP port (the cluster's, see `NetworkPlan::port`).
    pub port: u16,
    pub local: Ipv4Addr,
    pub lower: u32,
    pub mtu: u32,
    pub mac: [u8; 6],
}

/// Changes to an existing link; `None` leaves an attribute as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkUpdate {
    pub name: Option<String>,
    pub mtu: Option<u32>,
    pub mac: Option<Vec<u8>>,
    pub up: bool,
    pub master: Option<u32>,
}

type R<T> = Result<T, NetworkError>;

/// Netlink as the overlay uses it. Dumps return IPv4 objects only; `routes`
/// returns berth's routes only (protocol [`ROUTE_PROTOCOL`], main table).
/// Writes use replace semantics where the kernel has them.
pub trait Netlink: Send + Sync {
    fn links(&self) -> impl Future<Output = R<Vec<Link>>> + Send;
    /// One link by name (None: there is none), without a dump: attaches ask
    /// for their own devices side by side, however many links the host has.
    fn link(&self, name: &str) -> impl Future<Output = R<Option<Link>>> + Send;
    fn addresses(&self) -> impl Future<Output = R<Vec<Address>>> + Send;
    fn routes(&self) -> impl Future<Output = R<Vec<Route>>> + Send;
    fn neighbours(&self, index: u32) -> impl Future<Output = R<Vec<Neighbour>>> + Send;
    fn fdb(&self, index: u32) -> impl Future<Output = R<Vec<Fdb>>> + Send;

    fn add_bridge(&self, name: &str, mtu: u32) -> impl Future<Output = R<()>> + Send;
    fn add_vxlan(&self, spec: &VxlanSpec) -> impl Future<Output = R<()>> + Send;
    /// A veth pair, both ends with `mtu`; the peer is born in the namespace of `peer_netns` when
    /// given (moving a device there later waits for an RCU grace period, ~20 ms).
    fn add_veth(
        &self,
        name: &str,
        peer: &str,
        mtu: u32,
        peer_netns: Option<RawFd>,
    ) -> impl Future<Output = R<()>> + Send;
    fn set_link(&self, index: u32, update: &LinkUpdate) -> impl Future<Output = R<()>> + Send;
    /// Hairpin mode on a bridge port: frames may leave by the port they came
    /// in (a container reaching itself through a service VIP).
    fn set_hairpin(&self, index: u32, on: bool) -> impl Future<Output = R<()>> + Send;
    fn del_link(&self, index: u32) -> impl Future<Output = R<()>> + Send;
    fn add_address(&self, address: Address) -> impl Future<Output = R<()>> + Send;
    fn del_address(&self, address: Address) -> impl Future<Output = R<()>> + Send;
    fn replace_route(&self, route: Route) -> impl Future<Output = R<()>> + Send;
    fn del_route(&self, route: Route) -> impl Future<Output = R<()>> + Send;
    fn replace_neighbour(&self, neighbour: &Neighbour) -> impl Future<Output = R<()>> + Send;
    fn del_neighbour(&self, neighbour: &Neighbour) -> impl Future<Output = R<()>> + Send;
    fn replace_fdb(&self, fdb: &Fdb) -> impl Future<Output = R<()>> + Send;
    fn del_fdb(&self, fdb: &Fdb) -> impl Future<Output = R<()>> + Send;
    /// Turns on IPv4 forwarding (the host routes between its bridges and the
    /// VXLAN devices); returns whether it was off.
    fn enable_forwarding(&self) -> impl Future<Output = R<bool>> + Send;
}

/// The real thing: one rtnetlink connection, in the namespace of the thread that
/// created it.
#[derive(Clone)]
pub struct RtNetlink {
    handle: Handle,
    /// `/proc/sys/net/ipv4/ip_forward`, opened by the creating thread: the
    /// sysctl belongs to the namespace it was opened in.
    forward: Arc<Mutex<File>>,
    /// The kernel runs one dump at a time per netlink socket and refuses a
    /// second with EBUSY ("Device or resource busy"): the dumps of this
    /// connection (shared by its clones) take turns.
    dumps: Arc<tokio::sync::Mutex<()>>,
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

impl RtNetlink {
    /// Opens a connection in the calling thread's network namespace; must be
    /// called inside a tokio runtime (the connection runs as a task on it).
    pub fn new() -> R<RtNetlink> {
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(NetworkError::io("failed to open a netlink socket"))?;
        let forward = OpenOptions::new()
            .read(true)
            .write(true)
            .open(IP_FORWARD)
            .map_err(NetworkError::io(format!("failed to open {IP_FORWARD}")))?;
        tokio::spawn(connection);
        Ok(RtNetlink {
            handle,
            forward: Arc::new(Mutex::new(forward)),
            dumps: Arc::new(tokio::sync::Mutex::new(())),
        })
    }
}

fn parse_link(msg: LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        kind: LinkKind::Other,
        mtu: 0,
        mac: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        master: None,
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.name = name,
            LinkAttribute::Mtu(mtu) => link.mtu = mtu,
            LinkAttribute::Address(mac) => link.mac = Some(mac),
            LinkAttribute::Controller(master) => link.master = Some(master),
            LinkAttribute::LinkInfo(infos) => link.kind = parse_kind(infos),
            _ => {}
        }
    }
    link
}

fn parse_kind(infos: Vec<LinkInfo>) -> LinkKind {
    let mut kind = LinkKind::Other;
    let mut vxlan = VxlanInfo {
        vni: 0,
        local: None,
        port: 0,
        learning: false,
        lower: None,
    };
    for info in infos {
        match info {
            LinkInfo::Kind(InfoKind::Bridge) => kind = LinkKind::Bridge,
            LinkInfo::Kind(InfoKind::Veth) => kind = LinkKind::Veth,
            LinkInfo::Kind(InfoKind::Vxlan) => kind = LinkKind::Vxlan(vxlan.clone()),
            LinkInfo::Data(InfoData::Vxlan(data)) => {
                for d in data {
                    match d {
                        InfoVxlan::Id(id) => vxlan.vni = id,
                        InfoVxlan::Local(ip) => vxlan.local = Some(ip),
                        InfoVxlan::Port(port) => vxlan.port = port,
                        InfoVxlan::Learning(on) => vxlan.learning = on,
                        InfoVxlan::Link(lower) => vxlan.lower = Some(lower),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let LinkKind::Vxlan(_) = kind {
        kind = LinkKind::Vxlan(vxlan);
    }
    kind
}

fn parse_address(msg: AddressMessage) -> Option<Address> {
    if msg.header.family != AddressFamily::Inet {
        return None;
    }
    let mut local = None;
    let mut address = None;
    for attr in msg.attributes {
        match attr {
            AddressAttribute::Local(IpAddr::V4(ip)) => local = Some(ip),
            AddressAttribute::Address(IpAddr::V4(ip)) => address = Some(ip),
            _ => {}
        }
    }
    Some(Address {
        index: msg.header.index,
        addr: local.or(address)?,
        prefix: msg.header.prefix_len,
    })
}

const RT_TABLE_MAIN: u32 = 254;

fn parse_route(msg: RouteMessage) -> Option<Route> {
    if msg.header.address_family != AddressFamily::Inet
        || msg.header.protocol != RouteProtocol::from(ROUTE_PROTOCOL)
        || msg.header.kind != RouteType::Unicast
    {
        return None;
    }
    let mut table = u32::from(msg.header.table);
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut oif = None;
    for attr in msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = t,
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = ip,
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(ip),
            RouteAttribute::Oif(index) => oif = Some(index),
            _ => {}
        }
    }
    if table != RT_TABLE_MAIN {
        return None;
    }
    Some(Route {
        dst,
        prefix: msg.header.destination_prefix_length,
        gateway: gateway?,
        oif: oif?,
    })
}

fn route_message(route: Route) -> RouteMessage {
    let mut msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(route.dst, route.prefix)
        .gateway(route.gateway)
        .output_interface(route.oif)
        .protocol(RouteProtocol::from(ROUTE_PROTOCOL))
        .onlink()
        .build();
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg
}

fn neighbour_message(n: &Neighbour) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.ifindex = n.index;
    msg.header.state = NeighbourState::Permanent;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            n.ip,
        )));
    msg
}

fn fdb_message(f: &Fdb) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = f.index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.flags = NeighbourFlags::Own;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(f.mac.clone()));
    if let Some(dst) = f.dst {
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)));
    }
    msg
}

impl Netlink for RtNetlink {
    async fn links(&self) -> R<Vec<Link>> {
        let _turn = self.dumps.lock().await;
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(NetworkError::netlink("dump links"))?;
        Ok(msgs.into_iter().map(parse_link).collect())
    }

    async fn link(&self, name: &str) -> R<Option<Link>> {
        let found: Result<Vec<LinkMessage>, _> = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_collect()
            .await;
        match found.map_err(NetworkError::netlink(format!("get link {name}"))) {
            Ok(msgs) => Ok(msgs.into_iter().map(parse_link).next()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn addresses(&self) -> R<Vec<Address>> {
        let _turn = self.dumps.lock().await;
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(NetworkError::netlink("dump addresses"))?;
        Ok(msgs.into_iter().filter_map(parse_address).collect())
    }

    async fn routes(&self) -> R<Vec<Route>> {
        let _turn = self.dumps.lock().await;
        let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let msgs: Vec<RouteMessage> = self
            .handle
            .route()
            .get(filter)
            .execute()
            .try_collect()
            .await
            .map_err(NetworkError::netlink("dump routes"))?;
        Ok(msgs.into_iter().filter_map(parse_route).collect())
    }

    async fn neighbours(&self, index: u32) -> R<Vec<Neighbour>> {
        let _turn = self.dumps.lock().await;
        let msgs: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute()
            .try_collect()
            .await
            .map_err(NetworkError::netlink(format!(
                "dump neighbours of link {index}"
            )))?;
        Ok(msgs
            .into_iter()
            .filter(|m| m.header.ifindex == index && m.header.family == AddressFamily::Inet)
            .filter_map(|m| {
                let mut ip = None;
                let mut mac = Vec::new();
                for attr in &m.attributes {
                    match attr {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                            ip = Some(Ipv4Addr::from(a.octets()))
                        }
                        NeighbourAttribute::LinkLayerAddress(l) => mac = l.clone(),
                        _ => {}
                    }
                }
                Some(Neighbour {
                    index,
                    ip: ip?,
                    mac,
                    permanent: m.header.state == NeighbourState::Permanent,
                })
            })
            .collect())
    }

    async fn fdb(&self, index: u32) -> R<Vec<Fdb>> {
        let _turn = self.dumps.lock().await;
        let msgs: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute()
            .try_collect()
            .await
            .map_err(NetworkError::netlink(format!("dump fdb of link {index}")))?;
        Ok(msgs
            .into_iter()
            .filter(|m| m.header.ifindex == index && m.header.family == AddressFamily::Bridge)
            .filter_map(|m| {
                let mut mac = None;
                let mut dst = None;
                for attr in &m.attributes {
                    match attr {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                            dst = Some(Ipv4Addr::from(a.octets()))
                        }
                        // In AF_BRIDGE messages the parser cannot tell the
                        // destination's family: 4 raw bytes are an IPv4 VTEP.
                        NeighbourAttribute::Destination(NeighbourAddress::Other(raw)) => {
                            dst = <[u8; 4]>::try_from(raw.as_slice()).ok().map(Ipv4Addr::from)
                        }
                        NeighbourAttribute::LinkLayerAddress(l) => mac = Some(l.clone()),
                        _ => {}
                    }
                }
                Some(Fdb {
                    index,
                    mac: mac?,
                    dst,
                    permanent: m.header.state == NeighbourState::Permanent,
                })
            })
            .collect())
    }

    async fn add_bridge(&self, name: &str, mtu: u32) -> R<()> {
        self.handle
            .link()
            .add(LinkBridge::new(name).mtu(mtu).build())
            .execute()
            .await
            .map_err(NetworkError::netlink(format!("add bridge {name}")))
    }

    async fn add_vxlan(&self, spec: &VxlanSpec) -> R<()> {
        let msg = LinkVxlan::new(&spec.name, spec.vni)
            .dev(spec.lower)
            .local(spec.local)
            .port(spec.port)
            .learning(false)
            .l2miss(false)
            .l3miss(false)
            .proxy(false)
            .mtu(spec.mtu)
            .address(spec.mac.to_vec())
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|source| vxlan_error(spec, source))
    }

    async fn add_veth(&self, name: &str, peer: &str, mtu: u32, peer_netns: Option<RawFd>) -> R<()> {
        let mut peer_link = LinkUnspec::new_with_name(peer).mtu(mtu);
        if let Some(fd) = peer_netns {
            peer_link = peer_link.setns_by_fd(fd);
        }
        // Our peer message in place of the name-only one `LinkVeth` builds.
        let message = LinkVeth::new(name, peer)
            .mtu(mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_link.build())))
            .build();
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(NetworkError::netlink(format!(
                "add veth {name} (peer {peer})"
            )))
    }

    async fn set_link(&self, index: u32, update: &LinkUpdate) -> R<()> {
        let mut b = LinkUnspec::new_with_index(index);
        if let Some(name) = &update.name {
            b = b.name(name.clone());
        }
        if let Some(mtu) = update.mtu {
            b = b.mtu(mtu);
        }
        if let Some(mac) = &update.mac {
            b = b.address(mac.clone());
        }
        if update.up {
            b = b.up();
        }
        if let Some(master) = update.master {
            b = b.controller(master);
        }
        self.handle
            .link()
            .set(b.build())
            .execute()
            .await
            .map_err(NetworkError::netlink(format!(
                "set link {index} ({update:?})"
            )))
    }

    async fn set_hairpin(&self, index: u32, on: bool) -> R<()> {
        self.handle
            .link()
            .set_port(LinkBridgePort::new(index).hairpin(on).build())
            .execute()
            .await
            .map_err(NetworkError::netlink(format!(
                "set hairpin {on} on bridge port {index}"
            )))
    }

    async fn del_link(&self, index: u32) -> R<()> {
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(NetworkError::netlink(format!("delete link {index}")))
    }

    async fn add_address(&self, a: Address) -> R<()> {
        self.handle
            .address()
            .add(a.index, IpAddr::V4(a.addr), a.prefix)
            .replace()
            .execute()
            .await
            .map_err(NetworkError::netlink(format!(
                "add address {}/{} to link {}",
                a.addr, a.prefix, a.index
            )))
    }

    async fn del_address(&self, a: Address) -> R<()> {
        let msg = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(a.index)
            .address(a.addr, a.prefix)
            .build();
        self.handle
            .address()
            .del(msg)
            .execute()
            .await
            .map_err(NetworkError::netlink(format!(
                "delete address {}/{} from link {}",
                a.addr, a.prefix, a.index
            )))
    }

    async fn replace_route(&self, route: Route) -> R<()> {
        self.handle
            .route()
            .add(route_message(route))
            .replace()
            .execute()
            .await
            .map_err(NetworkError::netlink(format!(
                "replace route {}/{} via {} dev {}",
                route.dst, route.prefix, route.gateway, route.oif
            )))
    }

    async fn del_route(&self, route: Route) -> R<()> {
        self.handle
            .route()
            .del(route_message(route))
            .execute()
            .await
            .map_err(NetworkError::netlink(format!(
                "delete route {}/{} via {} dev {}",
                route.dst, route.prefix, route.gateway, route.oif
            )))
    }

    async fn replace_neighbour(&self, n: &Neighbour) -> R<()> {
        self.handle
            .neighbours()
            .add(n.index, IpAddr::V4(n.ip))
            .link_layer_address(&n.mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(NetworkError::netlink(format!(
                "replace neighbour {} lladdr {} dev {}",
                n.ip,
                format_mac(&n.mac),
                n.index
            )))
    }

    async fn del_neighbour(&self, n: &Neighbour) -> R<()> {
        self.handle
            .neighbours()
            .del(neighbour_message(n))
            .execute()
            .await
            .map_err(NetworkError::netlink(format!(
                "delete neighbour {} dev {}",
                n.ip, n.index
            )))
    }

    async fn replace_fdb(&self, f: &Fdb) -> R<()> {
        let mut req = self
            .handle
            .neighbours()
            .add_bridge(f.index, &f.mac)
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent);
        if let Some(dst) = f.dst {
            req = req.destination(IpAddr::V4(dst));
        }
        req.replace()
            .execute()
            .await
            .map_err(NetworkError::netlink(format!(
                "replace fdb {} dst {:?} dev {}",
                format_mac(&f.mac),
                f.dst,
                f.index
            )))
    }

    async fn del_fdb(&self, f: &Fdb) -> R<()> {
        self.handle
            .neighbours()
            .del(fdb_message(f))
            .execute()
            .await
            .map_err(NetworkError::netlink(format!(
                "delete fdb {} dst {:?} dev {}",
                format_mac(&f.mac),
                f.dst,
                f.index
            )))
    }

    async fn enable_forwarding(&self) -> R<bool> {
        let io = NetworkError::io(format!("failed to read or write {IP_FORWARD}"));
        let mut file = self
            .forward
            .lock()
            .map_err(|_| NetworkError::Kernel(format!("{IP_FORWARD}: lock poisoned")))?;
        let mut value = String::new();
        let result = (|| -> std::io::Result<bool> {
            file.seek(SeekFrom::Start(0))?;
            file.read_to_string(&mut value)?;
            if value.trim() == "1" {
                return Ok(false);
            }
            file.seek(SeekFrom::Start(0))?;
            file.write_all(b"1\n")?;
            Ok(true)
        })();
        result.map_err(io)
    }
}

/// A refused VXLAN device: a conflict with another device or program when the
/// kernel says so (EEXIST: the VNI on that port is taken; EADDRINUSE: the UDP
/// port is), else a plain netlink error.
fn vxlan_error(spec: &VxlanSpec, source: rtnetlink::Error) -> NetworkError {
    let errno = match &source {
        rtnetlink::Error::NetlinkError(msg) => msg.raw_code().checked_neg(),
        _ => None,
    };
    match errno {
        Some(libc::EEXIST) => NetworkError::VxlanConflict(format!(
            "UDP {} VNI {} is used by another VXLAN device",
            spec.port, spec.vni
        )),
        Some(libc::EADDRINUSE) => {
            NetworkError::VxlanConflict(format!("UDP {} is held by another program", spec.port))
        }
        _ => NetworkError::Netlink {
            what: format!(
                "add vxlan {} (vni {}, port {}, local {})",
                spec.name, spec.vni, spec.port, spec.local
            ),
            source,
        },
    }
}
