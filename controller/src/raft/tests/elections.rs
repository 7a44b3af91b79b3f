//! Elections and failover.

use super::cluster::{TestCluster, fast_settings};

#[tokio::test]
async fn three_members_elect_one_leader_and_every_write_applies_everywhere() {
    let cluster = TestCluster::new(3, fast_settings());
    let leader = cluster.leader().await;
    let follower = cluster
        .running()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");

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
    let rest: Vec<u64> = cluster
        .running()
        .into_iter()
        .filter(|id| *id != old)
        .collect();

    cluster.net.isolate(old, &rest);
    let new = cluster.leader_among(&rest).await;
    assert_ne!(new, old);
    assert!(cluster.status(new).term > old_term);
    cluster.write(new, "after-failover").await;
    cluster.wait_applied(&rest, "after-failover").await;
    // check_quorum: a leader that hears no majority steps down by itself.
    super::cluster::wait_until("the cut-off leader steps down", || {
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
    let deaf = cluster
        .running()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    for id in cluster.running().into_iter().filter(|id| *id != deaf) {
        cluster.net.cut_one_way(id, deaf);
    }

    // Its pre-votes reach the others, but they hear a leader and refuse; its
    // elections never end, so it never leads.
    cluster.write(leader, "while-deaf").await;
    let others: Vec<u64> = cluster
        .running()
        .into_iter()
        .filter(|id| *id != deaf)
        .collect();
    cluster.wait_applied(&others, "while-deaf").await;
    assert!(!cluster.has(deaf, "while-deaf"));
    assert!(!cluster.status(deaf).is_leader());

    cluster.net.heal_all();
    cluster.leader().await;
    cluster.wait_applied(&[deaf], "while-deaf").await;
}

#[tokio::test]
async fn a_member_nobody_hears_does_not_hold_the_majority_back() {
    let cluster = TestCluster::new(3, fast_settings());
    let leader = cluster.leader().await;
    let mute = cluster
        .running()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    for id in cluster.running().into_iter().filter(|id| *id != mute) {
        cluster.net.cut_one_way(mute, id);
    }

    // It hears the leader's heartbeats, so it does not campaign; its acks are
    // lost, so the leader and the third member commit without it.
    cluster.write(leader, "while-mute").await;
    let others: Vec<u64> = cluster
        .running()
        .into_iter()
        .filter(|id| *id != mute)
        .collect();
    cluster.wait_applied(&others, "while-mute").await;

    cluster.net.heal_all();
    cluster.write(leader, "after-healing").await;
    cluster.wait_applied(&[1, 2, 3], "while-mute").await;
    cluster.wait_applied(&[1, 2, 3], "after-healing").await;
}
