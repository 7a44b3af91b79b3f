//! Forwarding past a DROP policy: Docker (and many host firewalls) set the
//! iptables FORWARD policy to DROP. An accept in berth's own nftables table
//! cannot override that (a packet must pass every base chain of its hook), so
//! while the host has overlay networks and the FORWARD policy is DROP, the
//! agent puts four accepts at the head of the FORWARD chain, for packets in or
//! out of its bridges (`bb-*`) and VXLAN devices (`bv-*`). Isolation between
//! berth's networks is still dropped in berth's table (a drop anywhere wins).
//!
//! The rules go in through the `iptables` binary, not nft, so they are in the
//! form iptables-nft (and Docker after it) reads back; each carries the
//! comment `berth`, which is how they are found again and removed when the
//! host has no overlay network left.

use tracing::{info, warn};

use super::error::NetworkError;

/// The comment on berth's rules.
const COMMENT: &str = "berth";

/// (direction flag, device pattern) of each accept.
const ACCEPTS: [(&str, &str); 4] = [
    ("-i", "bb-+"),
    ("-o", "bb-+"),
    ("-i", "bv-+"),
    ("-o", "bv-+"),
];

/// One of berth's rules as `iptables -S` prints it (after `-A FORWARD `).
fn rule(flag: &str, pattern: &str) -> Vec<String> {
    [
        flag,
        pattern,
        "-m",
        "comment",
        "--comment",
        COMMENT,
        "-j",
        "ACCEPT",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The iptables commands (arguments after `iptables`) that bring the FORWARD
/// chain, as `iptables -S FORWARD` printed it, in line: berth's accepts
/// present when `wanted` and the policy drops, else absent.
pub fn commands(listing: &str, wanted: bool) -> Vec<Vec<String>> {
    let policy_drops = listing
        .lines()
        .any(|l| l.trim() == "-P FORWARD DROP" || l.trim() == "-P FORWARD REJECT");
    let present: Vec<Vec<String>> = listing
        .lines()
        .filter_map(|l| l.trim().strip_prefix("-A FORWARD "))
        .map(|rest| rest.split_whitespace().map(str::to_string).collect())
        .collect();
    let mut out = Vec::new();
    for (flag, pattern) in ACCEPTS {
        let ours = rule(flag, pattern);
        let has = present.contains(&ours);
        if wanted && policy_drops && !has {
            out.push(
                ["-I", "FORWARD", "1"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain(ours)
                    .collect(),
            );
        } else if !wanted && has {
            out.push(
                ["-D", "FORWARD"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain(ours)
                    .collect(),
            );
        }
    }
    out
}

/// Brings the host's FORWARD chain in line (see [`commands`]). A host without
/// the `iptables` binary has no iptables policy to pass: nothing to do.
pub async fn sync(wanted: bool) -> Result<(), NetworkError> {
    let listing = match run(&["-S", "FORWARD"]).await {
        Ok(listing) => listing,
        Err(RunError::Missing) => return Ok(()),
        Err(RunError::Failed(message)) => {
            return Err(NetworkError::Kernel(format!(
                "iptables -S FORWARD: {message}"
            )));
        }
    };
    for args in commands(&listing, wanted) {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        match run(&refs).await {
            Ok(_) => info!(rule = %args.join(" "), "iptables FORWARD changed for the overlay"),
            Err(RunError::Missing) => return Ok(()),
            Err(RunError::Failed(message)) => {
                warn!(rule = %args.join(" "), %message, "iptables FORWARD change failed");
                return Err(NetworkError::Kernel(format!(
                    "iptables {}: {message}",
                    args.join(" ")
                )));
            }
        }
    }
    Ok(())
}

enum RunError {
    Missing,
    Failed(String),
}

async fn run(args: &[&str]) -> Result<String, RunError> {
    let output = tokio::process::Command::new("iptables")
        // -w: wait for the xtables lock instead of failing beside Docker.
        .arg("-w")
        .args(args)
        .output()
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RunError::Missing,
            _ => RunError::Failed(e.to_string()),
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(RunError::Failed(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER: &str =
        "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-FORWARD\n";

    #[test]
    fn a_dropping_policy_gets_the_four_accepts_at_the_head() {
        let cmds = commands(DOCKER, true);
        assert_eq!(cmds.len(), 4);
        assert_eq!(
            cmds[0].join(" "),
            "-I FORWARD 1 -i bb-+ -m comment --comment berth -j ACCEPT"
        );
        assert_eq!(
            cmds[3].join(" "),
            "-I FORWARD 1 -o bv-+ -m comment --comment berth -j ACCEPT"
        );
    }

    #[test]
    fn present_accepts_are_kept_and_missing_ones_added() {
        let listing = format!(
            "{DOCKER}-A FORWARD -i bb-+ -m comment --comment berth -j ACCEPT\n\
             -A FORWARD -o bb-+ -m comment --comment berth -j ACCEPT\n\
             -A FORWARD -i bv-+ -m comment --comment berth -j ACCEPT\n"
        );
        let cmds = commands(&listing, true);
        assert_eq!(cmds.len(), 1);
        assert_eq!(
            cmds[0].join(" "),
            "-I FORWARD 1 -o bv-+ -m comment --comment berth -j ACCEPT"
        );
    }

    #[test]
    fn an_accepting_policy_needs_nothing_and_no_networks_remove_ours() {
        assert!(commands("-P FORWARD ACCEPT\n", true).is_empty());
        let listing = format!("{DOCKER}-A FORWARD -o bv-+ -m comment --comment berth -j ACCEPT\n");
        let cmds = commands(&listing, false);
        assert_eq!(
            cmds.iter().map(|c| c.join(" ")).collect::<Vec<_>>(),
            vec!["-D FORWARD -o bv-+ -m comment --comment berth -j ACCEPT"]
        );
        assert!(commands(DOCKER, false).is_empty());
    }
}
