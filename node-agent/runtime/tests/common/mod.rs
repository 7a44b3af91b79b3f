//! Test fixture: a busybox rootfs, bundles built with oci-spec, state roots for
//! berth-runtime and runc, and cgroups under a per-test `berth-test-PID-N` name,
//! all removed at the end (also on panic) and leftovers of crashed runs by prefix.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use oci_spec::runtime::{LinuxBuilder, LinuxResources, ProcessBuilder, RootBuilder, Spec};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth-runtime");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Berth,
    Runc,
}

impl Runtime {
    pub fn binary(self) -> &'static str {
        match self {
            Runtime::Berth => BERTH,
            Runtime::Runc => "runc",
        }
    }
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    /// `berth-test-PID-N`: the top-level cgroup of this test.
    pub cgroup: String,
    pub rootfs: PathBuf,
    containers: std::cell::RefCell<Vec<(Runtime, String)>>,
}

impl Fixture {
    pub fn new(name: &str) -> Result<Fixture> {
        berth_testhost::cgroups::remove_stale();
        remove_stale_dirs();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let cgroup = format!(
            "{}{}-{n}-{name}",
            berth_testhost::cgroups::TEST_PREFIX,
            std::process::id()
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("{cgroup}-"))
            .tempdir()?;
        let rootfs = dir.path().join("rootfs");
        make_busybox_rootfs(&rootfs)?;
        Ok(Fixture {
            dir,
            cgroup,
            rootfs,
            containers: Default::default(),
        })
    }

    pub fn state_root(&self, rt: Runtime) -> PathBuf {
        self.dir.path().join(match rt {
            Runtime::Berth => "state-berth",
            Runtime::Runc => "state-runc",
        })
    }

    /// A container id unique to this test process.
    pub fn id(&self, name: &str) -> String {
        format!("{}-{name}", self.cgroup)
    }

    /// A spec with the given args, its own cgroup below the test's, the shared
    /// rootfs, and whatever `edit` changes.
    pub fn spec(&self, name: &str, args: &[&str], edit: impl FnOnce(&mut Spec)) -> Spec {
        let mut spec = Spec::default();
        let process = ProcessBuilder::default()
            .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .env(vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ])
            .cwd("/")
            .build()
            .expect("process");
        spec.set_process(Some(process));
        spec.set_root(Some(
            RootBuilder::default()
                .path(&self.rootfs)
                .readonly(false)
                .build()
                .expect("root"),
        ));
        spec.set_hostname(Some(format!("h-{name}")));
        let mut linux = spec
            .linux()
            .clone()
            .unwrap_or_else(|| LinuxBuilder::default().build().expect("linux"));
        linux.set_cgroups_path(Some(PathBuf::from(format!("/{}/{name}", self.cgroup))));
        linux.set_resources(Some(LinuxResources::default()));
        spec.set_linux(Some(linux));
        edit(&mut spec);
        spec
    }

    /// Writes a bundle directory holding config.json.
    pub fn bundle(&self, name: &str, spec: &Spec) -> Result<PathBuf> {
        let dir = self.dir.path().join(format!("bundle-{name}"));
        std::fs::create_dir_all(&dir)?;
        spec.save(dir.join("config.json"))?;
        Ok(dir)
    }

    fn remember(&self, rt: Runtime, id: &str) {
        self.containers.borrow_mut().push((rt, id.to_string()));
    }

    /// Runs a runtime subcommand with captured output.
    pub fn cmd(&self, rt: Runtime, args: &[&str]) -> Result<Output> {
        let root = self.state_root(rt);
        Command::new(rt.binary())
            .arg("--root")
            .arg(&root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} {args:?}", rt.binary()))
    }

    /// `run --bundle B ID`: output and exit code.
    pub fn run(&self, rt: Runtime, bundle: &Path, id: &str) -> Result<Output> {
        self.remember(rt, id);
        let bundle = bundle.to_string_lossy().into_owned();
        self.cmd(rt, &["run", "--bundle", &bundle, id])
    }

    /// `create` + `start` of a long-running container, its stdout and stderr
    /// going to `<tempdir>/<id>.log` (the container keeps the caller's stdio, so
    /// a pipe would stay open as long as it runs).
    pub fn start(&self, rt: Runtime, bundle: &Path, id: &str) -> Result<()> {
        self.start_with(rt, bundle, id, &[])
    }

    /// `start` with more flags for `create` (`--console-socket PATH`).
    pub fn start_with(&self, rt: Runtime, bundle: &Path, id: &str, flags: &[&str]) -> Result<()> {
        self.create_with(rt, bundle, id, flags)?;
        let out = self.cmd(rt, &["start", id])?;
        anyhow::ensure!(out.status.success(), "start {id}: {}", stderr(&out));
        Ok(())
    }

    /// `create` alone, its output (and the container's) going to
    /// `<tempdir>/<id>.log` (see `start`).
    pub fn create_with(&self, rt: Runtime, bundle: &Path, id: &str, flags: &[&str]) -> Result<()> {
        self.remember(rt, id);
        let log_path = self.log_path(id);
        let log = std::fs::File::create(&log_path)?;
        let status = Command::new(rt.binary())
            .arg("--root")
            .arg(self.state_root(rt))
            .arg("create")
            .args(flags)
            .arg("--bundle")
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()?;
        anyhow::ensure!(
            status.success(),
            "create {id}: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        Ok(())
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("{id}.log"))
    }

    /// Waits until a berth container's init has ended and its exit is recorded.
    pub fn wait_exit(&self, id: &str) -> serde_json::Value {
        wait_until("the container's exit", || {
            let s = self.state(Runtime::Berth, id).ok()?;
            (s["status"] == "stopped" && s.get("exit").is_some()).then_some(s)
        })
        .expect("exit recorded")
    }

    pub fn state(&self, rt: Runtime, id: &str) -> Result<serde_json::Value> {
        let out = self.cmd(rt, &["state", id])?;
        anyhow::ensure!(out.status.success(), "state {id}: {}", stderr(&out));
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// The host directory of a container's cgroup in a v1 controller hierarchy
    /// (or the unified one on a v2 host).
    pub fn cgroup_dir(&self, controller: &str, name: &str) -> PathBuf {
        let v1 = Path::new("/sys/fs/cgroup").join(controller);
        let base = if v1.is_dir() {
            v1
        } else {
            PathBuf::from("/sys/fs/cgroup")
        };
        base.join(&self.cgroup).join(name)
    }

    /// Stats of a berth container (`events --stats`).
    pub fn stats(&self, id: &str) -> Result<serde_json::Value> {
        let out = self.cmd(Runtime::Berth, &["events", "--stats", id])?;
        anyhow::ensure!(out.status.success(), "events {id}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(v["data"].clone())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for (rt, id) in self.containers.borrow().iter() {
            let _ = self.cmd(*rt, &["delete", "--force", id]);
        }
        if let Err(e) = berth_testhost::cgroups::remove_everywhere(&self.cgroup) {
            eprintln!("cleanup: {e:#}");
        }
    }
}

/// Temporary directories of crashed earlier runs (their test process is gone).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if berth_testhost::cgroups::owner_is_dead(&name) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Sets the spec's resources.
pub fn set_resources(spec: &mut Spec, resources: LinuxResources) {
    let mut linux = spec.linux().clone().expect("linux");
    linux.set_resources(Some(resources));
    spec.set_linux(Some(linux));
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A rootfs of /bin/busybox with one symlink per applet.
pub fn make_busybox_rootfs(rootfs: &Path) -> Result<()> {
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin)?;
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::copy("/bin/busybox", bin.join("busybox")).context("copy /bin/busybox")?;
    let list = Command::new("/bin/busybox").arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet.is_empty() || applet == "busybox" {
            continue;
        }
        std::os::unix::fs::symlink("busybox", bin.join(applet))?;
    }
    Ok(())
}

/// Cgroups of this test left anywhere.
pub fn cgroup_exists(name: &str) -> bool {
    berth_testhost::cgroups::hierarchies()
        .iter()
        .any(|root| root.join(name).exists())
}

pub fn wait_until<T>(what: &str, check: impl FnMut() -> Option<T>) -> Result<T> {
    berth_testhost::wait_until(what, Duration::from_secs(30), check)
}

/// Runs `create` and checks the failure and the absence of leftovers.
pub fn create_fails(fx: &Fixture, bundle: &Path, id: &str, expected: &str) -> String {
    let b = bundle.to_string_lossy().into_owned();
    let out = fx
        .cmd(Runtime::Berth, &["create", "--bundle", &b, id])
        .expect("create");
    assert!(!out.status.success(), "create of a bad bundle succeeded");
    let err = stderr(&out);
    assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    assert!(
        err.contains(&b) || err.contains(id),
        "error names neither bundle nor container: {err}"
    );
    let root = fx.state_root(Runtime::Berth);
    assert!(!root.join(id).exists(), "state left behind");
    let list = fx.cmd(Runtime::Berth, &["list", "--quiet"]).expect("list");
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "");
    // The container's cgroup (if it was made) is gone; the test's own top-level
    // directory holds nothing.
    for root in berth_testhost::cgroups::hierarchies() {
        let top = root.join(&fx.cgroup);
        if top.exists() {
            let children: Vec<_> = std::fs::read_dir(&top)
                .expect("read cgroup")
                .flatten()
                .filter(|e| e.path().is_dir())
                .collect();
            assert!(children.is_empty(), "cgroup left in {}", top.display());
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&fx.dir.path().to_string_lossy().into_owned()),
        "mount leaked"
    );
    // Delete of what never existed succeeds (idempotent).
    let out = fx.cmd(Runtime::Berth, &["delete", id]).expect("delete");
    assert!(out.status.success(), "{}", stderr(&out));
    err
}
