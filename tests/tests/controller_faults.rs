//! The controllers' replicated store under faults: real processes on test hosts.

use std::time::Duration;

use anyhow::Result;
use berth_testhost::controllers::{Controllers, Outcome};
use berth_testhost::{Cut, wait_until};

/// Writes keys until one succeeds (through any member), returns its name.
fn write_until_ok(c: &Controllers, through: &[usize], key: &str) -> Result<()> {
    wait_until(
        &format!("a successful write of {key}"),
        Duration::from_secs(15),
        || {
            through
                .iter()
                .any(|h| c.create(*h, key, "v").is_ok())
                .then_some(())
        },
    )
}

#[test]
fn kill9_of_the_leader_loses_no_acknowledged_write() -> Result<()> {
    let mut c = Controllers::start("kill_leader", 3)?;
    let leader = c.wait_leader(Duration::from_secs(10))?;
    let mut acked = Vec::new();
    for i in 0..20 {
        let key = format!("before-{i}");
        c.create(leader, &key, "v")?;
        acked.push(key);
    }
    c.kill(leader)?;
    let others: Vec<usize> = c
        .members()
        .iter()
        .copied()
        .filter(|h| *h != leader)
        .collect();
    let new_leader = c.wait_leader_among(&others, Duration::from_secs(5))?;
    assert_ne!(new_leader, leader);
    for i in 0..20 {
        let key = format!("after-{i}");
        write_until_ok(&c, &others, &key)?;
        acked.push(key);
    }
    c.restart(leader)?;
    // Every member, the old leader included, has every acknowledged write.
    for host in c.members().to_vec() {
        wait_until("the member to catch up", Duration::from_secs(10), || {
            acked
                .iter()
                .all(|k| c.read_local(host, k).ok().flatten().is_some())
                .then_some(())
        })?;
    }
    Ok(())
}

#[test]
fn a_cut_off_leader_accepts_no_writes_and_converges_when_healed() -> Result<()> {
    let c = Controllers::start("cut_leader", 3)?;
    let old = c.wait_leader(Duration::from_secs(10))?;
    c.create(old, "k", "0")?;
    c.net.host(old).cut(Cut::Both)?;
    let others: Vec<usize> = c.members().iter().copied().filter(|h| *h != old).collect();
    let new = c.wait_leader_among(&others, Duration::from_secs(5))?;
    assert_ne!(new, old);
    wait_until(
        "a write through the majority",
        Duration::from_secs(10),
        || (c.write(new, "k", "majority") == Outcome::Ok).then_some(()),
    )?;

    // From the old leader's own host: it must not acknowledge a write.
    let rt = c.net.host(old).runtime()?;
    let old_addr = c.address(old);
    let security = c.security();
    let outcome = berth_testhost::netruntime::run(&rt, async move {
        match berth_testhost::controllers::connect(&old_addr, &security).await {
            Ok(mut client) => {
                berth_testhost::controllers::write(&mut client, "k", "minority").await
            }
            Err(err) => Outcome::Failed(format!("{err:#}")),
        }
    });
    assert_ne!(
        outcome,
        Outcome::Ok,
        "the cut-off old leader acknowledged a write"
    );

    c.net.host(old).heal()?;
    let leader = c.wait_leader(Duration::from_secs(10))?;
    wait_until(
        "the old leader to converge",
        Duration::from_secs(10),
        || (c.read_local(old, "k").ok().flatten().as_deref() == Some("majority")).then_some(()),
    )?;
    // The minority write never took effect anywhere.
    assert_eq!(c.read(leader, "k")?.as_deref(), Some("majority"));
    Ok(())
}

#[test]
fn a_paused_leader_causes_no_split_brain() -> Result<()> {
    let mut c = Controllers::start("pause_leader", 3)?;
    let old = c.wait_leader(Duration::from_secs(10))?;
    c.create(old, "k", "0")?;
    let old_id = c.status(old)?.member_id;
    c.pause(old)?;
    let others: Vec<usize> = c.members().iter().copied().filter(|h| *h != old).collect();
    let new = c.wait_leader_among(&others, Duration::from_secs(5))?;
    let new_status = c.status(new)?;
    assert_ne!(new_status.leader_id, old_id);
    wait_until(
        "a write under the new leader",
        Duration::from_secs(10),
        || (c.write(new, "k", "1") == Outcome::Ok).then_some(()),
    )?;
    c.resume(old)?;
    // The old leader wakes up in an old term: it must follow, not lead.
    let leader = c.wait_leader(Duration::from_secs(10))?;
    let statuses: Vec<_> = c
        .members()
        .iter()
        .map(|h| c.status(*h))
        .collect::<Result<_>>()?;
    let leader_id = statuses[0].leader_id;
    assert!(statuses.iter().all(|s| s.leader_id == leader_id));
    wait_until(
        "the old leader to converge",
        Duration::from_secs(10),
        || (c.read_local(old, "k").ok().flatten().as_deref() == Some("1")).then_some(()),
    )?;
    assert_eq!(c.read(leader, "k")?.as_deref(), Some("1"));
    Ok(())
}

#[test]
fn restarting_every_member_keeps_the_state() -> Result<()> {
    // A short log: the 30 writes cross several state checkpoints and log
    // compactions, and the last ones exist only in the log when the kill comes.
    let mut c = Controllers::start_with("restart_all", 3, 0, &["--snapshot-entries", "8"])?;
    let leader = c.wait_leader(Duration::from_secs(10))?;
    for i in 0..30 {
        c.create(leader, &format!("k{i}"), &format!("v{i}"))?;
    }
    for host in c.members().to_vec() {
        c.kill(host)?;
    }
    for host in c.members().to_vec() {
        c.restart(host)?;
    }
    let leader = c.wait_leader(Duration::from_secs(10))?;
    for i in 0..30 {
        assert_eq!(c.read(leader, &format!("k{i}"))?, Some(format!("v{i}")));
    }
    Ok(())
}

#[test]
fn a_500ms_blip_does_not_change_the_leader() -> Result<()> {
    let c = Controllers::start("blip", 3)?;
    let leader = c.wait_leader(Duration::from_secs(10))?;
    // Let the cluster settle, then note who leads in which term.
    std::thread::sleep(Duration::from_millis(500));
    let before = c.status(leader)?;
    c.net.host(leader).cut(Cut::Both)?;
    std::thread::sleep(Duration::from_millis(500));
    c.net.host(leader).heal()?;
    std::thread::sleep(Duration::from_millis(1500));
    let after = c.status(leader)?;
    assert_eq!(
        after.leader_id, before.leader_id,
        "the leader changed after a 500 ms blip"
    );
    assert_eq!(
        after.term, before.term,
        "an election happened after a 500 ms blip"
    );
    Ok(())
}
