//! Membership changes: a learner joins and is promoted, members leave.

use super::cluster::{TestCluster, fast_settings, wait_until};
use crate::raft::{Membership, Role};

fn is_voter(role: Option<Role>) -> bool {
    matches!(role, Some(Role::Follower | Role::Leader | Role::Candidate))
}

#[tokio::test]
async fn a_joining_learner_catches_up_by_snapshot_and_is_promoted() {
    let mut cluster = TestCluster::new(3, fast_settings());
    let leader = cluster.leader().await;
    cluster.write(leader, "before-join").await;

    cluster.join(4, leader).await.expect("add a learner");
    // A new cluster's log starts compacted, so the state comes by snapshot;
    // once the learner has caught up the leader promotes it.
    wait_until("member 4 is promoted", || is_voter(cluster.role(leader, 4))).await;
    cluster.wait_applied(&[4], "before-join").await;
    assert!(cluster.net.snapshots_delivered(4) > 0);

    // It votes: with one of the first three cut off, 3 of the 4 voters commit
    // only with member 4.
    let cut = (1..=3).find(|id| *id != leader).expect("a follower");
    let rest = cluster.except(cut);
    cluster.net.isolate(cut, &rest);
    cluster.write(leader, "needs-member-4").await;
    cluster.wait_applied(&rest, "needs-member-4").await;
}

#[tokio::test]
async fn a_learner_that_has_not_caught_up_is_promoted_on_request() {
    let mut cluster = TestCluster::new(3, fast_settings());
    let leader = cluster.leader().await;
    cluster.write(leader, "before-join").await;

    // Cut off, it never catches up, so the leader does not promote it itself.
    cluster.net.isolate(4, &[1, 2, 3]);
    cluster.join(4, leader).await.expect("add a learner");
    wait_until("member 4 is a learner", || {
        cluster.role(leader, 4) == Some(Role::Learner)
    })
    .await;
    cluster
        .change(leader, Membership::Promote(4))
        .await
        .expect("promote");
    wait_until("member 4 is a voter", || is_voter(cluster.role(leader, 4))).await;

    // Four voters, one of them cut off: three still commit.
    cluster.write(leader, "while-cut-off").await;
    cluster.wait_applied(&[1, 2, 3], "while-cut-off").await;
    assert!(!cluster.has(4, "before-join"));

    cluster.net.heal(4);
    cluster.wait_applied(&[4], "before-join").await;
    cluster.wait_applied(&[4], "while-cut-off").await;
}

#[tokio::test]
async fn a_removed_member_knows_it_and_the_rest_keep_committing() {
    let mut cluster = TestCluster::new(3, fast_settings());
    let leader = cluster.leader().await;
    let gone = cluster.except(leader)[0];
    let rest = cluster.except(gone);

    cluster
        .change(leader, Membership::Remove(gone))
        .await
        .expect("remove");
    wait_until("the leader's member list drops it", || {
        cluster.role(leader, gone).is_none()
            && !cluster.status(leader).addresses.contains_key(&gone)
    })
    .await;
    wait_until("the removed member knows", || cluster.status(gone).removed).await;
    // The server stops a removed member; two voters of two go on.
    cluster.stop(gone).await;
    cluster.write(leader, "after-removal").await;
    cluster.wait_applied(&rest, "after-removal").await;
}

#[tokio::test]
async fn a_member_removed_while_deaf_is_told_by_the_leader() {
    let cluster = TestCluster::new(3, fast_settings());
    let leader = cluster.leader().await;
    let gone = cluster.except(leader)[0];
    let rest = cluster.except(gone);
    // It hears nothing, so it never learns that its removal committed...
    for id in &rest {
        cluster.net.cut_one_way(*id, gone);
    }
    cluster
        .change(leader, Membership::Remove(gone))
        .await
        .expect("remove");
    // ...until it campaigns and the leader, which no longer knows it, says so.
    wait_until("the removed member is told", || {
        cluster.status(gone).removed
    })
    .await;
    cluster.write(leader, "after-removal").await;
    cluster.wait_applied(&rest, "after-removal").await;
}

#[tokio::test]
async fn a_removed_leader_hands_over_once_it_stops() {
    let mut cluster = TestCluster::new(3, fast_settings());
    let old = cluster.leader().await;
    cluster
        .change(old, Membership::Remove(old))
        .await
        .expect("remove the leader");
    wait_until("the old leader knows it was removed", || {
        cluster.status(old).removed
    })
    .await;
    cluster.stop(old).await;

    let new = cluster.leader().await;
    assert_ne!(new, old);
    assert!(cluster.role(new, old).is_none());
    cluster.write(new, "after-handover").await;
    cluster
        .wait_applied(&cluster.running(), "after-handover")
        .await;
}
