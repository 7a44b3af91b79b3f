//! Probes for what crosses a network: don't-fragment datagrams of an exact size
//! between two network namespaces.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::ns::in_netns;

/// Sets don't-fragment on a socket (IP_PMTUDISC_DO): a datagram larger than the
/// path MTU fails instead of being split.
pub fn dont_fragment(sock: &UdpSocket) -> Result<()> {
    let on: libc::c_int = libc::IP_PMTUDISC_DO;
    // SAFETY: a valid socket fd and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!(
            "setsockopt IP_MTU_DISCOVER: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Sends a `payload`-byte UDP datagram with don't-fragment from the namespace
/// `from` to `to_ip` (a socket bound in namespace `to`) until one arrives whole
/// (the first may wait for ARP); fails after a few tries.
pub fn df_probe(from: &File, to: &File, to_ip: Ipv4Addr, payload: usize) -> Result<()> {
    let port = 7199;
    let rx = in_netns(to, move || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))??;
    rx.set_read_timeout(Some(Duration::from_millis(300)))?;
    let tx = in_netns(from, || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))??;
    dont_fragment(&tx)?;
    let data = vec![0x5au8; payload];
    let mut buf = vec![0u8; 65536];
    let dst = SocketAddr::from((to_ip, port));
    for _ in 0..10 {
        tx.send_to(&data, dst)
            .with_context(|| format!("send {payload} bytes (DF) to {dst}"))?;
        if let Ok((n, _)) = rx.recv_from(&mut buf) {
            if n == payload {
                return Ok(());
            }
            bail!("got {n} bytes, want {payload}");
        }
    }
    bail!("{payload} bytes (DF) never reached {dst}")
}
