//! The spec's hooks: when each kind runs, what it reads on stdin, and what a
//! failing or hanging one does to the operation (under berth-runtime; where
//! runc 1.1 behaves the same, under runc too).

mod common;

use std::path::{Path, PathBuf};

use common::{Fixture, Runtime, create_fails, stderr, wait_until};
use oci_spec::runtime::{Hook, HookBuilder, Hooks, HooksBuilder, Spec};

/// A hook running `/bin/sh -c script` (the host's shell; the rootfs's for
/// startContainer, whose path resolves in the container).
fn sh(script: &str) -> Hook {
    HookBuilder::default()
        .path("/bin/sh")
        .args(vec!["sh".to_string(), "-c".to_string(), script.to_string()])
        .build()
        .expect("hook")
}

fn with_hooks(spec: &mut Spec, hooks: Hooks) {
    spec.set_hooks(Some(hooks));
}

/// A hook that appends its name to `log` and saves the state it read in
/// `dir/<name>.json`.
fn recording(name: &str, dir: &Path, log: &Path) -> Hook {
    sh(&format!(
        "cat > {}/{name}.json; echo {name} >> {}",
        dir.display(),
        log.display()
    ))
}

fn read_state(path: PathBuf) -> serde_json::Value {
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).expect("state JSON")
}

#[test]
fn every_hook_runs_in_order_with_the_state_on_stdin() {
    let fx = Fixture::new("hooks-order").expect("fixture");
    let out = fx.dir.path().join("hook-out");
    std::fs::create_dir(&out).expect("out dir");
    let log = out.join("log");
    let spec = fx.spec("order", &["sleep", "600"], |spec| {
        let mut annotations = std::collections::HashMap::new();
        annotations.insert("org.example.key".to_string(), "value".to_string());
        spec.set_annotations(Some(annotations));
        with_hooks(
            spec,
            HooksBuilder::default()
                .prestart(vec![recording("prestart", &out, &log)])
                .create_runtime(vec![recording("createRuntime", &out, &log)])
                .create_container(vec![recording("createContainer", &out, &log)])
                // In the container: its own /tmp, the rootfs's shell.
                .start_container(vec![sh("cat > /tmp/startContainer.json")])
                .poststart(vec![recording("poststart", &out, &log)])
                .poststop(vec![recording("poststop", &out, &log)])
                .build()
                .expect("hooks"),
        );
    });
    let bundle = fx.bundle("order", &spec).expect("bundle");
    let id = fx.id("order");
    let b = bundle.to_string_lossy().into_owned();
    fx.create_with(Runtime::Berth, &bundle, &id, &[])
        .expect("create");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(log_text(), "prestart\ncreateRuntime\ncreateContainer\n");
    let pid = fx.state(Runtime::Berth, &id).expect("state")["pid"]
        .as_i64()
        .expect("pid");
    for name in ["prestart", "createRuntime", "createContainer"] {
        let state = read_state(out.join(format!("{name}.json")));
        assert_eq!(state["id"], id.as_str(), "{name}");
        assert_eq!(state["status"], "creating", "{name}");
        assert_eq!(state["pid"], pid, "{name}");
        assert_eq!(state["bundle"], b.as_str(), "{name}");
        assert_eq!(state["annotations"]["org.example.key"], "value", "{name}");
    }

    let started = fx.cmd(Runtime::Berth, &["start", &id]).expect("start");
    assert!(started.status.success(), "{}", stderr(&started));
    // start returns after the poststart hooks: the process runs by then.
    assert_eq!(
        log_text(),
        "prestart\ncreateRuntime\ncreateContainer\npoststart\n"
    );
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
    assert_eq!(comm.trim(), "sleep");
    let state = read_state(fx.rootfs.join("tmp/startContainer.json"));
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], id.as_str());
    let state = read_state(out.join("poststart.json"));
    assert_eq!(state["status"], "running");
    assert_eq!(state["pid"], pid);

    let deleted = fx
        .cmd(Runtime::Berth, &["delete", "--force", &id])
        .expect("delete");
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert_eq!(
        log_text(),
        "prestart\ncreateRuntime\ncreateContainer\npoststart\npoststop\n"
    );
    let state = read_state(out.join("poststop.json"));
    assert_eq!(state["status"], "stopped");
    assert_eq!(state["id"], id.as_str());
}

#[test]
fn create_runtime_and_poststop_hooks_read_the_state_as_under_runc() {
    let fx = Fixture::new("hooks-runc").expect("fixture");
    for rt in [Runtime::Berth, Runtime::Runc] {
        let name = format!("{rt:?}").to_lowercase();
        let out = fx.dir.path().join(format!("out-{name}"));
        std::fs::create_dir(&out).expect("out dir");
        let log = out.join("log");
        let spec = fx.spec(&name, &["true"], |spec| {
            with_hooks(
                spec,
                HooksBuilder::default()
                    .create_runtime(vec![recording("createRuntime", &out, &log)])
                    .poststop(vec![recording("poststop", &out, &log)])
                    .build()
                    .expect("hooks"),
            );
        });
        let bundle = fx.bundle(&name, &spec).expect("bundle");
        let id = fx.id(&name);
        let run = fx.run(rt, &bundle, &id).expect("run");
        assert!(run.status.success(), "{rt:?}: {}", stderr(&run));
        assert_eq!(
            std::fs::read_to_string(&log).expect("log"),
            "createRuntime\npoststop\n",
            "{rt:?}"
        );
        let state = read_state(out.join("createRuntime.json"));
        assert_eq!(state["id"], id.as_str(), "{rt:?}");
        assert_eq!(state["status"], "creating", "{rt:?}");
        assert!(state["pid"].as_i64().is_some_and(|p| p > 0), "{rt:?}");
        assert_eq!(state["bundle"], bundle.to_string_lossy().as_ref(), "{rt:?}");
        let state = read_state(out.join("poststop.json"));
        assert_eq!(state["id"], id.as_str(), "{rt:?}");
    }
}

/// True while a process whose command line holds `needle` runs.
fn process_with(needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(needle))
            .unwrap_or(false)
    })
}

#[test]
fn a_failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    let fx = Fixture::new("hooks-fail").expect("fixture");
    let marker = fx.dir.path().join("poststop-ran");
    let spec = fx.spec("fail", &["sleep", "600"], |spec| {
        with_hooks(
            spec,
            HooksBuilder::default()
                .create_runtime(vec![sh("echo no network for you >&2; exit 7")])
                .poststop(vec![sh(&format!("touch {}", marker.display()))])
                .build()
                .expect("hooks"),
        );
    });
    let bundle = fx.bundle("fail", &spec).expect("bundle");
    let id = fx.id("fail");
    let err = create_fails(&fx, &bundle, &id, "createRuntime hook #0 (/bin/sh) failed");
    assert!(err.contains("exit status: 7"), "{err}");
    assert!(err.contains("no network for you"), "{err}");
    // Neither the monitor nor init (forks of `create`, whose command line
    // names the container) is left.
    wait_until("the container's processes to go", || {
        (!process_with(&id)).then_some(())
    })
    .expect("no process left");
    assert!(!common::cgroup_exists(&format!("{}/fail", fx.cgroup)));
    // The lifecycle goes on at "destroy": the poststop hooks ran.
    assert!(marker.exists(), "poststop did not run after the failure");
}

#[test]
fn a_hook_past_its_timeout_is_killed_and_named() {
    let fx = Fixture::new("hooks-timeout").expect("fixture");
    let pid_file = fx.dir.path().join("hook.pid");
    let spec = fx.spec("slow", &["true"], |spec| {
        let mut hook = sh(&format!("echo $$ > {}; exec sleep 600", pid_file.display()));
        hook.set_timeout(Some(1));
        with_hooks(
            spec,
            HooksBuilder::default()
                .prestart(vec![hook])
                .build()
                .expect("hooks"),
        );
    });
    let bundle = fx.bundle("slow", &spec).expect("bundle");
    let id = fx.id("slow");
    create_fails(
        &fx,
        &bundle,
        &id,
        "prestart hook #0 (/bin/sh) timed out after 1s and was killed",
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("hook pid")
        .trim()
        .parse()
        .expect("pid");
    assert!(
        !berth_runtime::proc::alive(pid, None),
        "the hook {pid} still runs"
    );
}

#[test]
fn a_failing_start_container_hook_fails_start_and_destroys_the_container() {
    let fx = Fixture::new("hooks-startfail").expect("fixture");
    let spec = fx.spec("startfail", &["sleep", "600"], |spec| {
        with_hooks(
            spec,
            HooksBuilder::default()
                .start_container(vec![sh("echo no ldconfig >&2; exit 3")])
                .build()
                .expect("hooks"),
        );
    });
    let bundle = fx.bundle("startfail", &spec).expect("bundle");
    let id = fx.id("startfail");
    fx.create_with(Runtime::Berth, &bundle, &id, &[])
        .expect("create");
    let started = fx.cmd(Runtime::Berth, &["start", &id]).expect("start");
    assert!(!started.status.success(), "start succeeded");
    let err = stderr(&started);
    assert!(
        err.contains("startContainer hook #0 (/bin/sh) failed: exit status: 3"),
        "{err}"
    );
    assert!(err.contains("no ldconfig"), "{err}");
    let state = fx.cmd(Runtime::Berth, &["state", &id]).expect("state");
    assert!(
        stderr(&state).contains("does not exist"),
        "{}",
        stderr(&state)
    );
    assert!(!common::cgroup_exists(&format!("{}/startfail", fx.cgroup)));
}

#[test]
fn failing_poststart_and_poststop_hooks_are_warnings() {
    let fx = Fixture::new("hooks-warn").expect("fixture");
    let spec = fx.spec("warn", &["sleep", "600"], |spec| {
        with_hooks(
            spec,
            HooksBuilder::default()
                .poststart(vec![sh("exit 4")])
                .poststop(vec![sh("exit 5")])
                .build()
                .expect("hooks"),
        );
    });
    let bundle = fx.bundle("warn", &spec).expect("bundle");
    let id = fx.id("warn");
    fx.create_with(Runtime::Berth, &bundle, &id, &[])
        .expect("create");
    let started = fx.cmd(Runtime::Berth, &["start", &id]).expect("start");
    assert!(started.status.success(), "{}", stderr(&started));
    assert!(
        stderr(&started).contains("warning: poststart hook #0 (/bin/sh) failed: exit status: 4"),
        "{}",
        stderr(&started)
    );
    assert_eq!(
        fx.state(Runtime::Berth, &id).expect("state")["status"],
        "running"
    );
    let deleted = fx
        .cmd(Runtime::Berth, &["delete", "--force", &id])
        .expect("delete");
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert!(
        stderr(&deleted).contains("warning: poststop hook #0 (/bin/sh) failed: exit status: 5"),
        "{}",
        stderr(&deleted)
    );
}
