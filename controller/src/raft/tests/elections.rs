//! Elections and failover.

use super::cluster::{TestCluster, fast_settings, put, wait_until};
use crate::raft::ProposeError;

#[tokio::test]
async fn three_members_elect_one_leader_and_every_write_applies_everywhere() {
    let cluster = TestCluster::new(3, fast_settings());
    let leader = cluster.leader().await;
    let follower = cluster.except(leader)[0];

    // Through the leader, and through a follower (which hands it to the leader).
    let first = cluster.write(leader, "via-leader").await;
    let second = cluster.write(follower, "via-follower").await;
    assert!(second.revision > first.revision);
    cluster.wait_applied(&[1, 2, 3], "via-leader").await;
    cluster.wait_applied(&[1, 2, 3], "via-follower").await;

    // A linearizable read on a follower sees the write it waited for.
    cluster
        .handle(follower)
        .read_barrier()
        .await
        .expect("read barrier");
    assert!(cluster.has(follower, "via-follower"));
}

#[tokio::test]
async fn a_cut_off_leader_is_replaced_steps_down_and_follows_after_healing() {
    let cluster = TestCluster::new(3, fast_settings());
    let old = cluster.leader().await;
    let old_term = cluster.status(old).term;
    let rest: Vec<u64> = cluster.except(old);

    cluster.net.isolate(old, &rest);
    let new = cluster.leader_among(&rest).await;
    assert_ne!(new, old);
    assert!(cluster.status(new).term > old_term);
    cluster.write(new, "after-failover").await;
    cluster.wait_applied(&rest, "after-failover").await;
    // check_quorum: a leader that hears no majority steps down by itself.
    wait_until("the cut-off leader steps down", || {
        !cluster.status(old).is_leader()
    })
    .await;
    assert!(!cluster.has(old, "after-failover"));

    cluster.net.heal(old);
    assert_eq!(cluster.leader().await, new);
    cluster.wait_applied(&[old], "after-failover").await;
}

#[tokio::test]
async fn a_stopped_leader_is_replaced_and_catches_up_when_restarted() {
    let mut cluster = TestCluster::new(3, fast_settings());
    let old = cluster.leader().await;
    cluster.write(old, "before").await;
    cluster.wait_applied(&[1, 2, 3], "before").await;

    cluster.stop(old).await;
    let new = cluster.leader().await;
    assert_ne!(new, old);
    cluster.write(new, "while-stopped").await;

    cluster.restart(old).await;
    let leader = cluster.leader().await;
    cluster.write(leader, "after-restart").await;
    for key in ["before", "while-stopped", "after-restart"] {
        cluster.wait_applied(&[1, 2, 3], key).await;
    }
}

#[tokio::test]
async fn a_member_that_hears_nobody_cannot_disrupt_the_cluster() {
    let cluster = TestCluster::new(3, fast_settings());
    let leader = cluster.leader().await;
    let deaf = cluster.except(leader)[0];
    let others = cluster.except(deaf);
    for id in &others {
        cluster.net.cut_one_way(*id, deaf);
    }

    // Its pre-votes reach the others, but they hear a leader and refuse; its
    // elections never end, so it never leads.
    cluster.write(leader, "while-deaf").await;
    cluster.wait_applied(&others, "while-deaf").await;
    assert!(!cluster.has(deaf, "while-deaf"));
    assert!(!cluster.status(deaf).is_leader());

    cluster.net.heal_all();
    cluster.leader().await;
    cluster.wait_applied(&[deaf], "while-deaf").await;
}

#[tokio::test]
async fn a_member_nobody_hears_counts_for_nothing_until_healed() {
    let mut cluster = TestCluster::new(3, fast_settings());
    let leader = cluster.leader().await;
    let followers: Vec<u64> = cluster.except(leader);
    let (mute, other) = (followers[0], followers[1]);
    for id in [leader, other] {
        cluster.net.cut_one_way(mute, id);
    }

    // It hears the leader, so it does not campaign; its acks are lost, so the
    // leader and the other follower commit without it.
    cluster.write(leader, "while-mute").await;
    cluster.wait_applied(&[leader, other], "while-mute").await;

    // Without the other follower the leader hears no majority (the mute one
    // still hears it) and steps down; nobody can lead.
    cluster.stop(other).await;
    wait_until("the leader steps down", || {
        [leader, mute]
            .iter()
            .all(|id| cluster.status(*id).leader_id == 0)
    })
    .await;
    let refused = cluster.handle(leader).propose(put("refused")).await;
    assert!(
        matches!(refused, Err(ProposeError::NoLeader)),
        "{refused:?}"
    );

    // Healed, the two are a majority of three again.
    cluster.net.heal_all();
    let leader = cluster.leader_among(&[leader, mute]).await;
    cluster.write(leader, "after-healing").await;
    cluster.restart(other).await;
    for key in ["while-mute", "after-healing"] {
        cluster.wait_applied(&[1, 2, 3], key).await;
    }
    assert!(!cluster.has(leader, "refused"));
}
