//! Stale UDP flows. Conntrack keeps a UDP "connection" on the backend its first
//! packet was DNATed to for as long as packets keep coming (each one refreshes
//! the entry), so a client that reuses its socket would talk to a removed
//! backend forever: kube-proxy's classic stale-UDP bug. When backends leave the
//! plan, their UDP flows are deleted; the next packet is balanced afresh. (TCP
//! needs nothing: a gone backend resets or times out, and the client
//! reconnects through the rules.)

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;

use super::LbPlan;
use crate::dataplane::error::NetworkError;

fn backends(plan: &LbPlan) -> BTreeSet<Ipv4Addr> {
    plan.vips
        .iter()
        .flat_map(|v| &v.backends)
        .chain(plan.published.iter().flat_map(|p| &p.backends))
        .copied()
        .collect()
}

/// Backends `before` balanced to that `after` no longer does.
pub fn removed_backends(before: &LbPlan, after: &LbPlan) -> Vec<Ipv4Addr> {
    let now = backends(after);
    backends(before)
        .into_iter()
        .filter(|b| !now.contains(b))
        .collect()
}

/// Deletes the UDP conntrack entries whose replies come from `backend` (the
/// `conntrack` tool; it exits 1 when there was nothing to delete).
pub fn forget_udp_flows(backend: Ipv4Addr) -> Result<(), NetworkError> {
    let ip = backend.to_string();
    let out = Command::new("conntrack")
        .args(["-D", "-p", "udp", "--reply-src", &ip])
        .output()
        .map_err(NetworkError::io(
            "cannot run conntrack (Debian package conntrack)",
        ))?;
    match out.status.code() {
        Some(0) | Some(1) => Ok(()),
        _ => Err(NetworkError::Nft {
            what: format!("conntrack -D -p udp --reply-src {ip}"),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::lb::{Protocol, PublishedRule, VipRule};

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 96, 0, last)
    }

    fn plan(vip: &[u8], published: &[u8]) -> LbPlan {
        LbPlan {
            networks: vec![1],
            vips: vec![VipRule {
                service: "web".into(),
                vni: 1,
                vip: Ipv4Addr::new(10, 96, 240, 1),
                backends: vip.iter().map(|&l| ip(l)).collect(),
            }],
            published: vec![PublishedRule {
                service: "dns".into(),
                protocol: Protocol::Udp,
                published_port: 53,
                target_port: 53,
                backends: published.iter().map(|&l| ip(l)).collect(),
            }],
        }
    }

    #[test]
    fn only_backends_gone_from_every_rule_are_removed() {
        let before = plan(&[2, 3], &[4, 5]);
        assert!(removed_backends(&before, &plan(&[2, 3], &[4, 5])).is_empty());
        assert_eq!(removed_backends(&before, &plan(&[2], &[3, 5])), vec![ip(4)]);
        assert_eq!(
            removed_backends(&before, &LbPlan::default()),
            vec![ip(2), ip(3), ip(4), ip(5)]
        );
    }
}
