//! User namespaces: a new one with the spec's mappings (under berth-runtime
//! and runc), exec into it, and one joined by path.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{Fixture, Runtime, stderr, stdout, wait_until};
use oci_spec::runtime::{
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Spec,
};

/// The container's ids 0..65536 are the host's HOST..HOST+65536.
const HOST: u32 = 200_000;

fn mapping(host: u32) -> Vec<LinuxIdMapping> {
    vec![
        LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(host)
            .size(65_536u32)
            .build()
            .expect("mapping"),
    ]
}

/// Adds a user namespace: a new one with the mappings above, or `path`.
fn user_namespace(spec: &mut Spec, path: Option<String>) {
    let mut linux = spec.linux().clone().expect("linux");
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    let mut ns = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::User);
    if let Some(path) = path {
        ns = ns.path(path);
    } else {
        linux.set_uid_mappings(Some(mapping(HOST)));
        linux.set_gid_mappings(Some(mapping(HOST)));
    }
    namespaces.push(ns.build().expect("namespace"));
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
}

const SHOW: &str = "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; \
                    echo x > /dev/null && cat /dev/null && echo devices-ok; ls /proc/1/ns >/dev/null && echo proc-ok";

#[test]
fn root_in_the_container_is_the_mapped_host_uid_as_under_runc() {
    let fx = Fixture::new("userns").expect("fixture");
    let mut outputs = Vec::new();
    for rt in [Runtime::Berth, Runtime::Runc] {
        let name = format!("{rt:?}").to_lowercase();
        let spec = fx.spec(&name, &["sh", "-c", SHOW], |spec| {
            user_namespace(spec, None)
        });
        let bundle = fx.bundle(&name, &spec).expect("bundle");
        let out = fx.run(rt, &bundle, &fx.id(&name)).expect("run");
        assert!(out.status.success(), "{rt:?}: {}", stderr(&out));
        outputs.push(stdout(&out));
    }
    let expected = format!(
        "0\n0\n{0}\n{0}\ndevices-ok\nproc-ok\n",
        format_args!("{:>10} {:>10} {:>10}", 0, HOST, 65_536)
    );
    assert_eq!(outputs[0], expected);
    assert_eq!(outputs[0], outputs[1], "berth-runtime and runc differ");
}

#[test]
fn the_host_sees_the_mapped_ids_and_exec_joins_the_namespace() {
    let fx = Fixture::new("userns-exec").expect("fixture");
    let spec = fx.spec("long", &["sleep", "600"], |spec| user_namespace(spec, None));
    let bundle = fx.bundle("long", &spec).expect("bundle");
    let id = fx.id("long");
    fx.start(Runtime::Berth, &bundle, &id).expect("start");
    let pid = fx.state(Runtime::Berth, &id).expect("state")["pid"]
        .as_i64()
        .expect("pid");
    let status = wait_until("sleep to run", || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status.contains("Name:\tsleep").then_some(status)
    })
    .expect("running");
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    assert_eq!(uid_line, format!("Uid:\t{HOST}\t{HOST}\t{HOST}\t{HOST}"));
    // The container's cgroup is its root's.
    let cgroup = fx.cgroup_dir("memory", "long");
    assert_eq!(
        std::fs::metadata(&cgroup).expect("cgroup").uid(),
        HOST,
        "{}",
        cgroup.display()
    );
    // exec lands in the same user namespace, as root of it.
    let out = fx
        .cmd(
            Runtime::Berth,
            &[
                "exec",
                &id,
                "sh",
                "-c",
                "id -u; readlink /proc/self/ns/user",
            ],
        )
        .expect("exec");
    assert!(out.status.success(), "{}", stderr(&out));
    let init_ns = std::fs::read_link(format!("/proc/{pid}/ns/user")).expect("ns");
    assert_eq!(stdout(&out), format!("0\n{}\n", init_ns.display()));
    let out = fx
        .cmd(
            Runtime::Berth,
            &["exec", "-u", "1000:1000", &id, "id", "-u"],
        )
        .expect("exec as user");
    assert_eq!(stdout(&out), "1000\n", "{}", stderr(&out));
}

#[test]
fn a_user_namespace_given_by_path_is_joined() {
    let fx = Fixture::new("userns-join").expect("fixture");
    let spec = fx.spec("owner", &["sleep", "600"], |spec| {
        user_namespace(spec, None)
    });
    let bundle = fx.bundle("owner", &spec).expect("bundle");
    let owner = fx.id("owner");
    fx.start(Runtime::Berth, &bundle, &owner).expect("start");
    let pid = fx.state(Runtime::Berth, &owner).expect("state")["pid"]
        .as_i64()
        .expect("pid");
    let path = format!("/proc/{pid}/ns/user");
    let spec = fx.spec(
        "joiner",
        &["sh", "-c", "id -u; readlink /proc/self/ns/user"],
        |spec| user_namespace(spec, Some(path.clone())),
    );
    let bundle = fx.bundle("joiner", &spec).expect("bundle");
    let out = fx
        .run(Runtime::Berth, &bundle, &fx.id("joiner"))
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let ns = std::fs::read_link(&path).expect("ns");
    assert_eq!(stdout(&out), format!("0\n{}\n", ns.display()));
}

#[test]
fn a_new_user_namespace_without_mappings_is_refused() {
    let fx = Fixture::new("userns-nomap").expect("fixture");
    let spec = fx.spec("nomap", &["true"], |spec| {
        user_namespace(spec, None);
        let mut linux = spec.linux().clone().expect("linux");
        linux.set_gid_mappings(None);
        spec.set_linux(Some(linux));
    });
    let bundle = fx.bundle("nomap", &spec).expect("bundle");
    common::create_fails(
        &fx,
        &bundle,
        &fx.id("nomap"),
        "a new user namespace needs linux.uidMappings and linux.gidMappings",
    );
}
