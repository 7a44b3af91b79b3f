//! The same bundles under berth-runtime and runc: what the process inside sees
//! must be the same where the spec defines it.

mod common;

use common::{Fixture, Runtime, stderr, stdout};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    PosixRlimitBuilder, PosixRlimitType, UserBuilder,
};

/// Runs the same spec under both runtimes; returns (berth output, runc output).
fn both(
    fx: &Fixture,
    name: &str,
    script: &str,
    edit: impl Fn(&mut oci_spec::runtime::Spec),
) -> (String, String) {
    let mut outs = Vec::new();
    for rt in [Runtime::Berth, Runtime::Runc] {
        let tag = format!("{name}-{}", if rt == Runtime::Berth { "b" } else { "r" });
        let spec = fx.spec(&tag, &["sh", "-c", script], &edit);
        let bundle = fx.bundle(&tag, &spec).expect("bundle");
        let out = fx.run(rt, &bundle, &fx.id(&tag)).expect("run");
        assert!(
            out.status.success(),
            "{rt:?} failed ({}): {}{}",
            out.status,
            stdout(&out),
            stderr(&out)
        );
        outs.push(stdout(&out).replace(&tag, "TAG"));
    }
    let runc = outs.pop().expect("runc");
    let berth = outs.pop().expect("berth");
    (berth, runc)
}

#[test]
fn process_sees_the_same_as_under_runc() {
    let fx = Fixture::new("diff-proc").expect("fixture");
    let script = "hostname; id; umask; pwd; echo FOO=$FOO; ulimit -n; ulimit -H -n; \
                  grep -E '^(Cap|NoNewPrivs|Groups)' /proc/self/status; cat /proc/self/oom_score_adj";
    let (berth, runc) = both(&fx, "proc", script, |spec| {
        let mut p = spec.process().clone().expect("process");
        p.set_user(
            UserBuilder::default()
                .uid(1000u32)
                .gid(1000u32)
                .additional_gids(vec![10u32, 20])
                .umask(0o027u32)
                .build()
                .expect("user"),
        );
        p.set_cwd("/tmp".into());
        let mut env = p.env().clone().unwrap_or_default();
        env.push("FOO=bar baz".into());
        p.set_env(Some(env));
        p.set_rlimits(Some(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(256u64)
                .hard(512u64)
                .build()
                .expect("rlimit"),
        ]));
        p.set_oom_score_adj(Some(123));
        spec.set_process(Some(p));
    });
    assert_eq!(berth, runc);
    assert!(berth.contains("h-TAG"), "{berth}");
    assert!(berth.contains("uid=1000 gid=1000 groups=10,20"), "{berth}");
    assert!(berth.contains("0027"), "{berth}");
    assert!(berth.contains("FOO=bar baz"), "{berth}");
    assert!(berth.contains("256\n512\n"), "{berth}");
    assert!(berth.contains("NoNewPrivs:\t1"), "{berth}");
    assert!(berth.contains("123"), "{berth}");
}

#[test]
fn mounts_and_cgroup_limits_match_runc() {
    let fx = Fixture::new("diff-mounts").expect("fixture");
    // Mount points and filesystem types (options of the cgroup tmpfs differ: berth
    // makes it read-only as the spec asks), then the limits the container sees.
    let script = "cut -d' ' -f5,8 /proc/self/mountinfo; \
                  cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max \
                      /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us \
                      /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus 2>&1; \
                  ls /dev; touch /sys/x 2>&1; cat /proc/kcore | wc -c; \
                  echo 1 > /proc/sys/kernel/domainname 2>&1; echo done";
    let (berth, runc) = both(&fx, "mounts", script, |spec| {
        common::set_resources(
            spec,
            LinuxResourcesBuilder::default()
                .memory(
                    LinuxMemoryBuilder::default()
                        .limit(64i64 << 20)
                        .build()
                        .expect("mem"),
                )
                .pids(
                    LinuxPidsBuilder::default()
                        .limit(42i64)
                        .build()
                        .expect("pids"),
                )
                .cpu(
                    LinuxCpuBuilder::default()
                        .quota(50_000i64)
                        .period(100_000u64)
                        .shares(512u64)
                        .cpus("0")
                        .build()
                        .expect("cpu"),
                )
                .build()
                .expect("resources"),
        );
    });
    assert_eq!(berth, runc);
    for expected in [
        "/proc proc",
        "/dev tmpfs",
        "/dev/pts devpts",
        "/dev/shm tmpfs",
        "/dev/mqueue mqueue",
        "/sys sysfs",
    ] {
        assert!(berth.contains(expected), "{expected} missing in {berth}");
    }
    for expected in [
        "67108864\n42\n50000\n100000\n512\n0\n",
        "null",
        "urandom",
        "ptmx",
        "Read-only file system",
    ] {
        assert!(berth.contains(expected), "{expected} missing in {berth}");
    }
}

#[test]
fn exit_codes_and_signals_match_runc() {
    let fx = Fixture::new("diff-exit").expect("fixture");
    for (i, (script, expected)) in [
        ("exit 7", 7),
        ("exit 255", 255),
        // PID 1 of a pid namespace ignores signals sent from inside it.
        ("kill -9 $$; exit 3", 3),
        ("true", 0),
    ]
    .iter()
    .enumerate()
    {
        let mut codes = Vec::new();
        for rt in [Runtime::Berth, Runtime::Runc] {
            let tag = format!("exit{i}-{}", if rt == Runtime::Berth { "b" } else { "r" });
            let spec = fx.spec(&tag, &["sh", "-c", script], |_| {});
            let bundle = fx.bundle(&tag, &spec).expect("bundle");
            let out = fx.run(rt, &bundle, &fx.id(&tag)).expect("run");
            codes.push(out.status.code());
        }
        assert_eq!(codes, vec![Some(*expected), Some(*expected)], "{script}");
    }
}

#[test]
fn extra_mounts_and_read_only_root_match_runc() {
    let fx = Fixture::new("diff-extra").expect("fixture");
    let shared = fx.dir.path().join("shared");
    std::fs::create_dir_all(&shared).expect("mkdir");
    std::fs::write(shared.join("hello.txt"), "from the host\n").expect("write");
    let script = "cat /data/hello.txt; touch /data/x 2>&1; touch /scratch/y && echo tmpfs-ok; \
                  touch /rootfile 2>&1; grep -E ' /(data|scratch) ' /proc/self/mountinfo | cut -d' ' -f5,6,9";
    let (berth, runc) = both(&fx, "extra", script, |spec| {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        mounts.push(
            oci_spec::runtime::MountBuilder::default()
                .destination("/data")
                .typ("bind")
                .source(&shared)
                .options(vec!["rbind".to_string(), "ro".to_string()])
                .build()
                .expect("bind"),
        );
        mounts.push(
            oci_spec::runtime::MountBuilder::default()
                .destination("/scratch")
                .typ("tmpfs")
                .source("tmpfs")
                .options(vec!["nosuid".to_string(), "size=1m".to_string()])
                .build()
                .expect("tmpfs"),
        );
        spec.set_mounts(Some(mounts));
        let mut root = spec.root().clone().expect("root");
        root.set_readonly(Some(true));
        spec.set_root(Some(root));
    });
    assert_eq!(berth, runc);
    assert!(berth.contains("from the host"), "{berth}");
    assert!(berth.contains("tmpfs-ok"), "{berth}");
    assert_eq!(berth.matches("Read-only file system").count(), 2, "{berth}");
}

#[test]
fn device_cgroup_denies_what_the_spec_denies() {
    let fx = Fixture::new("diff-devices").expect("fixture");
    // runc's default rule set: deny everything, then the standard nodes.
    let script = "echo x > /dev/null && echo null-ok; head -c 1 /dev/zero | wc -c; \
                  mknod /tmp/disk-$(hostname) b 8 0 && echo mknod-ok; \
                  head -c 1 /tmp/disk-$(hostname) 2>&1 | sed 's/disk-.*:/disk:/'";
    let (berth, runc) = both(&fx, "devices", script, |spec| {
        common::set_resources(
            spec,
            LinuxResourcesBuilder::default()
                .devices(vec![
                    oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
                        .allow(false)
                        .access("rwm")
                        .build()
                        .expect("rule"),
                ])
                .build()
                .expect("resources"),
        );
        let mut p = spec.process().clone().expect("process");
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let mut set = caps.bounding().clone().unwrap_or_default();
        set.insert(oci_spec::runtime::Capability::Mknod);
        caps.set_bounding(Some(set.clone()));
        caps.set_effective(Some(set.clone()));
        caps.set_permitted(Some(set));
        p.set_capabilities(Some(caps));
        spec.set_process(Some(p));
    });
    assert_eq!(berth, runc);
    assert!(berth.contains("null-ok\n1\nmknod-ok\n"), "{berth}");
    assert!(berth.contains("Operation not permitted"), "{berth}");
}

#[test]
fn spec_devices_match_runc() {
    let fx = Fixture::new("diff-specdev").expect("fixture");
    let script = "stat -c '%n %F %t:%T %a %u:%g' /dev/fuse /dev/extra/loop9";
    let (berth, runc) = both(&fx, "specdev", script, |spec| {
        let mut linux = spec.linux().clone().expect("linux");
        linux.set_devices(Some(vec![
            oci_spec::runtime::LinuxDeviceBuilder::default()
                .path("/dev/fuse")
                .typ(oci_spec::runtime::LinuxDeviceType::C)
                .major(10)
                .minor(229)
                .file_mode(0o666u32)
                .build()
                .expect("fuse"),
            oci_spec::runtime::LinuxDeviceBuilder::default()
                .path("/dev/extra/loop9")
                .typ(oci_spec::runtime::LinuxDeviceType::B)
                .major(7)
                .minor(9)
                .file_mode(0o640u32)
                .uid(1000u32)
                .gid(6u32)
                .build()
                .expect("loop"),
        ]));
        spec.set_linux(Some(linux));
    });
    assert_eq!(berth, runc);
    assert!(
        berth.contains("/dev/fuse character special file a:e5 666 0:0"),
        "{berth}"
    );
    assert!(
        berth.contains("/dev/extra/loop9 block special file 7:9 640 1000:6"),
        "{berth}"
    );
}

fn seccomp_profile() -> oci_spec::runtime::LinuxSeccomp {
    use oci_spec::runtime::{
        LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSeccompOperator,
        LinuxSyscallBuilder,
    };
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mode_777 = |index: usize| {
        vec![
            LinuxSeccompArgBuilder::default()
                .index(index)
                .value(0o777u64)
                .op(LinuxSeccompOperator::ScmpCmpEq)
                .build()
                .expect("arg"),
        ]
    };
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .syscalls(vec![
            LinuxSyscallBuilder::default()
                .names(names(&["mkdir", "mkdirat"]))
                .action(LinuxSeccompAction::ScmpActErrno)
                .build()
                .expect("mkdir"),
            LinuxSyscallBuilder::default()
                .names(names(&["uname"]))
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(38u32)
                .build()
                .expect("uname"),
            LinuxSyscallBuilder::default()
                .names(names(&["chmod"]))
                .action(LinuxSeccompAction::ScmpActErrno)
                .args(mode_777(1))
                .build()
                .expect("chmod"),
            LinuxSyscallBuilder::default()
                .names(names(&["fchmodat", "fchmodat2"]))
                .action(LinuxSeccompAction::ScmpActErrno)
                .args(mode_777(2))
                .build()
                .expect("fchmodat"),
        ])
        .build()
        .expect("profile")
}

#[test]
fn seccomp_profile_acts_as_under_runc() {
    let fx = Fixture::new("diff-seccomp").expect("fixture");
    // uname fails with ENOSYS: busybox then prints an empty line instead of "Linux".
    let script = "mkdir /tmp/d 2>&1; touch /tmp/f; chmod 755 /tmp/f && echo chmod-755-ok; \
                  chmod 777 /tmp/f 2>&1; uname -s 2>&1; echo uname=$?; echo done";
    for nnp in [true, false] {
        let name = if nnp { "sc-nnp" } else { "sc-caps" };
        let (berth, runc) = both(&fx, name, script, |spec| {
            let mut linux = spec.linux().clone().expect("linux");
            linux.set_seccomp(Some(seccomp_profile()));
            spec.set_linux(Some(linux));
            let mut p = spec.process().clone().expect("process");
            p.set_no_new_privileges(Some(nnp));
            spec.set_process(Some(p));
        });
        assert_eq!(berth, runc, "no_new_privs {nnp}");
        assert_eq!(
            berth.matches("Operation not permitted").count(),
            2,
            "{berth}"
        );
        assert!(berth.contains("chmod-755-ok"), "{berth}");
        assert!(!berth.contains("Linux"), "{berth}");
        assert!(berth.ends_with("done\n"), "{berth}");
    }
}

mod syscalls {
    #![allow(dead_code)]
    include!("../src/seccomp/table.rs");
}

#[test]
fn seccomp_allow_list_with_default_errno_acts_as_under_runc() {
    use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder};
    let fx = Fixture::new("diff-seccomp-list").expect("fixture");
    // Docker's shape: deny by default, allow a long list (here: everything this
    // architecture has but mkdir/mkdirat and sync), kill on sync.
    let allowed: Vec<String> = syscalls::TABLE
        .iter()
        .map(|(n, _)| n.to_string())
        .filter(|n| !matches!(n.as_str(), "mkdir" | "mkdirat" | "sync"))
        .collect();
    let profile = LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(1u32)
        .syscalls(vec![
            LinuxSyscallBuilder::default()
                .names(allowed)
                .action(LinuxSeccompAction::ScmpActAllow)
                .build()
                .expect("allow"),
            LinuxSyscallBuilder::default()
                .names(vec!["sync".to_string()])
                .action(LinuxSeccompAction::ScmpActKillProcess)
                .build()
                .expect("kill"),
        ])
        .build()
        .expect("profile");
    let script = "mkdir /tmp/list-d 2>&1; sync; echo sync=$?; echo done";
    let (berth, runc) = both(&fx, "sclist", script, |spec| {
        let mut linux = spec.linux().clone().expect("linux");
        linux.set_seccomp(Some(profile.clone()));
        spec.set_linux(Some(linux));
    });
    assert_eq!(berth, runc);
    assert!(berth.contains("Operation not permitted"), "{berth}");
    // Killed by SIGSYS (31): 128 + 31.
    assert!(berth.contains("sync=159"), "{berth}");
    assert!(berth.ends_with("done\n"), "{berth}");
}
