//! Bad bundles fail with a clear error and leave nothing behind: no state, no
//! cgroup, no process, no mount, nothing written outside the rootfs.

mod common;

use common::{Fixture, Runtime, cgroup_exists, create_fails, stderr};

#[test]
fn missing_rootfs() {
    let fx = Fixture::new("bad-rootfs").expect("fixture");
    let spec = fx.spec("norootfs", &["true"], |spec| {
        let mut root = spec.root().clone().expect("root");
        root.set_path("does-not-exist".into());
        spec.set_root(Some(root));
    });
    let bundle = fx.bundle("norootfs", &spec).expect("bundle");
    create_fails(&fx, &bundle, &fx.id("a"), "rootfs");
}

#[test]
fn malformed_config() {
    let fx = Fixture::new("bad-json").expect("fixture");
    let bundle = fx.dir.path().join("bundle-malformed");
    std::fs::create_dir_all(&bundle).expect("mkdir");
    std::fs::write(
        bundle.join("config.json"),
        "{\"ociVersion\": \"1.0.2\", \"process\": [",
    )
    .expect("write");
    create_fails(&fx, &bundle, &fx.id("a"), "malformed config.json");
}

#[test]
fn unknown_namespace_type() {
    let fx = Fixture::new("bad-ns").expect("fixture");
    let spec = fx.spec("badns", &["true"], |_| {});
    let bundle = fx.bundle("badns", &spec).expect("bundle");
    let path = bundle.join("config.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    value["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(serde_json::json!({"type": "wormhole"}));
    std::fs::write(&path, serde_json::to_vec(&value).expect("json")).expect("write");
    create_fails(
        &fx,
        &bundle,
        &fx.id("a"),
        "unknown namespace type \"wormhole\"",
    );
}

#[test]
fn mount_target_escaping_through_a_symlink() {
    let fx = Fixture::new("bad-symlink").expect("fixture");
    let outside = fx.dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::os::unix::fs::symlink("../outside", fx.rootfs.join("escape")).expect("symlink");
    let spec = fx.spec("escape", &["true"], |spec| {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        mounts.push(
            oci_spec::runtime::MountBuilder::default()
                .destination("/escape/owned")
                .typ("tmpfs")
                .source("tmpfs")
                .build()
                .expect("mount"),
        );
        spec.set_mounts(Some(mounts));
    });
    let bundle = fx.bundle("escape", &spec).expect("bundle");
    create_fails(&fx, &bundle, &fx.id("a"), "escapes the rootfs");
    assert_eq!(
        std::fs::read_dir(&outside).expect("outside").count(),
        0,
        "wrote outside the rootfs"
    );
    assert!(!cgroup_exists(&format!("{}/escape", fx.cgroup)));
}

#[test]
fn missing_executable() {
    let fx = Fixture::new("bad-exe").expect("fixture");
    let spec = fx.spec("noexe", &["no-such-binary"], |_| {});
    let bundle = fx.bundle("noexe", &spec).expect("bundle");
    create_fails(
        &fx,
        &bundle,
        &fx.id("a"),
        "executable file \"no-such-binary\" not found",
    );
    // `run` fails the same way.
    let out = fx.run(Runtime::Berth, &bundle, &fx.id("b")).expect("run");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    assert!(!fx.state_root(Runtime::Berth).join(fx.id("b")).exists());
    assert!(!fx.cgroup_dir("memory", "noexe").exists());
}

#[test]
fn fake_dev_null_is_not_used_for_masking() {
    let fx = Fixture::new("bad-devnull").expect("fixture");
    // No /dev tmpfs: /dev comes from the image, whose /dev/null points into /proc.
    std::os::unix::fs::symlink("/proc/sys/kernel/core_pattern", fx.rootfs.join("dev/null"))
        .expect("symlink");
    let spec = fx.spec("devnull", &["true"], |spec| {
        let mounts: Vec<_> = spec
            .mounts()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| !m.destination().starts_with("/dev"))
            .collect();
        spec.set_mounts(Some(mounts));
    });
    let bundle = fx.bundle("devnull", &spec).expect("bundle");
    create_fails(&fx, &bundle, &fx.id("a"), "not the null device");
}
