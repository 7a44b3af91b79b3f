//! Partitions of a five-member cluster.

use super::cluster::{TestCluster, fast_settings, put, wait_until};
use crate::raft::ProposeError;

#[tokio::test]
async fn a_partitioned_minority_cannot_commit_and_catches_up_after_healing() {
    let cluster = TestCluster::new(5, fast_settings());
    let old = cluster.leader().await;
    let all = cluster.running();
    // The leader and one follower end up on the minority side.
    let followers = cluster.except(old);
    let minority = vec![old, followers[0]];
    let majority = followers[1..].to_vec();
    cluster.net.partition(&minority, &majority);

    // The old leader takes a write it can replicate to one follower only.
    let stranded = tokio::spawn({
        let handle = cluster.handle(old).clone();
        async move { handle.propose(put("stranded")).await }
    });

    let new = cluster.leader_among(&majority).await;
    cluster.write(new, "majority").await;
    cluster.wait_applied(&majority, "majority").await;

    // The old leader steps down (check_quorum) and its write's fate is unknown
    // to its client; the minority then knows no leader and refuses at once.
    let outcome = stranded.await.expect("the proposal task");
    assert!(outcome.is_err(), "a minority committed: {outcome:?}");
    wait_until("the minority knows no leader", || {
        minority.iter().all(|id| cluster.status(*id).leader_id == 0)
    })
    .await;
    for id in &minority {
        let write = cluster.handle(*id).propose(put("refused")).await;
        assert!(matches!(write, Err(ProposeError::NoLeader)), "{write:?}");
        let read = cluster.handle(*id).read_barrier().await;
        assert!(matches!(read, Err(ProposeError::NoLeader)), "{read:?}");
        assert!(!cluster.has(*id, "majority"));
    }

    // After healing the minority takes the majority's log: the stranded write
    // is gone everywhere, the majority's is everywhere.
    cluster.net.heal_all();
    let leader = cluster.leader().await;
    cluster.write(leader, "healed").await;
    cluster.wait_applied(&all, "majority").await;
    cluster.wait_applied(&all, "healed").await;
    for id in &all {
        assert!(
            !cluster.has(*id, "stranded"),
            "member {id} applied a write no majority took"
        );
        assert!(!cluster.has(*id, "refused"));
    }
}

#[tokio::test]
async fn writes_commit_with_two_of_five_members_stopped() {
    let mut cluster = TestCluster::new(5, fast_settings());
    let leader = cluster.leader().await;
    let followers: Vec<u64> = cluster.except(leader);
    cluster.stop(followers[0]).await;
    cluster.stop(followers[1]).await;

    let live = cluster.running();
    cluster.write(leader, "three-of-five").await;
    cluster.write(followers[2], "through-a-follower").await;
    cluster.wait_applied(&live, "three-of-five").await;
    cluster.wait_applied(&live, "through-a-follower").await;

    cluster.restart(followers[0]).await;
    cluster.restart(followers[1]).await;
    let all = cluster.running();
    assert_eq!(all.len(), 5);
    cluster.wait_applied(&all, "three-of-five").await;
    cluster.wait_applied(&all, "through-a-follower").await;
}
