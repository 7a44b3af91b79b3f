//! The network service's resync loop on a test host: it follows assignment
//! changes, repairs what someone removed by hand at the next period, and ends
//! when its plane is dropped.

#[path = "support/network.rs"]
mod network;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_agent::network::{NetPlane, View};
use berth_proto::v1::Assignments;
use berth_testhost::netruntime::run;
use berth_testhost::{TestNet, wait_until};
use network::{assignments_for, plan_for, sh};

#[test]
fn the_loop_follows_the_plan_repairs_drift_and_stops_with_its_plane() -> Result<()> {
    let net = TestNet::new("overlay_resync", 2)?;
    let h1 = net.host(0);
    let rt = h1.runtime()?;
    let netns_dir = tempfile::tempdir()?;
    let dir = netns_dir.path().to_path_buf();
    // Made on one of the host's threads: its netlink socket is in h1's netns.
    let plane = run(&rt, async move { NetPlane::new(dir) }).context("the network plane")?;
    let alone = assignments_for(&net, 0, &[0]);
    ensure!(View::from_assignments(&alone).plan == plan_for(&net, 0, &[0]));
    plane.set(&alone);
    let task = rt.spawn(
        plane
            .clone()
            .run(Duration::from_millis(200), Default::default()),
    );
    let routes = || sh(h1, "ip", &["route", "show", "proto", "213"]);
    wait_until("the bridge", Duration::from_secs(5), || {
        sh(h1, "ip", &["-o", "link"])
            .ok()
            .filter(|l| l.contains("bb-4097"))
    })?;
    assert_eq!(routes()?, "");

    // h2 joins: its route appears on the change.
    let both = assignments_for(&net, 0, &[0, 1]);
    ensure!(View::from_assignments(&both).plan == plan_for(&net, 0, &[0, 1]));
    plane.set(&both);
    wait_until("h2's route", Duration::from_secs(5), || {
        routes().ok().filter(|r| r.contains("10.20.2.0/24"))
    })?;
    // Removed by hand: back at the next period, without a plan change.
    h1.run("ip", &["route", "del", "10.20.2.0/24"])?;
    h1.run(
        "bridge",
        &[
            "fdb",
            "del",
            "0e:01:c6:12:00:02",
            "dev",
            "bv-4097",
            "dst",
            "198.18.0.2",
        ],
    )?;
    wait_until("the route repaired", Duration::from_secs(5), || {
        routes().ok().filter(|r| r.contains("10.20.2.0/24"))
    })?;
    wait_until("the fdb entry repaired", Duration::from_secs(5), || {
        sh(h1, "bridge", &["fdb", "show", "dev", "bv-4097"])
            .ok()
            .filter(|f| f.contains("dst 198.18.0.2"))
    })?;

    // The plan empties: everything of berth's goes; then the loop ends.
    plane.set(&Assignments {
        node_id: both.node_id.clone(),
        ..Default::default()
    });
    wait_until("the devices gone", Duration::from_secs(5), || {
        sh(h1, "ip", &["-o", "link"])
            .ok()
            .filter(|l| !l.contains("bb-4097") && !l.contains("bv-4097"))
    })?;
    drop(plane);
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await })??;
    Ok(())
}
