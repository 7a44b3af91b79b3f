//! The cgroup v2 (unified) layout, detected at run time: the test mounts the
//! host's v2 hierarchy at /sys/fs/cgroup in a mount namespace of its own (this
//! host keeps its controllers on v1, so v2 carries no limits here).

mod common;

use std::process::Command;

use common::{BERTH, Fixture, Runtime, stderr, stdout};

/// Runs `script` in a new mount namespace where /sys/fs/cgroup is cgroup2.
fn in_v2_namespace(script: &str, args: &[&str]) -> std::process::Output {
    let full = format!("mount -t cgroup2 none /sys/fs/cgroup && {script}");
    Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &full,
            "sh",
        ])
        .args(args)
        .output()
        .expect("unshare")
}

#[test]
fn unified_layout_is_detected_and_cleaned_up() {
    let fx = Fixture::new("v2").expect("fixture");
    let script = "grep '^0::' /proc/self/cgroup; grep -c cgroup2 /proc/self/mountinfo; \
                  test -e /sys/fs/cgroup/cgroup.procs && echo unified";
    let spec = fx.spec("v2", &["sh", "-c", script], |_| {});
    let bundle = fx.bundle("v2", &spec).expect("bundle");
    let root = fx.state_root(Runtime::Berth);
    let id = fx.id("v2");
    let detached = fx.id("v2d");
    let spec_d = fx.spec("v2d", &["sleep", "600"], |_| {});
    let bundle_d = fx.bundle("v2d", &spec_d).expect("bundle");
    let cg = format!("/sys/fs/cgroup/{}", fx.cgroup);
    // run; then create + start + ps + delete; then the cgroups must be gone.
    let script = r#"
        set -e
        "$1" --root "$2" run --bundle "$3" "$4"
        "$1" --root "$2" create --bundle "$5" "$6" > /dev/null 2>&1
        "$1" --root "$2" start "$6"
        test -e "$7/v2d/cgroup.procs" && echo created-in-v2
        "$1" --root "$2" ps --format json "$6"
        "$1" --root "$2" delete --force "$6"
        test ! -e "$7/v2d" && test ! -e "$7/v2" && echo gone
    "#;
    let out = in_v2_namespace(
        script,
        &[
            BERTH,
            &root.to_string_lossy(),
            &bundle.to_string_lossy(),
            &id,
            &bundle_d.to_string_lossy(),
            &detached,
            &cg,
        ],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let lines: Vec<&str> = text.lines().collect();
    // Inside its cgroup namespace the container is at the root of the hierarchy.
    assert_eq!(lines[0], "0::/", "{text}");
    assert_eq!(lines[1], "1", "{text}");
    assert_eq!(lines[2], "unified", "{text}");
    assert_eq!(lines[3], "created-in-v2", "{text}");
    let pids: Vec<i32> = serde_json::from_str(lines[4]).expect("ps json");
    assert_eq!(pids.len(), 1, "{text}");
    assert_eq!(lines[5], "gone", "{text}");
    // Nothing was made in the v1 hierarchies.
    for name in ["v2", "v2d"] {
        assert!(!fx.cgroup_dir("memory", name).exists());
        assert!(!fx.cgroup_dir("pids", name).exists());
    }
}
