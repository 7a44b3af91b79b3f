//! A follower that fell behind the leader's compacted log.

use crate::raft::RaftSettings;

use super::cluster::{TestCluster, fast_settings};

#[tokio::test]
async fn a_lagging_follower_catches_up_by_snapshot() {
    // Compact after 16 applied entries, keeping 4.
    let settings = RaftSettings {
        snapshot_entries: 16,
        compact_margin: 4,
        ..fast_settings()
    };
    let cluster = TestCluster::new(3, settings);
    let leader = cluster.leader().await;
    let laggard = cluster.except(leader)[0];
    let others: Vec<u64> = cluster.except(laggard);
    cluster.write(leader, "key-0").await;
    cluster.wait_applied(&[laggard], "key-0").await;
    let before = cluster.net.snapshots_delivered(laggard);

    cluster.net.isolate(laggard, &others);
    for i in 1..=80 {
        cluster.write(leader, &format!("key-{i}")).await;
    }
    cluster.wait_applied(&others, "key-80").await;
    assert!(!cluster.has(laggard, "key-1"));

    cluster.net.heal(laggard);
    cluster.wait_applied(&[laggard], "key-80").await;
    for i in 0..=80 {
        assert!(cluster.has(laggard, &format!("key-{i}")), "key-{i} missing");
    }
    assert!(
        cluster.net.snapshots_delivered(laggard) > before,
        "the laggard caught up without a snapshot"
    );
    // It follows on from the snapshot with ordinary appends.
    cluster.write(leader, "after-snapshot").await;
    cluster.wait_applied(&[laggard], "after-snapshot").await;
}
