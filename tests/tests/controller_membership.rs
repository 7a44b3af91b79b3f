//! Membership changes and catch-up by snapshot, on real controller processes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use berth_testhost::controllers::{self, Controllers};
use berth_testhost::wait_until;

/// Writes `w-N` keys through the given members until stopped; returns the keys
/// whose creation was acknowledged.
fn start_writer(
    c: &Controllers,
    through: Vec<String>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    let security = c.security();
    c.runtime().spawn(async move {
        let mut acked = Vec::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let addr = &through[i as usize % through.len()];
            let key = format!("w-{i}");
            if let Ok(mut client) = controllers::connect(addr, &security).await
                && controllers::create(&mut client, &key, "v").await.is_ok()
            {
                acked.push(key);
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        acked
    })
}

#[test]
fn members_join_leave_and_a_wiped_member_rejoins_while_writes_run() -> Result<()> {
    let mut c = Controllers::start_with("membership", 3, 2, &[])?;
    let stop = Arc::new(AtomicBool::new(false));
    let through = (0..3).map(|h| c.address(h)).collect();
    let writer = start_writer(&c, through, stop.clone());

    // A 4th and a 5th member join (through different members) and become voters.
    c.spawn(3, Some(1))?;
    c.wait_voters_at(0, 4)?;
    c.spawn(4, Some(2))?;
    c.wait_voters_at(0, 5)?;

    // Remove h2: it leaves the voter set and stops by itself.
    let h2_id = c.status(1)?.member_id;
    let leader = c.wait_leader(Duration::from_secs(10))?;
    let leader_addr = c.address(leader);
    let security = c.security();
    c.run(async move {
        let mut client = controllers::connect(&leader_addr, &security).await?;
        client
            .remove_member(berth_proto::v1::RemoveMemberRequest { id: h2_id })
            .await
            .context("remove member")?;
        anyhow::Ok(())
    })?;
    c.forget(1);
    c.wait_voters_at(0, 4)?;
    wait_until(
        "the removed member to stop",
        Duration::from_secs(10),
        || (!c.is_running(1)).then_some(()),
    )?;
    assert!(
        c.proc(1)?.log().contains("was removed from the cluster"),
        "the removed member did not say why it stopped"
    );

    // Wipe h2 and let it join again under a new id.
    c.wipe(1)?;
    c.spawn(1, Some(0))?;
    c.wait_voters_at(0, 5)?;
    let new_id = c.status(1)?.member_id;
    assert_ne!(new_id, h2_id, "a wiped member must rejoin under a new id");

    stop.store(true, Ordering::Relaxed);
    let acked = c.runtime().block_on(writer)?;
    assert!(
        acked.len() >= 5,
        "the writer made too little progress: {}",
        acked.len()
    );
    for host in c.members().to_vec() {
        wait_until(
            "the member to have every acknowledged write",
            Duration::from_secs(15),
            || {
                acked
                    .iter()
                    .all(|k| c.read_local(host, k).ok().flatten().is_some())
                    .then_some(())
            },
        )?;
    }
    Ok(())
}

#[test]
fn a_member_far_behind_catches_up_by_a_snapshot_larger_than_4_mib() -> Result<()> {
    let mut c = Controllers::start_with("snapshot", 3, 0, &["--snapshot-entries", "20"])?;
    let leader = c.wait_leader(Duration::from_secs(10))?;
    let behind = (leader + 1) % 3;
    c.kill(behind)?;
    // 60 configs of 100 KiB: ~6 MiB of state, and far more entries than the log keeps.
    let blob = "x".repeat(100 * 1024);
    for i in 0..60 {
        c.create(leader, &format!("big-{i}"), &format!("{i}-{blob}"))?;
    }
    c.restart(behind)?;
    wait_until(
        "the lagging member to catch up",
        Duration::from_secs(30),
        || {
            (0..60)
                .all(|i| {
                    c.read_local(behind, &format!("big-{i}"))
                        .ok()
                        .flatten()
                        .is_some_and(|v| v.starts_with(&format!("{i}-")))
                })
                .then_some(())
        },
    )?;
    let log = c.proc(behind)?.log();
    let snapshot_line = log
        .lines()
        .rfind(|l| l.contains("received a snapshot"))
        .context("the member caught up without a snapshot")?;
    let bytes: usize = snapshot_line
        .split("bytes=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .context("snapshot size in the log")?;
    assert!(bytes > 4 * 1024 * 1024, "snapshot was only {bytes} bytes");
    Ok(())
}

#[test]
fn the_cli_shows_members_roles_and_the_leader_as_json() -> Result<()> {
    let c = Controllers::start("cli_status", 3)?;
    let leader = c.wait_leader(Duration::from_secs(10))?;
    let leader_id = c.status(leader)?.member_id;
    let berth = berth_testhost::bin_path("berth");
    let addr = c.address(1);
    let tls_dir = c.admin_dir();
    let out = c.net.host(c.client_host()).run(
        berth.to_str().unwrap_or_default(),
        &[
            "--controller",
            &addr,
            "--tls-dir",
            tls_dir.to_str().unwrap_or_default(),
            "cluster",
            "status",
            "--format",
            "json",
        ],
    )?;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(status["leader"].as_u64(), Some(leader_id));
    assert!(status["term"].as_u64().unwrap_or(0) >= 1);
    let members = status["members"].as_array().context("members")?;
    assert_eq!(members.len(), 3);
    let leaders: Vec<_> = members.iter().filter(|m| m["role"] == "leader").collect();
    assert_eq!(leaders.len(), 1);
    assert_eq!(leaders[0]["id"].as_u64(), Some(leader_id));
    for m in members {
        assert!(
            m["address"].as_str().is_some_and(|a| a.ends_with(":7400")),
            "{m}"
        );
        assert!(m["role"] == "leader" || m["role"] == "follower", "{m}");
    }
    Ok(())
}

#[test]
fn a_watch_replays_from_a_revision_and_follows_live_changes() -> Result<()> {
    let c = Controllers::start("watch", 3)?;
    let leader = c.wait_leader(Duration::from_secs(10))?;
    c.create(leader, "w1", "a")?;
    c.create(leader, "w2", "b")?;
    // Watch through a follower, from before w2 was created.
    let follower = (leader + 1) % 3;
    let addr = c.address(follower);
    let leader_addr = c.address(leader);
    let security = c.security();
    c.run(async move {
        let mut client = controllers::connect(&addr, &security).await?;
        let first = client
            .get_config(berth_proto::v1::GetConfigRequest {
                config: "w1".into(),
                stale: false,
            })
            .await?
            .into_inner();
        let mut stream = client
            .watch(berth_proto::v1::WatchRequest {
                from_revision: first.version,
                kinds: vec![berth_proto::v1::ObjectKind::Config as i32],
            })
            .await?
            .into_inner();
        let mut writer = controllers::connect(&leader_addr, &security).await?;
        assert_eq!(
            controllers::write(&mut writer, "w1", "changed").await,
            controllers::Outcome::Ok
        );
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let event = tokio::time::timeout(Duration::from_secs(5), stream.message())
                .await
                .context("watch event timed out")??
                .context("watch ended")?;
            if let Some(berth_proto::v1::watch_event::Object::Config(cfg)) = event.object {
                seen.push((cfg.name, String::from_utf8_lossy(&cfg.data).to_string()));
            }
        }
        // The replayed creation of w2, then the live update of w1, in order.
        assert_eq!(seen[0], ("w2".to_string(), "b".to_string()));
        assert_eq!(seen[1], ("w1".to_string(), "changed".to_string()));
        anyhow::Ok(())
    })
}
