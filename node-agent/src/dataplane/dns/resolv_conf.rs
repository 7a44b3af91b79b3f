//! Upstream nameservers from a resolv.conf.

use std::net::{IpAddr, SocketAddr, SocketAddrV6};

/// glibc reads at most three nameservers (MAXNS); we forward to the same ones the
/// host itself would use, no more.
const MAX_NAMESERVERS: usize = 3;

/// Nameservers from a resolv.conf (e.g. the host's /etc/resolv.conf), port 53.
///
/// Takes the `nameserver ADDR` lines in order, IPv4 or IPv6 (a numeric zone
/// `fe80::1%2` is kept; a named one `%eth0` is skipped, we do not resolve
/// interface names), without duplicates, at most three like glibc. Comments
/// (`#`, `;`) and malformed lines are ignored. Loopback servers such as
/// systemd-resolved's 127.0.0.53 are kept: the agent forwards from the host's
/// network namespace, where they are reachable.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next().and_then(parse_nameserver) else {
            continue;
        };
        if !out.contains(&addr) {
            out.push(addr);
        }
        if out.len() == MAX_NAMESERVERS {
            break;
        }
    }
    out
}

fn parse_nameserver(word: &str) -> Option<SocketAddr> {
    if let Some((ip, zone)) = word.split_once('%') {
        let ip = ip.parse().ok()?;
        let zone = zone.parse().ok()?;
        return Some(SocketAddrV6::new(ip, 53, 0, zone).into());
    }
    let ip: IpAddr = word.parse().ok()?;
    Some(SocketAddr::new(ip, 53))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nameservers_in_order() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.2\n\
                    nameserver  2001:db8::1  # v6\n;nameserver 10.9.9.9\n\
                    options ndots:2\nnameserver 10.0.0.2\n";
        let got = upstreams_from_resolv_conf(text);
        let want: Vec<SocketAddr> = vec![
            "10.0.0.2:53".parse().unwrap(),
            "[2001:db8::1]:53".parse().unwrap(),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn keeps_loopback_and_at_most_three() {
        let text = "nameserver 127.0.0.53\nnameserver 10.0.0.1\n\
                    nameserver 10.0.0.2\nnameserver 10.0.0.3\n";
        let got = upstreams_from_resolv_conf(text);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], "127.0.0.53:53".parse::<SocketAddr>().unwrap());
        assert_eq!(got[2], "10.0.0.2:53".parse::<SocketAddr>().unwrap());
    }

    #[test]
    fn zones_and_garbage() {
        let text = "nameserver fe80::1%2\nnameserver fe80::2%eth0\n\
                    nameserver not-an-ip\nnameserver\nnameservers 10.1.1.1\n";
        let got = upstreams_from_resolv_conf(text);
        let want = SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0, 2);
        assert_eq!(got, vec![SocketAddr::V6(want)]);
        assert!(upstreams_from_resolv_conf("").is_empty());
    }
}
