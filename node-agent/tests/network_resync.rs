//! The overlay's reconcile loop on a test host: it follows plan changes, repairs
//! what someone removed by hand at the next period, and ends with its sender.

#[path = "support/network.rs"]
mod network;

use std::time::Duration;

use anyhow::Result;
use berth_agent::dataplane::LocalPlan;
use berth_testhost::{TestNet, wait_until};
use network::{Agent, plan_for, sh};
use tokio::sync::watch;

#[test]
fn the_loop_follows_the_plan_repairs_drift_and_stops_with_its_sender() -> Result<()> {
    let net = TestNet::new("overlay_resync", 2)?;
    let agent = Agent::start(net.host(0))?;
    let (tx, rx) = watch::channel(plan_for(&net, 0, &[0]));
    let overlay = agent.overlay.clone();
    let task = agent
        .rt
        .spawn(async move { overlay.run(rx, Duration::from_millis(200)).await });
    let h1 = net.host(0);
    let routes = || sh(h1, "ip", &["route", "show", "proto", "213"]);
    wait_until("the bridge", Duration::from_secs(5), || {
        sh(h1, "ip", &["-o", "link"])
            .ok()
            .filter(|l| l.contains("bb-4097"))
    })?;
    assert_eq!(routes()?, "");

    // h2 joins: its route appears on the change.
    tx.send(plan_for(&net, 0, &[0, 1]))?;
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
    tx.send(LocalPlan::default())?;
    wait_until("the devices gone", Duration::from_secs(5), || {
        sh(h1, "ip", &["-o", "link"])
            .ok()
            .filter(|l| !l.contains("bb-4097") && !l.contains("bv-4097"))
    })?;
    drop(tx);
    agent
        .rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await })??;
    Ok(())
}
