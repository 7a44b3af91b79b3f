//! Certificates close to expiry, in words: for `berth cluster status` and the
//! leader's log. Healthy nodes renew before the window starts (see
//! `berth_pki::renewal`), so each line is a node that should have renewed.

use berth_pki::CertInfo;
use berth_pki::identity::format_ms;
use berth_pki::renewal::WARN_BEFORE_MS;
use berth_proto::v1::Node;

/// A line for each certificate that expires within 30 days (or expired):
/// this controller's own (`own`) and every node's.
pub fn warnings(own: Option<&CertInfo>, nodes: &[Node], now_ms: i64) -> Vec<String> {
    let soon = |not_after: i64| not_after != 0 && not_after - now_ms < WARN_BEFORE_MS;
    let when = |not_after: i64| {
        let at = format_ms(not_after);
        if not_after <= now_ms {
            format!("expired at {at}")
        } else {
            format!("expires at {at}")
        }
    };
    let mut lines = Vec::new();
    if let Some(info) = own.filter(|i| soon(i.not_after_ms)) {
        lines.push(format!(
            "the certificate of controller {} {} (it renews itself; check its log)",
            info.identity.node_id,
            when(info.not_after_ms)
        ));
    }
    for node in nodes.iter().filter(|n| soon(n.cert_not_after_ms)) {
        lines.push(format!(
            "the certificate of node {} {} (is its agent running? a node renews before this \
             warning; an expired node rejoins with `berth-agent --token`)",
            node.name,
            when(node.cert_not_after_ms)
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_certificates_within_thirty_days_are_named() {
        let day = 24 * 3600 * 1000;
        let node = |name: &str, not_after| Node {
            name: name.into(),
            cert_not_after_ms: not_after,
            ..Default::default()
        };
        let now = 1000 * day;
        let nodes = [
            node("fresh", now + 60 * day),
            node("close", now + 10 * day),
            node("gone", now - day),
            node("never-registered", 0),
        ];
        let lines = warnings(None, &nodes, now);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("node close expires at"), "{lines:?}");
        assert!(lines[1].contains("node gone expired at"), "{lines:?}");
    }
}
