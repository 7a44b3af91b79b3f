//! Limits that bite: memory (OOM kill reported), pids.max (fork bomb), CPU quota.

mod common;

use std::time::{Duration, Instant};

use common::{Fixture, Runtime, stderr, wait_until};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
};

#[test]
fn memory_hog_is_oom_killed_and_the_exit_says_so() {
    let fx = Fixture::new("oom").expect("fixture");
    let spec = fx.spec("hog", &["tail", "/dev/zero"], |spec| {
        common::set_resources(
            spec,
            LinuxResourcesBuilder::default()
                .memory(
                    LinuxMemoryBuilder::default()
                        .limit(32i64 << 20)
                        .build()
                        .expect("mem"),
                )
                .build()
                .expect("resources"),
        );
    });
    let bundle = fx.bundle("hog", &spec).expect("bundle");

    // run: exit status 137 and a message.
    let out = fx.run(Runtime::Berth, &bundle, &fx.id("run")).expect("run");
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(stderr(&out).contains("OOM-killed"), "{}", stderr(&out));

    // create + start: the state records it once init is gone.
    let id = fx.id("detached");
    fx.start(Runtime::Berth, &bundle, &id).expect("start");
    let state = fx.wait_exit(&id);
    assert_eq!(state["exit"]["signal"], 9, "{state}");
    assert_eq!(state["exit"]["oom_killed"], true, "{state}");
    let out = fx.cmd(Runtime::Berth, &["delete", &id]).expect("delete");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!fx.cgroup_dir("memory", "hog").exists());
}

#[test]
fn fork_bomb_stops_at_pids_max() {
    let fx = Fixture::new("forkbomb").expect("fixture");
    let spec = fx.spec("bomb", &["sleep", "600"], |spec| {
        common::set_resources(
            spec,
            LinuxResourcesBuilder::default()
                .pids(
                    LinuxPidsBuilder::default()
                        .limit(20i64)
                        .build()
                        .expect("pids"),
                )
                .build()
                .expect("resources"),
        );
    });
    let bundle = fx.bundle("bomb", &spec).expect("bundle");
    let id = fx.id("bomb");
    fx.start(Runtime::Berth, &bundle, &id).expect("start");
    // The classic bomb, started with exec beside the container's main process.
    let status = std::process::Command::new(common::BERTH)
        .arg("--root")
        .arg(fx.state_root(Runtime::Berth))
        .args(["exec", &id, "sh", "-c", "f() { f | f & }; f"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("exec");
    assert!(status.success(), "exec of the bomb failed: {status}");
    let pids = fx.cgroup_dir("pids", "bomb");
    let refused = |dir: &std::path::Path| -> u64 {
        let events = std::fs::read_to_string(dir.join("pids.events")).unwrap_or_default();
        events
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let current = |dir: &std::path::Path| -> u64 {
        std::fs::read_to_string(dir.join("pids.current"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    wait_until("the bomb to fill pids.max and be refused", || {
        (refused(&pids) >= 1).then_some(())
    })
    .expect("forks refused");
    let stats = fx.stats(&id).expect("stats");
    assert_eq!(stats["pids"]["limit"], 20, "{stats}");
    let now = stats["pids"]["current"].as_u64().expect("current");
    // The bomb may have burnt out by now; the main process is still there.
    assert!((1..=20).contains(&now), "{stats}");
    for _ in 0..20 {
        assert!(current(&pids) <= 20);
    }
    // The container itself survived the bomb.
    assert_eq!(
        fx.state(Runtime::Berth, &id).expect("state")["status"],
        "running"
    );

    let out = fx
        .cmd(Runtime::Berth, &["delete", "--force", &id])
        .expect("delete");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!pids.exists(), "cgroup left behind");
}

#[test]
fn busy_loop_under_half_a_cpu_gets_about_half_a_core() {
    let fx = Fixture::new("cpuquota").expect("fixture");
    let spec = fx.spec("busy", &["sh", "-c", "while :; do :; done"], |spec| {
        common::set_resources(
            spec,
            LinuxResourcesBuilder::default()
                .cpu(
                    LinuxCpuBuilder::default()
                        .quota(50_000i64)
                        .period(100_000u64)
                        .build()
                        .expect("cpu"),
                )
                .build()
                .expect("resources"),
        );
    });
    let bundle = fx.bundle("busy", &spec).expect("bundle");
    let id = fx.id("busy");
    fx.start(Runtime::Berth, &bundle, &id).expect("start");
    let usage = || -> u64 {
        fx.stats(&id).expect("stats")["cpu"]["usage"]["total"]
            .as_u64()
            .expect("usage")
    };
    // Measure windows of one second of wall time. The quota is a ceiling: no
    // window may exceed it. Other tests may compete for the two cores, so a
    // window below the band is measured again (up to five times).
    std::thread::sleep(Duration::from_millis(300));
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (u0, t0) = (usage(), Instant::now());
        std::thread::sleep(Duration::from_secs(1));
        let (u1, t1) = (usage(), Instant::now());
        let cores = (u1 - u0) as f64 / (t1 - t0).as_nanos() as f64;
        assert!(
            cores <= 0.7,
            "busy loop got {cores:.2} cores under a 0.5 quota"
        );
        seen.push(cores);
        if cores >= 0.3 {
            break;
        }
    }
    assert!(
        seen.iter().any(|c| (0.3..=0.7).contains(c)),
        "busy loop never got about half a core: {seen:?}"
    );
    let out = fx
        .cmd(Runtime::Berth, &["delete", "--force", &id])
        .expect("delete");
    assert!(out.status.success(), "{}", stderr(&out));
}
