//! create / start / state / exec / ps / kill / delete, as separate processes
//! (the state under --root is all that links them), and what they leave behind.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{Fixture, Runtime, stderr, stdout, wait_until};

fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    stdout(out)
}

#[test]
fn full_lifecycle_leaves_nothing_behind() {
    let fx = Fixture::new("lifecycle").expect("fixture");
    let spec = fx.spec("life", &["sleep", "600"], |_| {});
    let bundle = fx.bundle("life", &spec).expect("bundle");
    let id = fx.id("life");
    let b = bundle.to_string_lossy().into_owned();
    let pid_file = fx.dir.path().join("life.pid");
    let log = std::fs::File::create(fx.log_path(&id)).expect("log");
    let status = std::process::Command::new(common::BERTH)
        .arg("--root")
        .arg(fx.state_root(Runtime::Berth))
        .args(["create", "--bundle", &b, "--pid-file"])
        .arg(&pid_file)
        .arg(&id)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .status()
        .expect("create");
    assert!(status.success());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");

    let state = fx.state(Runtime::Berth, &id).expect("state");
    assert_eq!(state["status"], "created");
    assert_eq!(state["pid"], pid);
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["bundle"], b.as_str());
    // The container has a session of its own, apart from its creator's.
    let sid = |pid: i32| -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        rest.split_whitespace()
            .nth(3)
            .expect("sid")
            .parse()
            .expect("sid number")
    };
    assert_ne!(sid(pid), sid(std::process::id() as i32));
    // Nothing of the user's process runs yet: init waits in the runtime.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
    assert_ne!(comm.trim(), "sleep");
    // A second create of the same id is refused.
    let again = fx
        .cmd(Runtime::Berth, &["create", "--bundle", &b, &id])
        .expect("create");
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );

    ok(&fx.cmd(Runtime::Berth, &["start", &id]).expect("start"));
    wait_until("sleep to run", || {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "sleep").then_some(())
    })
    .expect("started");
    assert_eq!(
        fx.state(Runtime::Berth, &id).expect("state")["status"],
        "running"
    );
    let list = ok(&fx
        .cmd(Runtime::Berth, &["list", "--format", "json"])
        .expect("list"));
    assert!(list.contains(&id), "{list}");

    // exec runs inside: same hostname and pid namespace, own process.
    let out = ok(&fx
        .cmd(
            Runtime::Berth,
            &["exec", &id, "sh", "-c", "hostname; cat /proc/1/comm"],
        )
        .expect("exec"));
    assert_eq!(out, "h-life\nsleep\n");
    let out = ok(&fx
        .cmd(
            Runtime::Berth,
            &[
                "exec",
                "-u",
                "1000:1001",
                "--cwd",
                "/tmp",
                "-e",
                "A=b c",
                &id,
                "sh",
                "-c",
                "id -u; id -g; pwd; echo $A",
            ],
        )
        .expect("exec as user"));
    assert_eq!(out, "1000\n1001\n/tmp\nb c\n");
    let code = fx
        .cmd(Runtime::Berth, &["exec", &id, "sh", "-c", "exit 4"])
        .expect("exec");
    assert_eq!(code.status.code(), Some(4));
    let ps = ok(&fx
        .cmd(Runtime::Berth, &["ps", "--format", "json", &id])
        .expect("ps"));
    let pids: Vec<i32> = serde_json::from_str(&ps).expect("ps json");
    assert_eq!(pids, vec![pid]);

    // delete refuses a running container without --force.
    let out = fx.cmd(Runtime::Berth, &["delete", &id]).expect("delete");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("still running"), "{}", stderr(&out));

    ok(&fx
        .cmd(Runtime::Berth, &["kill", &id, "KILL"])
        .expect("kill"));
    let state = fx.wait_exit(&id);
    assert_eq!(state["exit"]["signal"], 9, "{state}");
    assert_eq!(state["exit"]["oom_killed"], false, "{state}");

    ok(&fx.cmd(Runtime::Berth, &["delete", &id]).expect("delete"));
    ok(&fx
        .cmd(Runtime::Berth, &["delete", &id])
        .expect("delete again"));
    assert!(!fx.state_root(Runtime::Berth).join(&id).exists());
    assert!(!fx.cgroup_dir("memory", "life").exists());
    assert!(!fx.cgroup_dir("pids", "life").exists());
    // In every hierarchy (the hybrid host's v2 one included).
    assert!(!common::cgroup_exists(&format!("{}/life", fx.cgroup)));
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    let out = fx.cmd(Runtime::Berth, &["state", &id]).expect("state");
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn exit_code_is_recorded_after_create_and_start() {
    let fx = Fixture::new("exitcode").expect("fixture");
    let spec = fx.spec("five", &["sh", "-c", "echo to-the-log; exit 5"], |_| {});
    let bundle = fx.bundle("five", &spec).expect("bundle");
    let id = fx.id("five");
    fx.start(Runtime::Berth, &bundle, &id).expect("start");
    let state = fx.wait_exit(&id);
    assert_eq!(state["exit"]["code"], 5, "{state}");
    // Stdio went where the caller pointed it (a file).
    let log = std::fs::read_to_string(fx.log_path(&id)).expect("log");
    assert_eq!(log, "to-the-log\n");
    ok(&fx.cmd(Runtime::Berth, &["delete", &id]).expect("delete"));
}

#[test]
fn sigterm_then_sigkill_after_the_grace() {
    let fx = Fixture::new("grace").expect("fixture");
    // PID 1 without a SIGTERM handler ignores SIGTERM.
    let spec = fx.spec("stubborn", &["sleep", "600"], |_| {});
    let bundle = fx.bundle("stubborn", &spec).expect("bundle");
    let id = fx.id("stubborn");
    fx.start(Runtime::Berth, &bundle, &id).expect("start");
    ok(&fx
        .cmd(Runtime::Berth, &["kill", "--grace", "0.5", &id, "TERM"])
        .expect("kill"));
    let state = fx.wait_exit(&id);
    assert_eq!(state["exit"]["signal"], 9, "{state}");
    ok(&fx.cmd(Runtime::Berth, &["delete", &id]).expect("delete"));
}

#[test]
fn minimal_init_forwards_signals_and_reaps_zombies() {
    let fx = Fixture::new("init").expect("fixture");
    // The shell leaves an orphan that exits at once: only a reaping PID 1 keeps
    // it from staying a zombie.
    let spec = fx.spec(
        "init",
        &["sh", "-c", "(sleep 0 &); exec sleep 600"],
        |spec| {
            let mut annotations: HashMap<String, String> =
                spec.annotations().clone().unwrap_or_default();
            annotations.insert("run.berth.init".into(), "true".into());
            spec.set_annotations(Some(annotations));
        },
    );
    let bundle = fx.bundle("init", &spec).expect("bundle");
    let id = fx.id("init");
    fx.start(Runtime::Berth, &bundle, &id).expect("start");
    let pid = fx.state(Runtime::Berth, &id).expect("state")["pid"]
        .as_i64()
        .expect("pid");
    wait_until("sleep 600 under the init", || {
        let ps = fx.cmd(Runtime::Berth, &["ps", &id]).ok()?;
        stdout(&ps).contains("sleep 600").then_some(())
    })
    .expect("sleep");
    // PID 1 is berth-init (exec'd from its memfd), which runs the command.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    assert!(
        cmdline.starts_with(b"berth-init\0--\0/bin/sh\0sh\0-c\0"),
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
    assert_eq!(comm.trim(), "berth-init");
    // No zombie in the container.
    wait_until("no zombies", || {
        let out = fx
            .cmd(
                Runtime::Berth,
                &["exec", &id, "sh", "-c", "cat /proc/[0-9]*/stat"],
            )
            .ok()?;
        let text = stdout(&out);
        (!text.is_empty() && !text.lines().any(|l| l.contains(") Z "))).then_some(())
    })
    .expect("reaped");
    // The init is berth's code: not dumpable, so its /proc entries stay closed.
    let out = fx
        .cmd(Runtime::Berth, &["exec", &id, "readlink", "/proc/1/exe"])
        .expect("exec");
    assert!(
        !out.status.success(),
        "readlink /proc/1/exe gave {}",
        stdout(&out)
    );
    // SIGTERM to PID 1 reaches sleep, which dies of it; init exits 128+15.
    ok(&fx
        .cmd(Runtime::Berth, &["kill", &id, "TERM"])
        .expect("kill"));
    let state = fx.wait_exit(&id);
    assert_eq!(state["exit"]["code"], 143, "{state}");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists() || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.contains(") Z ")
        }
    );
    ok(&fx.cmd(Runtime::Berth, &["delete", &id]).expect("delete"));
}

/// Asks for berth's minimal init as PID 1.
fn with_init(spec: &mut oci_spec::runtime::Spec) {
    let mut annotations: HashMap<String, String> = spec.annotations().clone().unwrap_or_default();
    annotations.insert("run.berth.init".into(), "true".into());
    spec.set_annotations(Some(annotations));
}

#[test]
fn minimal_init_exits_as_its_child_did() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new("initexit").expect("fixture");
    // Two programs that are there at create (which looks the program up) and
    // gone, or no longer executable, at start: berth-init's own exec fails.
    for name in ["gone", "noexec"] {
        let path = fx.rootfs.join("tmp").join(name);
        std::fs::write(&path, "#!/bin/sh\nexit 0\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let cases: [(&str, &[&str], i64); 5] = [
        ("three", &["sh", "-c", "exit 3"], 3),
        ("zero", &["true"], 0),
        ("killed", &["sh", "-c", "kill -KILL $$"], 137),
        ("gone", &["/tmp/gone"], 127),
        ("noexec", &["/tmp/noexec"], 126),
    ];
    for (name, args, code) in cases {
        let spec = fx.spec(name, args, with_init);
        let bundle = fx.bundle(name, &spec).expect("bundle");
        let id = fx.id(name);
        fx.create_with(Runtime::Berth, &bundle, &id, &[])
            .expect("create");
        let path = fx.rootfs.join("tmp").join(name);
        match name {
            "gone" => std::fs::remove_file(&path).expect("remove"),
            "noexec" => std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                .expect("chmod"),
            _ => {}
        }
        ok(&fx.cmd(Runtime::Berth, &["start", &id]).expect("start"));
        let state = fx.wait_exit(&id);
        assert_eq!(state["exit"]["code"], code, "{name}: {state}");
        let log = std::fs::read_to_string(fx.log_path(&id)).expect("log");
        match name {
            "gone" => assert_eq!(log, "berth-init: exec /tmp/gone: errno 2\n"),
            "noexec" => assert_eq!(log, "berth-init: exec /tmp/noexec: errno 13\n"),
            _ => assert_eq!(log, "", "{name}"),
        }
        ok(&fx.cmd(Runtime::Berth, &["delete", &id]).expect("delete"));
    }
}

#[test]
fn minimal_init_forwards_any_signal_and_reaps_orphans() {
    let fx = Fixture::new("initsig").expect("fixture");
    // The orphan (sh's child, reparented to PID 1 when sh execs) ends once it
    // has written its pid; the main program traps USR1 and exits 7 on it.
    let spec = fx.spec(
        "initsig",
        &[
            "sh",
            "-c",
            "(sh -c 'echo $$ > /tmp/orphan' &); trap 'exit 7' USR1; while :; do sleep 0.05; done",
        ],
        with_init,
    );
    let bundle = fx.bundle("initsig", &spec).expect("bundle");
    let id = fx.id("initsig");
    fx.start(Runtime::Berth, &bundle, &id).expect("start");
    let orphan = fx.rootfs.join("tmp/orphan");
    let orphan_pid = wait_until("the orphan to write its pid", || {
        let text = std::fs::read_to_string(&orphan).ok()?;
        text.trim().parse::<i64>().ok()
    })
    .expect("orphan");
    let _ = std::fs::remove_file(&orphan);
    // Reaped by berth-init: its pid is gone from the container.
    wait_until("the orphan to be reaped", || {
        let out = fx
            .cmd(
                Runtime::Berth,
                &["exec", &id, "cat", &format!("/proc/{orphan_pid}/stat")],
            )
            .ok()?;
        (!out.status.success()).then_some(())
    })
    .expect("reaped");
    ok(&fx
        .cmd(Runtime::Berth, &["kill", &id, "USR1"])
        .expect("kill"));
    let state = fx.wait_exit(&id);
    assert_eq!(state["exit"]["code"], 7, "{state}");
    ok(&fx.cmd(Runtime::Berth, &["delete", &id]).expect("delete"));
}

/// Kills the namespace-holding process at the end, also on panic.
struct Holder(std::process::Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn joins_an_existing_network_namespace_by_path() {
    let fx = Fixture::new("netns").expect("fixture");
    // A network namespace held by a process of the test.
    let holder = Holder(
        std::process::Command::new("unshare")
            .args(["--net", "sleep", "600"])
            .spawn()
            .expect("unshare"),
    );
    let ns_path = format!("/proc/{}/ns/net", holder.0.id());
    let expected = wait_until("the holder's namespace", || {
        let link = std::fs::read_link(&ns_path).ok()?;
        let own = std::fs::read_link("/proc/self/ns/net").ok()?;
        (link != own).then_some(link)
    })
    .expect("netns");
    let spec = fx.spec("netns", &["readlink", "/proc/self/ns/net"], |spec| {
        let mut linux = spec.linux().clone().expect("linux");
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        for ns in namespaces.iter_mut() {
            if ns.typ() == oci_spec::runtime::LinuxNamespaceType::Network {
                ns.set_path(Some(ns_path.clone().into()));
            }
        }
        linux.set_namespaces(Some(namespaces));
        spec.set_linux(Some(linux));
    });
    let bundle = fx.bundle("netns", &spec).expect("bundle");
    let out = fx
        .run(Runtime::Berth, &bundle, &fx.id("netns"))
        .expect("run");
    drop(holder);
    assert_eq!(ok(&out).trim(), expected.to_string_lossy());
}

#[test]
fn docker_default_capabilities_when_the_spec_names_none() {
    let fx = Fixture::new("defcaps").expect("fixture");
    let spec = fx.spec("caps", &["grep", "^Cap", "/proc/self/status"], |spec| {
        let mut p = spec.process().clone().expect("process");
        p.set_capabilities(None);
        spec.set_process(Some(p));
    });
    let bundle = fx.bundle("caps", &spec).expect("bundle");
    let out = ok(&fx
        .run(Runtime::Berth, &bundle, &fx.id("caps"))
        .expect("run"));
    // Docker's 14 default capabilities.
    for set in ["CapPrm", "CapEff", "CapBnd"] {
        assert!(
            out.contains(&format!("{set}:\t00000000a80425fb")),
            "{set} in {out}"
        );
    }
    assert!(out.contains("CapInh:\t0000000000000000"), "{out}");
}

#[test]
fn preserved_fds_reach_the_container() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fx = Fixture::new("fds").expect("fixture");
    let spec = fx.spec(
        "fds",
        &["sh", "-c", "echo via-fd-3 >&3; ls /proc/self/fd"],
        |_| {},
    );
    let bundle = fx.bundle("fds", &spec).expect("bundle");
    let id = fx.id("fds");
    let target = fx.dir.path().join("fd3.txt");
    let file = std::fs::File::create(&target).expect("file");
    let raw = file.as_raw_fd();
    let mut cmd = std::process::Command::new(common::BERTH);
    cmd.arg("--root")
        .arg(fx.state_root(Runtime::Berth))
        .args(["run", "--preserve-fds", "1", "--bundle"])
        .arg(&bundle)
        .arg(&id);
    // SAFETY: dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec: clear it then.
            let rc = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run");
    let listed = ok(&out);
    assert_eq!(
        std::fs::read_to_string(&target).expect("read"),
        "via-fd-3\n"
    );
    // stdio, fd 3, and the one ls opens for /proc/self/fd: nothing else leaks in.
    let fds: Vec<&str> = listed.lines().collect();
    assert_eq!(fds, vec!["0", "1", "2", "3", "4"], "{listed}");
}

#[test]
fn hostname_and_domainname_are_set() {
    // runc 1.1 ignores domainname (spec 1.1 added it), so this is berth-only.
    let fx = Fixture::new("uts").expect("fixture");
    let spec = fx.spec(
        "uts",
        &["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"],
        |spec| {
            spec.set_domainname(Some("example.test".into()));
        },
    );
    let bundle = fx.bundle("uts", &spec).expect("bundle");
    let out = ok(&fx.run(Runtime::Berth, &bundle, &fx.id("uts")).expect("run"));
    assert_eq!(out, "h-uts\nexample.test\n");
}

#[test]
fn joining_a_mount_namespace_leaves_it_untouched() {
    let fx = Fixture::new("joinmnt").expect("fixture");
    let spec_a = fx.spec(
        "mnt-a",
        &[
            "sh",
            "-c",
            "echo a-was-here > /dev/shm/marker; exec sleep 600",
        ],
        |_| {},
    );
    let bundle_a = fx.bundle("mnt-a", &spec_a).expect("bundle");
    let a = fx.id("mnt-a");
    fx.start(Runtime::Berth, &bundle_a, &a).expect("start a");
    let pid = fx.state(Runtime::Berth, &a).expect("state")["pid"]
        .as_i64()
        .expect("pid");
    let mounts_of_a =
        || std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    wait_until("a's marker", || {
        let out = fx
            .cmd(Runtime::Berth, &["exec", &a, "cat", "/dev/shm/marker"])
            .ok()?;
        (stdout(&out) == "a-was-here\n").then_some(())
    })
    .expect("marker");
    let before = mounts_of_a();

    let spec_b = fx.spec("mnt-b", &["cat", "/dev/shm/marker"], |spec| {
        let mut linux = spec.linux().clone().expect("linux");
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        for ns in namespaces.iter_mut() {
            if ns.typ() == oci_spec::runtime::LinuxNamespaceType::Mount {
                ns.set_path(Some(format!("/proc/{pid}/ns/mnt").into()));
            }
        }
        linux.set_namespaces(Some(namespaces));
        spec.set_linux(Some(linux));
    });
    let bundle_b = fx.bundle("mnt-b", &spec_b).expect("bundle");
    let out = fx
        .run(Runtime::Berth, &bundle_b, &fx.id("mnt-b"))
        .expect("run b");
    assert_eq!(ok(&out), "a-was-here\n");
    assert_eq!(mounts_of_a(), before, "b changed a's mount namespace");
    ok(&fx
        .cmd(Runtime::Berth, &["delete", "--force", &a])
        .expect("delete"));
}

#[test]
fn run_forwards_signals_and_cleans_up() {
    let fx = Fixture::new("runsig").expect("fixture");
    let spec = fx.spec("runsig", &["sleep", "600"], |spec| {
        let mut annotations: HashMap<String, String> =
            spec.annotations().clone().unwrap_or_default();
        annotations.insert("run.berth.init".into(), "true".into());
        spec.set_annotations(Some(annotations));
    });
    let bundle = fx.bundle("runsig", &spec).expect("bundle");
    let id = fx.id("runsig");
    let mut child = std::process::Command::new(common::BERTH)
        .arg("--root")
        .arg(fx.state_root(Runtime::Berth))
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run");
    let s = wait_until("the container to run", || {
        let s = fx.state(Runtime::Berth, &id).ok()?;
        (s["status"] == "running").then_some(s)
    })
    .expect("running");
    let init = s["pid"].as_i64().expect("pid");
    let cmdline = std::fs::read(format!("/proc/{init}/cmdline")).expect("cmdline");
    assert!(
        cmdline.starts_with(b"berth-init\0--\0/bin/sleep\0sleep\x00600\0"),
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(143));
    assert!(!fx.state_root(Runtime::Berth).join(&id).exists());
    assert!(!common::cgroup_exists(&format!("{}/runsig", fx.cgroup)));
}

#[test]
fn delete_of_a_created_container_is_refused_without_force() {
    let fx = Fixture::new("delcreated").expect("fixture");
    let spec = fx.spec("created", &["true"], |_| {});
    let bundle = fx.bundle("created", &spec).expect("bundle");
    let id = fx.id("created");
    fx.create_with(Runtime::Berth, &bundle, &id, &[])
        .expect("create");
    // runtime.md: deleting a container that is not stopped is an error and
    // changes nothing.
    let out = fx.cmd(Runtime::Berth, &["delete", &id]).expect("delete");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is created, not stopped"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fx.state(Runtime::Berth, &id).expect("state")["status"],
        "created"
    );
    ok(&fx
        .cmd(Runtime::Berth, &["delete", "--force", &id])
        .expect("delete --force"));
    assert!(fx.state(Runtime::Berth, &id).is_err());
}

/// `BERTH_RUNTIME_NO_MONITOR=1` (berth's shim): `create` forks no monitor, and
/// init is reparented to the caller, a child subreaper, once `create` exits.
/// Nothing records the exit then: the reaper owns it.
#[test]
fn create_without_a_monitor_hands_init_to_the_callers_subreaper() {
    use std::os::unix::process::CommandExt;
    let fx = Fixture::new("handoff").expect("fixture");
    let spec = fx.spec("handoff", &["sleep", "600"], |_| {});
    let bundle = fx.bundle("handoff", &spec).expect("bundle");
    let id = fx.id("handoff");
    let pid_file = fx.dir.path().join("handoff.pid");
    // The caller: a shell that is a child subreaper (kept across its exec).
    // It creates and starts the container, then prints its own pid, init's
    // parent and how many processes still have create's command line (a
    // monitor would; init has exec'd).
    let script = r#"BERTH_RUNTIME_NO_MONITOR=1 "$0" --root "$1" create --bundle "$2" --pid-file "$3" "$4" >/dev/null 2>&1 || exit 1
"$0" --root "$1" start "$4" || exit 1
pid=$(cat "$3")
echo "$$ $(awk '/^PPid/{print $2}' /proc/$pid/status) $(pgrep -f -c -- "create --bundle $2")""#;
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .arg(common::BERTH)
        .arg(fx.state_root(Runtime::Berth))
        .arg(&bundle)
        .arg(&pid_file)
        .arg(&id);
    // SAFETY: prctl with integer arguments, in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("the subreaper shell");
    let _cleanup = Delete(&fx, &id);
    let text = ok(&out);
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{text}");
    assert_eq!(fields[1], fields[0], "init's parent is the caller: {text}");
    assert_eq!(fields[2], "0", "no monitor: {text}");
    let state = fx.state(Runtime::Berth, &id).expect("state");
    assert_eq!(state["status"], "running", "{state}");
    ok(&fx
        .cmd(Runtime::Berth, &["kill", &id, "KILL"])
        .expect("kill"));
    let state = wait_until("the container to stop", || {
        let s = fx.state(Runtime::Berth, &id).ok()?;
        (s["status"] == "stopped").then_some(s)
    })
    .expect("stopped");
    assert!(
        state.get("exit").is_none(),
        "no monitor recorded it: {state}"
    );
}

/// Deletes a container when dropped (also when the test fails).
struct Delete<'a>(&'a Fixture, &'a str);

impl Drop for Delete<'_> {
    fn drop(&mut self) {
        let _ = self.0.cmd(Runtime::Berth, &["delete", "--force", self.1]);
    }
}
