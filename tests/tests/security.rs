//! Security end to end: mutual TLS on every channel, join tokens, roles,
//! removed nodes, certificate renewal and expiry. Real controllers, agents and
//! containers on test hosts.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth_pki::{Authority, Bundle, Credentials, Identity, Role, Security, Validity};
use berth_proto::v1::dispatcher_client::DispatcherClient;
use berth_proto::v1::raft_peer_client::RaftPeerClient;
use berth_proto::v1::{ClusterStatusRequest, HeartbeatRequest, JoinRequest};
use berth_testhost::cluster::Cluster;
use berth_testhost::controllers::connect;
use berth_testhost::wait_until;
use tonic::transport::Endpoint;

const CONVERGE: Duration = Duration::from_secs(60);

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Runs the CLI with the bundle in `tls_dir`; it must fail, saying `expected`.
fn refused(cluster: &Cluster, tls_dir: &Path, expected: &str) -> Result<()> {
    let dir = tls_dir.to_string_lossy().to_string();
    let out = cluster.berth_raw(0, &["--tls-dir", &dir, "service", "ls"])?;
    let text = stderr(&out);
    assert!(!out.status.success(), "the API answered with {dir}");
    assert!(
        text.contains(expected),
        "expected {expected:?}, got {text:?}"
    );
    Ok(())
}

/// Waits until the controller on host 0 logged `text`.
fn controller_said(cluster: &mut Cluster, text: &str) -> Result<()> {
    let said = wait_until(
        &format!("the controller to log {text:?}"),
        Duration::from_secs(5),
        || cluster.c.proc(0).ok()?.log().contains(text).then_some(()),
    );
    said.with_context(|| {
        format!(
            "controller log:\n{}",
            cluster.c.proc(0).map(|p| p.log()).unwrap_or_default()
        )
    })
}

fn create(cluster: &Cluster, name: &str, replicas: &str, sleep: &str) -> Result<()> {
    let image = cluster.image.clone();
    cluster.berth(&[
        "service",
        "create",
        "--detach",
        name,
        "--image",
        &image,
        "--replicas",
        replicas,
        "--",
        "sleep",
        sleep,
    ])?;
    Ok(())
}

/// A client of the controller on `host` with `bundle`, bypassing the CLI's own
/// checks: what the server itself says.
fn security_of(bundle: Bundle) -> Result<Security> {
    Ok(Security::Tls(Credentials::new(bundle)?))
}

fn endpoint(address: &str) -> Result<Endpoint> {
    Ok(Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5)))
}

#[test]
fn the_api_refuses_clients_without_the_clusters_credentials() -> Result<()> {
    // Node certificates of seconds: the agent's expires while it is off.
    let mut cluster = Cluster::start_with("sec_clients", 1, 1, 0, &["--cert-expiry", "6s"])?;
    let work = cluster.c.net.workdir().to_path_buf();
    let admin = Bundle::load(&cluster.c.admin_dir())?;
    let cluster_id = admin.info()?.identity.cluster_id;

    // No credentials at all.
    refused(
        &cluster,
        Path::new("/nonexistent-berth-tls"),
        "no TLS credentials in /nonexistent-berth-tls",
    )?;

    // A certificate of another CA (the client trusts the real one).
    let now = berth_pki::now_ms();
    let other = Authority::create("another-cluster", now)?;
    let mut foreign = other.issue_bundle(
        &Identity {
            node_id: "intruder".into(),
            role: Role::Admin,
            cluster_id: cluster_id.clone(),
        },
        Validity::starting_at(now, Duration::from_secs(3600)),
    )?;
    foreign.ca_pem = admin.ca_pem.clone();
    foreign.save(&work.join("foreign"))?;
    refused(
        &cluster,
        &work.join("foreign"),
        "refused our certificate: it is not signed by the cluster's CA",
    )?;
    controller_said(&mut cluster, "UnknownIssuer")?;

    // A tampered certificate: one character of its signature changed.
    let mut tampered = admin.clone();
    let end = tampered
        .cert_pem
        .find("-----END")
        .context("PEM end marker")?;
    let body = &tampered.cert_pem[..end];
    let at = body.trim_end().trim_end_matches('=').len() - 3;
    let old = tampered.cert_pem.as_bytes()[at];
    let new = if old == b'A' { 'B' } else { 'A' };
    tampered
        .cert_pem
        .replace_range(at..at + 1, &new.to_string());
    tampered.save(&work.join("tampered"))?;
    refused(&cluster, &work.join("tampered"), "or it was damaged")?;
    controller_said(&mut cluster, "BadSignature")?;

    // A plain-text client.
    let out = cluster.berth_raw(0, &["--insecure-plaintext", "service", "ls"])?;
    assert!(!out.status.success(), "a plain-text client was served");
    controller_said(&mut cluster, "refused a plain-text gRPC client")?;

    // An agent's certificate can call neither the CLI API nor the Raft peer API.
    let agent_tls = cluster.agent_dir(0).join("tls");
    refused(
        &cluster,
        &agent_tls,
        "a certificate of role agent cannot call this endpoint",
    )?;
    let agent = security_of(Bundle::load(&agent_tls)?)?;
    let address = cluster.c.address(0);
    let denied = cluster.c.run({
        let (agent, address) = (agent.clone(), address.clone());
        async move {
            let channel =
                berth_pki::tls::connect(endpoint(&address)?, &agent, Role::Controller).await?;
            let status = RaftPeerClient::new(channel)
                .join(JoinRequest {
                    address: "198.18.0.99:7400".into(),
                    member_id: 0,
                })
                .await
                .expect_err("an agent joined the Raft group");
            anyhow::Ok(status)
        }
    })?;
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");

    // An agent heartbeats only for its own node, on the stream as in a call.
    let other = cluster.c.run({
        let (agent, address) = (agent.clone(), address.clone());
        async move {
            let channel =
                berth_pki::tls::connect(endpoint(&address)?, &agent, Role::Controller).await?;
            let beat = HeartbeatRequest {
                node_id: "not-this-node".into(),
                session_id: "any".into(),
                ..Default::default()
            };
            let mut answers = DispatcherClient::new(channel)
                .heartbeats(tokio_stream::iter([beat]))
                .await?
                .into_inner();
            let status = answers
                .message()
                .await
                .expect_err("a beat for another node was answered");
            anyhow::Ok(status)
        }
    })?;
    assert_eq!(other.code(), tonic::Code::PermissionDenied, "{other:?}");
    assert!(
        other.message().contains("certificate is for node"),
        "{other:?}"
    );

    // An expired certificate: the agent is off past its certificate's expiry.
    cluster.agent(0)?.kill9()?;
    let expiry = Bundle::load(&agent_tls)?.info()?.not_after_ms;
    wait_until(
        "the agent's certificate to expire",
        Duration::from_secs(30),
        || (berth_pki::now_ms() > expiry + 1500).then_some(()),
    )?;
    refused(&cluster, &agent_tls, "expired at")?;
    let expired = security_of(Bundle::load(&agent_tls)?)?;
    // The refusal arrives with the handshake, or at the latest with the first call.
    let said = cluster.c.run(async move {
        let status = match connect(&address, &expired).await {
            Err(err) => {
                let err: &(dyn std::error::Error + 'static) = err.as_ref();
                return anyhow::Ok(
                    berth_pki::explain::tls_failure(err, "the controller")
                        .unwrap_or_else(|| format!("{err}")),
                );
            }
            Ok(mut client) => client
                .cluster_status(ClusterStatusRequest {})
                .await
                .expect_err("an expired certificate was served"),
        };
        anyhow::Ok(
            berth_pki::explain::tls_failure(&status, "the controller")
                .unwrap_or_else(|| status.to_string()),
        )
    })?;
    assert!(said.contains("it has expired"), "{said}");
    Ok(())
}

#[test]
fn join_tokens_admit_agents_and_removed_nodes_are_refused_at_once() -> Result<()> {
    let mut cluster = Cluster::start("sec_tokens", 1, 2, 1)?;
    let work = cluster.c.net.workdir().to_path_buf();
    create(&cluster, "guarded", "2", "3612")?;
    cluster.wait_running("guarded", 2, CONVERGE)?;

    // A malformed token: said so, and nothing is written.
    std::fs::write(work.join("malformed.token"), "SWMTKN-1-not-ours")?;
    cluster.start_agent_with(2, "agent-malformed", Some(&work.join("malformed.token")))?;
    let proc = cluster.agent_proc(2, "agent-malformed")?;
    assert!(!proc.wait_exit(Duration::from_secs(20))?.success());
    assert!(
        proc.log().contains("malformed join token"),
        "{}",
        proc.log()
    );
    assert!(
        !cluster.agent_dir(2).exists(),
        "the agent wrote its data dir"
    );

    // A wrong token.
    let token = std::fs::read_to_string(cluster.c.token_file("agent")?)?;
    let mut wrong = token.trim().to_string();
    let last = wrong.pop().context("empty token")?;
    wrong.push(if last == '0' { '1' } else { '0' });
    std::fs::write(work.join("wrong.token"), &wrong)?;
    cluster.start_agent_with(2, "agent-wrong", Some(&work.join("wrong.token")))?;
    let proc = cluster.agent_proc(2, "agent-wrong")?;
    assert!(!proc.wait_exit(Duration::from_secs(20))?.success());
    assert!(
        proc.log().contains("the join token is not valid"),
        "{}",
        proc.log()
    );

    // A rotated token refuses new joins; nodes that joined before stay.
    std::fs::write(work.join("old.token"), token.trim())?;
    let rotated = cluster.berth(&["cluster", "join-token", "agent", "--rotate", "-q"])?;
    assert_ne!(rotated.trim(), token.trim());
    cluster.start_agent_with(2, "agent-old", Some(&work.join("old.token")))?;
    let proc = cluster.agent_proc(2, "agent-old")?;
    assert!(!proc.wait_exit(Duration::from_secs(20))?.success());
    assert!(
        proc.log().contains("the join token is not valid"),
        "{}",
        proc.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    cluster.wait_nodes_ready(2)?;
    std::fs::write(work.join("new.token"), rotated.trim())?;
    cluster.start_agent_with(2, "agent-new", Some(&work.join("new.token")))?;
    cluster.wait_nodes_ready(3)?;

    // Removing a node that is up needs --force.
    let err = cluster
        .berth(&["node", "rm", "n1"])
        .expect_err("a ready node was removed without --force");
    assert!(format!("{err:#}").contains("--force"), "{err:#}");

    // Removed: its certificate is refused at once, its tasks run elsewhere.
    let n1 = security_of(Bundle::load(&cluster.agent_dir(0).join("tls"))?)?;
    let n1_id = Bundle::load(&cluster.agent_dir(0).join("tls"))?
        .info()?
        .identity
        .node_id;
    cluster.berth(&["node", "rm", "--force", "n1"])?;
    let removed = Instant::now();
    let address = cluster.c.address(0);
    let (refusal, after) = cluster.c.run(async move {
        loop {
            let channel =
                berth_pki::tls::connect(endpoint(&address)?, &n1, Role::Controller).await?;
            let answer = DispatcherClient::new(channel)
                .heartbeat(HeartbeatRequest {
                    node_id: n1_id.clone(),
                    session_id: "any".into(),
                    ..Default::default()
                })
                .await;
            if let Err(status) = answer
                && status.code() == tonic::Code::PermissionDenied
            {
                return anyhow::Ok((status.message().to_string(), removed.elapsed()));
            }
            if removed.elapsed() > Duration::from_secs(10) {
                anyhow::bail!("the removed node was still admitted after 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })?;
    assert!(refusal.contains("was removed"), "{refusal}");
    // Correctness bound: within 1 s, plus 1 s of margin for a loaded machine.
    assert!(
        after < Duration::from_secs(2),
        "refused only {after:?} after the removal"
    );
    wait_until("guarded to run off n1", CONVERGE, || {
        let per_node = cluster.running_per_node("guarded").ok()?;
        (per_node.values().sum::<usize>() == 2 && !per_node.contains_key("n1")).then_some(())
    })?;
    Ok(())
}

/// When the node's certificate expires, as `node ls` shows it.
fn node_cert_expiry(cluster: &Cluster, name: &str) -> Option<String> {
    cluster
        .nodes()
        .ok()?
        .into_iter()
        .find(|n| n["name"] == name)
        .and_then(|n| n["certificate_expires"].as_str().map(str::to_string))
}

#[test]
fn certificates_renew_without_restarting_a_task() -> Result<()> {
    let cluster = Cluster::start_with("sec_renew", 1, 1, 0, &["--cert-expiry", "12s"])?;
    create(&cluster, "steady", "2", "3613")?;
    cluster.wait_running("steady", 2, CONVERGE)?;
    let pids = Cluster::wait_processes("sleep 3613", 2)?;
    let mut tasks: Vec<String> = cluster.ps("steady")?.into_iter().map(|t| t.id).collect();
    tasks.sort();

    // Two renewals of the agent's certificate (each at 50-80 % of 12 s).
    let mut seen = vec![node_cert_expiry(&cluster, "n1").context("n1's expiry")?];
    wait_until("two renewals", Duration::from_secs(45), || {
        let now = node_cert_expiry(&cluster, "n1")?;
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        (seen.len() >= 3).then_some(())
    })?;

    let mut after: Vec<String> = cluster.ps("steady")?.into_iter().map(|t| t.id).collect();
    after.sort();
    assert_eq!(after, tasks, "tasks were replaced");
    assert_eq!(Cluster::processes_matching("sleep 3613"), pids);
    cluster.wait_running("steady", 2, CONVERGE)?;
    let mut c = cluster;
    let log = c.c.proc(0)?.log();
    assert!(
        log.contains("renewed this controller's certificate"),
        "{log}"
    );
    Ok(())
}

#[test]
fn an_agent_whose_certificate_expired_while_off_rejoins_as_itself() -> Result<()> {
    // Down only after a minute: the node is off for less, its task stays.
    let mut cluster = Cluster::start_with(
        "sec_expired",
        1,
        1,
        0,
        &["--cert-expiry", "8s", "--node-down-after", "60"],
    )?;
    create(&cluster, "kept", "1", "3614")?;
    cluster.wait_running("kept", 1, CONVERGE)?;
    let pids = Cluster::wait_processes("sleep 3614", 1)?;
    let tasks: Vec<String> = cluster.ps("kept")?.into_iter().map(|t| t.id).collect();
    let tls = cluster.agent_dir(0).join("tls");
    let node_id = Bundle::load(&tls)?.info()?.identity.node_id;

    cluster.agent(0)?.kill9()?;
    let expiry = Bundle::load(&tls)?.info()?.not_after_ms;
    wait_until("the certificate to expire", Duration::from_secs(30), || {
        (berth_pki::now_ms() > expiry + 1500).then_some(())
    })?;

    // Without a token it says what to do.
    cluster.start_agent_with(0, "agent-no-token", None)?;
    let proc = cluster.agent_proc(0, "agent-no-token")?;
    assert!(!proc.wait_exit(Duration::from_secs(20))?.success());
    assert!(proc.log().contains("--token"), "{}", proc.log());

    // With one it rejoins under its id and keeps its containers.
    let token = cluster.c.token_file("agent")?;
    cluster.start_agent_with(0, "agent-rejoined", Some(&token))?;
    cluster.wait_nodes_ready(1)?;
    assert_eq!(Bundle::load(&tls)?.info()?.identity.node_id, node_id);
    let nodes = cluster.nodes()?;
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0]["id"], node_id.as_str());
    cluster.wait_running("kept", 1, CONVERGE)?;
    let after: Vec<String> = cluster.ps("kept")?.into_iter().map(|t| t.id).collect();
    assert_eq!(after, tasks, "the task was replaced");
    assert_eq!(Cluster::processes_matching("sleep 3614"), pids);
    Ok(())
}

#[test]
fn a_root_ca_rotation_keeps_every_task_running() -> Result<()> {
    let mut cluster = Cluster::start("sec_rotate", 3, 3, 1)?;
    let work = cluster.c.net.workdir().to_path_buf();
    create(&cluster, "steady", "3", "3615")?;
    cluster.wait_running("steady", 3, CONVERGE)?;
    let pids = Cluster::wait_processes("sleep 3615", 3)?;
    let mut tasks: Vec<String> = cluster.ps("steady")?.into_iter().map(|t| t.id).collect();
    tasks.sort();
    let old_token = std::fs::read_to_string(cluster.c.token_file("agent")?)?;
    let old_root = Bundle::load(&cluster.c.admin_dir())?.ca_pem;

    let out = cluster.berth(&["cluster", "ca", "--rotate"])?;
    assert!(out.contains("renewed this CLI's admin bundle"), "{out}");
    cluster.c.reload_admin_credentials()?;
    wait_until("the rotation to finish", Duration::from_secs(60), || {
        let out = cluster.berth(&["cluster", "ca"]).ok()?;
        out.contains("no rotation under way").then_some(())
    })?;
    let status = cluster.c.status(0)?;
    // Every agent and controller ends on the new root alone.
    wait_until(
        "every bundle on the new root",
        Duration::from_secs(30),
        || {
            let mut dirs: Vec<_> = (0..3).map(|i| cluster.agent_dir(i).join("tls")).collect();
            dirs.extend((0..3).map(|h| cluster.c.net.host(h).dir().join("controller/tls")));
            dirs.push(cluster.c.net.host(0).dir().join("controller/admin"));
            dirs.iter()
                .all(|dir| {
                    Bundle::load(dir)
                        .map(|b| b.ca_digest() == status.ca_digest)
                        .unwrap_or(false)
                })
                .then_some(())
        },
    )?;
    let new_root = Bundle::load(&cluster.c.net.host(0).dir().join("controller/tls"))?.ca_pem;
    assert_ne!(new_root, old_root);

    // Nothing was restarted or replaced.
    let mut after: Vec<String> = cluster.ps("steady")?.into_iter().map(|t| t.id).collect();
    after.sort();
    assert_eq!(after, tasks, "tasks were replaced");
    assert_eq!(Cluster::processes_matching("sleep 3615"), pids);
    cluster.wait_nodes_ready(3)?;

    // The old token pinned the old CA; the new one joins.
    std::fs::write(work.join("old.token"), old_token.trim())?;
    cluster.start_agent_with(3, "agent-old", Some(&work.join("old.token")))?;
    let proc = cluster.agent_proc(3, "agent-old")?;
    assert!(!proc.wait_exit(Duration::from_secs(20))?.success());
    assert!(
        proc.log().contains("does not match the join token"),
        "{}",
        proc.log()
    );
    cluster.start_agent(3)?;
    cluster.wait_nodes_ready(4)?;
    Ok(())
}
