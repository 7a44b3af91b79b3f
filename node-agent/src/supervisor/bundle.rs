//! The OCI bundle of a task: `config.json` from the image config and the task
//! spec (process, env, user, hostname, limits, mounts, namespaces, cgroup) and
//! Docker's defaults: its capability set and seccomp profile, masked paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_proto::v1::{ServiceSpec, Task};
use oci_spec::runtime::{
    BoxBuilder, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, MountBuilder, ProcessBuilder, RootBuilder, Spec, UserBuilder,
    get_default_mounts, get_default_namespaces,
};

use super::error::{Result, SupervisorError};
use super::process_settings;
use super::seccomp_profile;
use super::user::resolve_user;
use crate::image::ImageConfig;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// CFS period for the CPU quota.
const CPU_PERIOD_US: u64 = 100_000;

/// The task's capability set: Docker's default with the service's cap_add and
/// cap_drop applied (the controller validated the names).
fn task_caps(spec: &ServiceSpec) -> Result<Vec<&'static str>, String> {
    berth_proto::capabilities::effective(&spec.cap_add, &spec.cap_drop).map_err(|e| e.to_string())
}

/// The OCI spelling ("CAP_CHOWN") as oci-spec's type.
fn oci_caps(names: &[&str]) -> Result<std::collections::HashSet<Capability>, String> {
    names
        .iter()
        .map(|n| {
            n.trim_start_matches("CAP_")
                .parse::<Capability>()
                .map_err(|_| format!("capability {n} is unknown to oci-spec"))
        })
        .collect()
}

/// What a bundle is made of.
pub struct BundleInput<'a> {
    pub task: &'a Task,
    pub container_id: &'a str,
    pub image: &'a ImageConfig,
    /// The mounted rootfs.
    pub rootfs: &'a Path,
    /// Top-level cgroup the container's cgroup goes below.
    pub cgroup_parent: &'a str,
    /// A prepared network namespace to join; `None`: a new, loopback-only one.
    pub netns: Option<&'a Path>,
    /// Files (or directories: the secrets tmpfs) bind-mounted read-only,
    /// nosuid, nodev, and noexec unless a config file's mode lets it run:
    /// (path in the container, path on the host).
    pub files: &'a [(String, PathBuf)],
    /// The data directory of each named volume the task mounts.
    pub volumes: &'a super::mounts::VolumePaths,
    /// The init on the host (`--init` tasks; `process_settings::find_init`).
    pub init: Option<&'a Path>,
}

/// The container's hostname: the spec's, or the task id's first 12 characters.
pub fn hostname_of(task: &Task) -> String {
    match task.spec.as_ref().map(|s| s.hostname.as_str()) {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => task.id.chars().take(12).collect(),
    }
}

/// A regular file with an execute bit (a directory's search bits do not count).
fn executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Builds the spec.
pub fn build_spec(input: &BundleInput<'_>) -> Result<Spec> {
    let err = |reason: String| SupervisorError::Bundle {
        container: input.container_id.to_string(),
        reason,
    };
    let spec = input.task.spec.clone().unwrap_or_default();
    let image = input.image;
    let entry = if spec.command.is_empty() {
        &image.entrypoint
    } else {
        &spec.command
    };
    let cmd = if spec.args.is_empty() {
        // Docker: a service command replaces the image's cmd too.
        if spec.command.is_empty() {
            &image.cmd
        } else {
            &Vec::new()
        }
    } else {
        &spec.args
    };
    let mut args: Vec<String> = entry.iter().chain(cmd).cloned().collect();
    if args.is_empty() {
        return Err(err(
            "no command: the image has no entrypoint or cmd and the service sets none".into(),
        ));
    }
    let init = match (spec.init, input.init) {
        (true, Some(binary)) => Some(process_settings::init_mount(binary).map_err(err)?),
        (true, None) => return Err(err("--init: this node has no init binary".into())),
        (false, _) => None,
    };
    if init.is_some() {
        args = process_settings::under_init(args);
    }
    let env = merge_env(&image.env, &spec.env);
    let cwd = [
        spec.workdir.as_str(),
        image.working_dir.as_deref().unwrap_or(""),
    ]
    .into_iter()
    .find(|w| !w.is_empty())
    .unwrap_or("/")
    .to_string();
    if !cwd.starts_with('/') {
        return Err(err(format!("working directory {cwd:?} is not absolute")));
    }
    let user_text = [spec.user.as_str(), image.user.as_deref().unwrap_or("")]
        .into_iter()
        .find(|u| !u.is_empty())
        .unwrap_or("0");
    let user = resolve_user(input.rootfs, user_text).map_err(err)?;
    let cap_names = task_caps(&spec).map_err(err)?;
    let caps = oci_caps(&cap_names).map_err(err)?;
    // Docker's profile lets a capability's syscalls through only with it.
    let seccomp = seccomp_profile::for_service(spec.seccomp.as_ref(), &cap_names)
        .map_err(|e| err(e.to_string()))?;
    // As Docker: bounding, effective and permitted; inheritable and ambient
    // empty (oci-spec's default would put KILL, NET_BIND_SERVICE and
    // AUDIT_WRITE there, which a non-root user's exec would keep as ambient).
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(std::collections::HashSet::new())
        .ambient(std::collections::HashSet::new())
        .build()
        .map_err(|e| err(e.to_string()))?;
    let mut process = ProcessBuilder::default()
        // A tty task runs on a terminal whose master its shim holds (`berth
        // attach`), 24x80 until someone attaches with a size.
        .terminal(spec.tty)
        .args(args)
        .env(env)
        .cwd(cwd)
        .user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid)
                .additional_gids(user.groups)
                .build()
                .map_err(|e| err(e.to_string()))?,
        )
        .capabilities(capabilities)
        .no_new_privileges(true)
        .build()
        .map_err(|e| err(e.to_string()))?;
    let rlimits = process_settings::rlimits(&spec).map_err(err)?;
    if !rlimits.is_empty() {
        // The service's replace the defaults of the same kind (oci-spec's
        // RLIMIT_NOFILE 1024), the others stay.
        let mut all = process.rlimits().clone().unwrap_or_default();
        all.retain(|d| rlimits.iter().all(|r| r.typ() != d.typ()));
        all.extend(rlimits);
        process.set_rlimits(Some(all));
    }
    if spec.tty {
        process.set_console_size(Some(
            BoxBuilder::default()
                .height(24u64)
                .width(80u64)
                .build()
                .map_err(|e| err(e.to_string()))?,
        ));
    }
    let hostname = hostname_of(input.task);
    let mut mounts = get_default_mounts();
    mounts.extend(init);
    for m in &spec.mounts {
        mounts.push(super::mounts::oci_mount(m, input.volumes).map_err(err)?);
    }
    for (destination, source) in input.files {
        // A bind mount does not take its source's nosuid/nodev/noexec (a
        // secrets tmpfs has them): set them on the bind itself. A config
        // file whose mode lets it run (`mode: 0555`: a CGI script, an
        // entrypoint) stays executable, as in Docker.
        let mut options = vec!["rbind", "ro", "nosuid", "nodev"];
        if !executable_file(source) {
            options.push("noexec");
        }
        mounts.push(
            MountBuilder::default()
                .destination(destination)
                .typ("bind")
                .source(source)
                .options(options.into_iter().map(String::from).collect::<Vec<_>>())
                .build()
                .map_err(|e| err(e.to_string()))?,
        );
    }
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces(input.netns))
        .cgroups_path(PathBuf::from(format!(
            "/{}/{}",
            input.cgroup_parent.trim_matches('/'),
            input.container_id
        )))
        .resources(resources(input.task).map_err(err)?)
        .masked_paths(
            [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/proc/scsi",
                "/sys/firmware",
            ]
            .map(String::from)
            .to_vec(),
        )
        .readonly_paths(
            [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ]
            .map(String::from)
            .to_vec(),
        )
        .build()
        .map_err(|e| err(e.to_string()))?;
    linux.set_seccomp(seccomp);
    let mut oci = Spec::default();
    oci.set_process(Some(process));
    oci.set_root(Some(
        RootBuilder::default()
            .path(input.rootfs)
            // As `docker run --read-only`: mounts and /dev stay writable.
            .readonly(spec.read_only_rootfs)
            .build()
            .map_err(|e| err(e.to_string()))?,
    ));
    oci.set_hostname(Some(hostname));
    oci.set_mounts(Some(mounts));
    oci.set_linux(Some(linux));
    let mut annotations = std::collections::HashMap::new();
    annotations.insert("berth.task.id".to_string(), input.task.id.clone());
    annotations.insert("berth.service.name".to_string(), spec.name.clone());
    // berth-runtime's minimal init as PID 1: SIGTERM reaches the task (a bare
    // `sleep` as PID 1 would ignore it and wait out the grace), zombies are
    // reaped. Other runtimes ignore the annotation. With `--init` the
    // service's own init (tini) is PID 1 instead, as Docker's is.
    if !spec.init {
        annotations.insert("run.berth.init".to_string(), "true".to_string());
    }
    if spec.open_stdin {
        // The shim keeps a pipe to the process's stdin (see shim_io.rs).
        annotations.insert(
            super::shim_io::OPEN_STDIN_ANNOTATION.to_string(),
            "true".to_string(),
        );
    }
    oci.set_annotations(Some(process_settings::annotations(&spec, annotations)));
    Ok(oci)
}

/// Writes `config.json` into `dir`.
pub fn write_bundle(dir: &Path, spec: &Spec, container: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| SupervisorError::io("create", dir, e))?;
    spec.save(dir.join("config.json"))
        .map_err(|e| SupervisorError::Bundle {
            container: container.to_string(),
            reason: format!("write config.json in {}: {e}", dir.display()),
        })
}

/// Image env, then the service's, a later KEY replacing an earlier one; PATH
/// defaulted.
pub fn merge_env(image: &[String], service: &[String]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    for e in image.iter().chain(service) {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k).to_string();
        if !values.contains_key(&key) {
            order.push(key.clone());
        }
        values.insert(key, e.clone());
    }
    if !values.contains_key("PATH") {
        order.insert(0, "PATH".into());
        values.insert("PATH".into(), DEFAULT_PATH.into());
    }
    order
        .into_iter()
        .filter_map(|k| values.remove(&k))
        .collect()
}

/// pid, mount, uts, ipc, and the prepared network namespace (or a new one).
fn namespaces(netns: Option<&Path>) -> Vec<LinuxNamespace> {
    let wanted = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Network,
    ];
    let mut ns: Vec<LinuxNamespace> = get_default_namespaces()
        .into_iter()
        .filter(|n| wanted.contains(&n.typ()))
        .collect();
    for typ in wanted {
        if !ns.iter().any(|n| n.typ() == typ) {
            let mut n = LinuxNamespace::default();
            n.set_typ(typ);
            ns.push(n);
        }
    }
    if let Some(path) = netns {
        for n in ns
            .iter_mut()
            .filter(|n| n.typ() == LinuxNamespaceType::Network)
        {
            n.set_path(Some(path.to_path_buf()));
        }
    }
    ns
}

fn resources(task: &Task) -> Result<oci_spec::runtime::LinuxResources, String> {
    let limits = task
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.limits)
        .unwrap_or_default();
    let mut r = LinuxResourcesBuilder::default();
    if limits.memory_bytes > 0 {
        let bytes = i64::try_from(limits.memory_bytes)
            .map_err(|_| format!("memory limit {} is too large", limits.memory_bytes))?;
        r = r.memory(
            LinuxMemoryBuilder::default()
                .limit(bytes)
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    if limits.milli_cpus > 0 {
        let quota = limits.milli_cpus.saturating_mul(CPU_PERIOD_US) / 1000;
        r = r.cpu(
            LinuxCpuBuilder::default()
                .quota(i64::try_from(quota.max(1000)).unwrap_or(i64::MAX))
                .period(CPU_PERIOD_US)
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    if limits.pids > 0 {
        r = r.pids(
            LinuxPidsBuilder::default()
                .limit(i64::try_from(limits.pids).unwrap_or(i64::MAX))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    r.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{ResourceRequirements, Resources};

    static NO_VOLUMES: crate::supervisor::mounts::VolumePaths = std::collections::BTreeMap::new();

    /// The input of a bundle for container c1 below cgroup berth.
    fn input<'a>(t: &'a Task, image: &'a ImageConfig, rootfs: &'a Path) -> BundleInput<'a> {
        BundleInput {
            task: t,
            container_id: "c1",
            image,
            rootfs,
            cgroup_parent: "berth",
            netns: None,
            files: &[],
            volumes: &NO_VOLUMES,
            init: None,
        }
    }

    fn task(spec: ServiceSpec) -> Task {
        Task {
            id: "abcdef0123456789".into(),
            spec: Some(spec),
            ..Task::default()
        }
    }

    #[test]
    fn process_comes_from_image_and_spec() {
        let dir = tempfile::tempdir().unwrap();
        let image = ImageConfig {
            entrypoint: vec!["/bin/ep".into()],
            cmd: vec!["a".into()],
            env: vec!["PATH=/bin".into(), "A=1".into()],
            working_dir: Some("/srv".into()),
            ..ImageConfig::default()
        };
        let t = task(ServiceSpec {
            args: vec!["b".into()],
            env: vec!["A=2".into(), "B=3".into()],
            resources: Some(ResourceRequirements {
                reservations: None,
                limits: Some(Resources {
                    milli_cpus: 500,
                    memory_bytes: 64 << 20,
                    pids: 100,
                }),
            }),
            mounts: vec![berth_proto::v1::Mount {
                kind: berth_proto::v1::mount::Kind::Tmpfs as i32,
                target: "/scratch".into(),
                ..Default::default()
            }],
            ..ServiceSpec::default()
        });
        let spec = build_spec(&input(&t, &image, dir.path())).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &vec!["/bin/ep", "b"]);
        assert_eq!(p.env().as_ref().unwrap(), &vec!["PATH=/bin", "A=2", "B=3"]);
        assert_eq!(p.cwd(), &PathBuf::from("/srv"));
        assert_eq!(spec.hostname().as_deref(), Some("abcdef012345"));
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/berth/c1"))
        );
        let res = linux.resources().as_ref().unwrap();
        assert_eq!(res.memory().unwrap().limit(), Some(64 << 20));
        assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(50_000));
        assert_eq!(res.pids().unwrap().limit(), 100);
        let ns: Vec<_> = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        assert!(ns.contains(&LinuxNamespaceType::Network), "{ns:?}");
        assert!(!ns.contains(&LinuxNamespaceType::User), "{ns:?}");
        assert!(
            spec.mounts()
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.destination() == Path::new("/scratch"))
        );
    }

    #[test]
    fn a_command_replaces_entrypoint_and_cmd_and_none_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let image = ImageConfig {
            entrypoint: vec!["/bin/ep".into()],
            cmd: vec!["a".into()],
            ..ImageConfig::default()
        };
        let t = task(ServiceSpec {
            command: vec!["sh".into(), "-c".into(), "true".into()],
            hostname: "web".into(),
            ..ServiceSpec::default()
        });
        let spec = build_spec(&input(&t, &image, dir.path())).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &vec!["sh", "-c", "true"]);
        assert_eq!(spec.hostname().as_deref(), Some("web"));
        let empty = ImageConfig::default();
        let t = task(ServiceSpec::default());
        let err = build_spec(&input(&t, &empty, dir.path())).unwrap_err();
        assert!(err.to_string().contains("no command"), "{err}");
    }

    #[test]
    fn docker_defaults_and_the_services_security_choices() {
        let dir = tempfile::tempdir().unwrap();
        let image = ImageConfig {
            cmd: vec!["sh".into()],
            ..ImageConfig::default()
        };
        let build = |spec: ServiceSpec| {
            let t = task(spec);
            build_spec(&input(&t, &image, dir.path())).unwrap()
        };
        let caps = |spec: &Spec| {
            let c = spec
                .process()
                .as_ref()
                .unwrap()
                .capabilities()
                .clone()
                .unwrap();
            assert_eq!(c.bounding(), c.effective());
            assert_eq!(c.bounding(), c.permitted());
            assert!(c.inheritable().as_ref().is_none_or(|s| s.is_empty()));
            assert!(c.ambient().as_ref().is_none_or(|s| s.is_empty()));
            c.bounding().clone().unwrap()
        };
        let plain = build(ServiceSpec::default());
        let default_caps = caps(&plain);
        assert_eq!(default_caps.len(), 14);
        assert!(default_caps.contains(&Capability::Chown));
        assert!(!default_caps.contains(&Capability::SysAdmin));
        assert_eq!(plain.root().as_ref().unwrap().readonly(), Some(false));
        let seccomp = plain.linux().as_ref().unwrap().seccomp().as_ref();
        let seccomp = seccomp.expect("Docker's profile by default");
        assert_eq!(
            seccomp.default_action(),
            oci_spec::runtime::LinuxSeccompAction::ScmpActErrno
        );

        let tuned = build(ServiceSpec {
            cap_add: vec!["sys_admin".into()],
            cap_drop: vec!["CAP_CHOWN".into()],
            read_only_rootfs: true,
            seccomp: Some(berth_proto::v1::Seccomp {
                mode: berth_proto::v1::seccomp::Mode::Unconfined as i32,
                profile_json: String::new(),
            }),
            ..ServiceSpec::default()
        });
        let tuned_caps = caps(&tuned);
        assert!(tuned_caps.contains(&Capability::SysAdmin));
        assert!(!tuned_caps.contains(&Capability::Chown));
        assert_eq!(tuned_caps.len(), 14);
        assert_eq!(tuned.root().as_ref().unwrap().readonly(), Some(true));
        assert!(tuned.linux().as_ref().unwrap().seccomp().is_none());

        // With SYS_ADMIN, Docker's profile lets unshare through.
        let admin = build(ServiceSpec {
            cap_add: vec!["SYS_ADMIN".into()],
            ..ServiceSpec::default()
        });
        let allows = |spec: &Spec, call: &str| {
            spec.linux()
                .as_ref()
                .and_then(|l| l.seccomp().as_ref())
                .and_then(|s| s.syscalls().as_ref())
                .is_some_and(|rules| rules.iter().any(|r| r.names().iter().any(|n| n == call)))
        };
        assert!(allows(&admin, "unshare"));
        assert!(!allows(&plain, "unshare"));
        // Every name the controller accepts has an OCI spelling (cap_add ALL).
        let every = berth_proto::capabilities::ALL;
        assert_eq!(oci_caps(every).unwrap().len(), every.len());
    }

    #[test]
    fn ulimits_init_and_container_labels_reach_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let image = ImageConfig {
            cmd: vec!["sh".into()],
            ..ImageConfig::default()
        };
        let t = task(ServiceSpec {
            ulimits: vec![berth_proto::v1::Ulimit {
                name: "nofile".into(),
                soft: 123,
                hard: 456,
            }],
            init: true,
            container_labels: [("team".to_string(), "a".to_string())].into(),
            ..ServiceSpec::default()
        });
        let tini = dir.path().join("tini-static");
        let spec = build_spec(&BundleInput {
            init: Some(&tini),
            ..input(&t, &image, dir.path())
        })
        .unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(
            p.args().as_ref().unwrap(),
            &vec!["/sbin/docker-init", "--", "sh"]
        );
        let nofile = |spec: &Spec| {
            let limits = spec.process().as_ref().unwrap().rlimits().clone();
            let nofile: Vec<_> = limits
                .unwrap_or_default()
                .into_iter()
                .filter(|l| l.typ() == oci_spec::runtime::PosixRlimitType::RlimitNofile)
                .map(|l| (l.soft(), l.hard()))
                .collect();
            nofile
        };
        assert_eq!(nofile(&spec), vec![(123, 456)]);
        let init = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/sbin/docker-init"))
            .expect("the init is mounted");
        assert_eq!(init.source().as_deref(), Some(tini.as_path()));
        let annotations = spec.annotations().as_ref().unwrap();
        assert_eq!(annotations["team"], "a");
        assert!(
            !annotations.contains_key("run.berth.init"),
            "tini is PID 1, not berth-runtime's init"
        );
        // Without the init on the node the bundle is refused, saying so.
        let err = build_spec(&input(&t, &image, dir.path())).unwrap_err();
        assert!(err.to_string().contains("--init"), "{err}");
        // A task without --init keeps berth-runtime's init and the default
        // rlimits.
        let plain = task(ServiceSpec::default());
        let spec = build_spec(&input(&plain, &image, dir.path())).unwrap();
        assert_eq!(nofile(&spec), vec![(1024, 1024)]);
        assert_eq!(
            spec.annotations().as_ref().unwrap()["run.berth.init"],
            "true"
        );
    }
}
