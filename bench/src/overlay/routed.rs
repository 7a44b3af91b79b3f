//! Bridge-less ("routed", Calico-style) container attachments built by the
//! benchmark itself, to measure what the overlay would cost without berth's
//! bridge: the host end of the container's veth is no bridge port and has no
//! address; the host routes the container's /32 to it; the container has its
//! address as a /32 and a default route `via <gateway> dev eth0 onlink`, the
//! gateway being an address local to the host (answered by the host end's ARP,
//! `arp_ignore` 0). Between hosts: berth's VXLAN device `bv-<vni>` (its block
//! routes cover the routed containers' addresses), or a VXLAN device of the
//! benchmark's own made like berth's but with other settings fixed at creation
//! (UDP checksum).
//!
//! Bench code only: node-agent's attach is not involved.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};

use super::setup::{Endpoint, OverlayBed, VNI, new_netns};

/// Which VXLAN device carries a routed pair between the hosts.
#[derive(Clone, Copy, Debug)]
pub enum Carrier {
    /// berth's `bv-<VNI>` as reconciled; the containers take addresses in
    /// the hosts' blocks 10.42.(i+1).0/24, whose gateways are on the bridges.
    Berth,
    /// The benchmark's own device `bx-<vni>` (UDP 4789, learning off, static
    /// neighbour + FDB entries, as berth's) with blocks 10.<octet>.(i+1).0/24,
    /// the gateway 10.<octet>.(i+1).1/32 on the device itself.
    Own { vni: u32, octet: u8, udp_csum: bool },
}

impl Carrier {
    fn block_octet(self) -> u8 {
        match self {
            Carrier::Berth => 42,
            Carrier::Own { octet, .. } => octet,
        }
    }

    fn device(self) -> String {
        match self {
            Carrier::Berth => format!("bv-{VNI}"),
            Carrier::Own { vni, .. } => format!("bx-{vni}"),
        }
    }
}

/// The container of a routed pair on host `i`: 10.<octet>.(i+1).<host_byte>.
fn address(carrier: Carrier, i: usize, host_byte: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, carrier.block_octet(), i as u8 + 1, host_byte)
}

fn gateway(carrier: Carrier, i: usize) -> Ipv4Addr {
    address(carrier, i, 1)
}

/// The VTEP MAC of the benchmark's own VXLAN device on host `i`.
fn own_mac(vni: u32, i: usize) -> String {
    format!(
        "02:b5:{:02x}:{:02x}:00:{:02x}",
        vni >> 8 & 0xff,
        vni & 0xff,
        i + 1
    )
}

fn mtu_of(host: &Endpoint, dev: &str) -> Result<u32> {
    let out = host.command("ip", &["-o", "link", "show", dev])?;
    out.split(" mtu ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no MTU for {dev} in {}", host.name))
}

fn run(ep: &Endpoint, cmd: &str) -> Result<()> {
    let args: Vec<&str> = cmd.split_whitespace().collect();
    ep.command(args[0], &args[1..])?;
    Ok(())
}

/// Creates the benchmark's own VXLAN device on both hosts.
fn own_vxlan(bed: &OverlayBed, vni: u32, octet: u8, udp_csum: bool) -> Result<()> {
    let carrier = Carrier::Own {
        vni,
        octet,
        udp_csum,
    };
    let dev = carrier.device();
    for i in 0..2 {
        let (host, other) = (&bed.hosts[i], &bed.hosts[1 - i]);
        let mtu = mtu_of(host, &format!("bv-{VNI}"))?;
        let csum = if udp_csum { "udpcsum" } else { "noudpcsum" };
        run(
            host,
            &format!(
                "ip link add {dev} address {} mtu {mtu} type vxlan id {vni} local {} dev eth0 \
                 dstport 4789 nolearning {csum}",
                own_mac(vni, i),
                host.ip
            ),
        )?;
        run(
            host,
            &format!("ip addr add {}/32 dev {dev}", gateway(carrier, i)),
        )?;
        run(host, &format!("ip link set {dev} up"))?;
        let remote_gw = gateway(carrier, 1 - i);
        let remote_mac = own_mac(vni, 1 - i);
        run(
            host,
            &format!("ip neigh replace {remote_gw} lladdr {remote_mac} dev {dev} nud permanent"),
        )?;
        run(
            host,
            &format!(
                "bridge fdb append {remote_mac} dev {dev} dst {} self permanent",
                other.ip
            ),
        )?;
        run(
            host,
            &format!(
                "ip route replace {}/24 via {remote_gw} dev {dev} onlink",
                address(carrier, 1 - i, 0)
            ),
        )?;
    }
    Ok(())
}

/// Makes one routed container per host over `carrier` and returns them.
/// `tag` (one or two characters) names the host ends `r<tag>-<i>`;
/// `host_byte` is the containers' last address byte.
pub fn routed_pair(
    bed: &OverlayBed,
    carrier: Carrier,
    tag: &str,
    host_byte: u8,
) -> Result<[Endpoint; 2]> {
    if let Carrier::Own {
        vni,
        octet,
        udp_csum,
    } = carrier
    {
        own_vxlan(bed, vni, octet, udp_csum).context("the benchmark's own VXLAN device")?;
    }
    let mut made = Vec::new();
    for i in 0..2 {
        let host = &bed.hosts[i];
        let mtu = mtu_of(host, &carrier.device())?;
        let ip = address(carrier, i, host_byte);
        let container = Endpoint::new(
            format!("routed container {tag} on h{}", i + 1),
            ip,
            new_netns()?,
        );
        let veth = format!("r{tag}-{i}");
        run(
            host,
            &format!(
                "ip link add {veth} mtu {mtu} type veth peer name eth0 netns {}",
                container.ns_path()
            ),
        )?;
        run(host, &format!("ip link set {veth} up"))?;
        run(host, &format!("ip route add {ip}/32 dev {veth}"))?;
        run(&container, "ip link set lo up")?;
        run(&container, "ip link set eth0 up")?;
        run(&container, &format!("ip addr add {ip}/32 dev eth0"))?;
        run(
            &container,
            &format!(
                "ip route add default via {} dev eth0 onlink",
                gateway(carrier, i)
            ),
        )?;
        made.push(container);
    }
    let mut it = made.into_iter();
    Ok([it.next().expect("two"), it.next().expect("two")])
}

/// Sets BIG TCP sizes (`gso_ipv4_max_size`/`gro_ipv4_max_size`, bytes) on the
/// containers' `eth0` and on their host ends `r<tag>-<i>` (by netlink: the
/// machine's iproute2 may predate the attributes).
pub fn big_tcp(bed: &OverlayBed, pair: &[Endpoint; 2], tag: &str, size: u32) -> Result<()> {
    for (i, container) in pair.iter().enumerate() {
        set_big_tcp(container, "eth0", size)?;
        set_big_tcp(&bed.hosts[i], &format!("r{tag}-{i}"), size)?;
    }
    Ok(())
}

fn set_big_tcp(ep: &Endpoint, dev: &str, size: u32) -> Result<()> {
    use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
    let dev = dev.to_owned();
    ep.inside(move || -> Result<()> {
        let name = std::ffi::CString::new(dev.as_str())?;
        // SAFETY: a NUL-terminated name; the call only reads it.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        anyhow::ensure!(index != 0, "no {dev}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection()?;
            tokio::spawn(conn);
            let mut msg = LinkMessage::default();
            msg.header.index = index;
            msg.attributes.push(LinkAttribute::GsoIpv4MaxSize(size));
            msg.attributes.push(LinkAttribute::GroIpv4MaxSize(size));
            handle
                .link()
                .set(msg)
                .execute()
                .await
                .with_context(|| format!("set BIG TCP {size} on {dev}"))
        })
    })?
}

/// A bound, not a candidate design: one container per host as a macvlan
/// (bridge mode) of the benchmark's own VXLAN device, L2 over the overlay (the
/// two containers in 10.<octet>.0.0/16, static neighbour entries for each
/// other and a VXLAN FDB entry per remote container MAC). No veth and no IP
/// forward on either host: what is left of the overlay is the VXLAN encap and
/// decap.
pub fn macvlan_pair(bed: &OverlayBed, vni: u32, octet: u8, host_byte: u8) -> Result<[Endpoint; 2]> {
    let carrier = Carrier::Own {
        vni,
        octet,
        udp_csum: true,
    };
    own_vxlan(bed, vni, octet, true).context("the benchmark's own VXLAN device")?;
    let dev = carrier.device();
    let mac = |i: usize| format!("02:b7:00:00:{:02x}:{host_byte:02x}", i + 1);
    let mut made = Vec::new();
    for i in 0..2 {
        let (host, other) = (&bed.hosts[i], &bed.hosts[1 - i]);
        let ip = address(carrier, i, host_byte);
        let container = Endpoint::new(format!("macvlan container on h{}", i + 1), ip, new_netns()?);
        let slave = format!("mv-{i}");
        run(
            host,
            &format!(
                "ip link add {slave} link {dev} address {} type macvlan mode bridge",
                mac(i)
            ),
        )?;
        run(
            host,
            &format!(
                "bridge fdb append {} dev {dev} dst {} self permanent",
                mac(1 - i),
                other.ip
            ),
        )?;
        run(
            host,
            &format!("ip link set {slave} netns {}", container.ns_path()),
        )?;
        run(&container, &format!("ip link set {slave} name eth0"))?;
        run(&container, "ip link set lo up")?;
        run(&container, "ip link set eth0 up")?;
        run(&container, &format!("ip addr add {ip}/16 dev eth0"))?;
        run(
            &container,
            &format!(
                "ip neigh replace {} lladdr {} dev eth0 nud permanent",
                address(carrier, 1 - i, host_byte),
                mac(1 - i)
            ),
        )?;
        made.push(container);
    }
    let mut it = made.into_iter();
    Ok([it.next().expect("two"), it.next().expect("two")])
}
