//! Fixture for the supervisor tests: a busybox image (umoci) imported into a
//! fresh data dir, berth-runtime or runc, cgroups under a per-test
//! `berth-test-PID-N-name`, and a private mount namespace for everything that
//! mounts (overlay rootfs, containers), so nothing leaks onto the machine. On
//! drop (also on panic): containers deleted, cgroups and directories removed.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_agent::image::{ImageStore, ImportOptions};
use berth_agent::supervisor::{LogLimits, StatusUpdates, Supervisor, SupervisorConfig};
use berth_proto::v1::{ServiceSpec, Task, TaskState, TaskStatus};

use crate::support::{Workdir, busybox_layout};

/// The image every test runs.
pub const IMAGE: &str = "localhost/bbox:base";

static COUNTER: AtomicU32 = AtomicU32::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rt {
    Berth,
    Runc,
}

impl Rt {
    pub fn binary(self) -> Result<PathBuf> {
        match self {
            Rt::Runc => Ok(PathBuf::from("runc")),
            Rt::Berth => berth_runtime(),
        }
    }
}

/// berth-runtime from the target directory this test was built into (built
/// there with cargo if it is missing: it is another package of the workspace).
fn berth_runtime() -> Result<PathBuf> {
    let path = berth_testhost::bin_path("berth-runtime");
    if path.exists() {
        return Ok(path);
    }
    let target = path
        .parent()
        .and_then(Path::parent)
        .context("no target dir")?
        .to_path_buf();
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let status = std::process::Command::new(cargo)
        .args(["build", "-p", "berth-runtime"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .context("failed to run cargo build -p berth-runtime")?;
    if !status.success() || !path.exists() {
        bail!("cargo build -p berth-runtime failed ({status})");
    }
    Ok(path)
}

pub struct Env {
    pub work: Workdir,
    pub cgroup: String,
    pub rt: Rt,
    pub runtime: PathBuf,
    pub runtime_root: PathBuf,
    pub data: PathBuf,
    /// The OCI layout the image came from.
    pub layout: PathBuf,
    /// One store for the whole test (a store's index is locked while open);
    /// `None` to let another process open it.
    pub images: Option<ImageStore>,
}

impl Env {
    /// A data dir with the busybox image imported (on a private-mounts thread).
    pub fn new(test: &str, rt: Rt) -> Result<Env> {
        berth_testhost::cgroups::remove_stale();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let cgroup = format!(
            "{}{}-{n}-{test}",
            berth_testhost::cgroups::TEST_PREFIX,
            std::process::id()
        );
        let work = Workdir::new(&format!("sup-{n}-{test}"))?;
        let layout = work.join("bbox");
        busybox_layout(&work.path, &layout, "base")?;
        let data = work.join("data");
        let images = ImageStore::open(&data)?;
        let env = Env {
            images: Some(images),
            runtime: rt.binary()?,
            runtime_root: work.join("runtime-state"),
            data,
            layout,
            rt,
            cgroup,
            work,
        };
        let (store, layout) = (env.images.clone().context("store")?, env.layout.clone());
        in_private_mounts(move || async move {
            store.import(&layout, &ImportOptions::default()).await?;
            Ok(())
        })?;
        Ok(env)
    }

    /// A supervisor config on this env.
    pub fn config(&self) -> Result<SupervisorConfig> {
        let images = match &self.images {
            Some(i) => i.clone(),
            None => ImageStore::open(&self.data)?,
        };
        let mut cfg = SupervisorConfig::new(images);
        cfg.runtime = self.runtime.clone();
        cfg.runtime_root = self.runtime_root.clone();
        cfg.cgroup_parent = self.cgroup.clone();
        cfg.shim = vec![env!("CARGO_BIN_EXE_berth-shim").into()];
        cfg.log_limits = LogLimits::default();
        cfg.default_stop_grace = Duration::from_secs(10);
        Ok(cfg)
    }

    pub async fn open(&self) -> Result<(Supervisor, StatusUpdates)> {
        self.open_with(|_| {}).await
    }

    pub async fn open_with(
        &self,
        edit: impl FnOnce(&mut SupervisorConfig),
    ) -> Result<(Supervisor, StatusUpdates)> {
        let mut cfg = self.config()?;
        edit(&mut cfg);
        Ok(Supervisor::open(&self.data, cfg).await?)
    }

    /// A task id unique to this test.
    pub fn task_id(&self, name: &str) -> String {
        format!("{}-{name}", self.cgroup)
    }

    /// A task running `sh -c script` in the busybox image.
    pub fn task(&self, name: &str, script: &str) -> Task {
        Task {
            id: self.task_id(name),
            service_id: "svc".into(),
            service_name: name.into(),
            slot: 1,
            desired_state: TaskState::Running as i32,
            spec: Some(ServiceSpec {
                name: name.into(),
                image: IMAGE.into(),
                command: vec!["sh".into(), "-c".into(), script.into()],
                ..ServiceSpec::default()
            }),
            ..Task::default()
        }
    }

    /// The host directory of a task's rootfs (its overlay mount point).
    pub fn rootfs(&self, task_id: &str) -> PathBuf {
        self.data
            .join("images/containers")
            .join(task_id)
            .join("rootfs")
    }

    /// The runtime's view of a container (`state` JSON), if it knows it.
    pub fn runtime_state(&self, id: &str) -> Option<serde_json::Value> {
        let out = std::process::Command::new(&self.runtime)
            .arg("--root")
            .arg(&self.runtime_root)
            .args(["state", id])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.runtime_root) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = std::process::Command::new(&self.runtime)
                    .arg("--root")
                    .arg(&self.runtime_root)
                    .args(["delete", "--force", &id])
                    .output();
            }
        }
        if let Err(e) = berth_testhost::cgroups::remove_everywhere(&self.cgroup) {
            eprintln!("cleanup: {e:#}");
        }
    }
}

/// Runs `f` on a multi-threaded tokio runtime whose threads all live in a new,
/// private mount namespace (gone with the last process in it: nothing mounted
/// there shows on the machine).
pub fn in_private_mounts<F, Fut, T>(f: F) -> Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>>,
    T: Send + 'static,
{
    std::thread::spawn(move || -> Result<T> {
        enter_private_mounts()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()?;
        rt.block_on(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the test thread panicked"))?
}

/// This thread into a new mount namespace, / made private (recursively).
pub fn enter_private_mounts() -> Result<()> {
    // SAFETY: plain syscalls on this thread only.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_FS) != 0 {
            return Err(std::io::Error::last_os_error()).context("unshare(CLONE_NEWNS)");
        }
        if libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(std::io::Error::last_os_error()).context("make / private");
        }
    }
    Ok(())
}

/// Status updates buffered per task, so waiting for one task never loses
/// another's.
pub struct Seen {
    rx: StatusUpdates,
    queued: HashMap<String, VecDeque<TaskStatus>>,
}

impl Seen {
    pub fn new(rx: StatusUpdates) -> Seen {
        Seen {
            rx,
            queued: HashMap::new(),
        }
    }

    async fn next(&mut self, task: &str, deadline: tokio::time::Instant) -> Result<TaskStatus> {
        loop {
            if let Some(s) = self.queued.get_mut(task).and_then(VecDeque::pop_front) {
                return Ok(s);
            }
            let u = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .with_context(|| format!("timed out waiting for a status of {task}"))?
                .context("status channel closed")?;
            let s = u.status.context("update without status")?;
            self.queued.entry(u.task_id).or_default().push_back(s);
        }
    }

    /// The next status of `task` that satisfies `want`; fails on a terminal one
    /// that does not, naming every status seen.
    pub async fn until(
        &mut self,
        task: &str,
        timeout: Duration,
        want: impl Fn(&TaskStatus) -> bool,
    ) -> Result<TaskStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let s = self
                .next(task, deadline)
                .await
                .with_context(|| format!("seen {seen:?}"))?;
            if want(&s) {
                return Ok(s);
            }
            let state = TaskState::try_from(s.state).unwrap_or(TaskState::New);
            seen.push((state, s.message.clone(), s.error.clone()));
            if state > TaskState::Running {
                bail!("{task} ended without the wanted status: {seen:?}");
            }
        }
    }

    /// Every status of `task` up to and including a terminal one.
    pub async fn until_end(&mut self, task: &str, timeout: Duration) -> Result<Vec<TaskStatus>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let s = self
                .next(task, deadline)
                .await
                .with_context(|| format!("seen {out:?}"))?;
            let end = s.state > TaskState::Running as i32;
            out.push(s);
            if end {
                return Ok(out);
            }
        }
    }

    /// The terminal status of `task`.
    pub async fn end(&mut self, task: &str, timeout: Duration) -> Result<TaskStatus> {
        let mut all = self.until_end(task, timeout).await?;
        all.pop().context("no status")
    }
}

/// The text of a task's log lines once there are at least `n` (or after 5 s).
pub async fn log_texts(sup: &Supervisor, task_id: &str, n: usize) -> Result<Vec<String>> {
    use futures_util::StreamExt;
    let mut texts = Vec::new();
    for _ in 0..100 {
        let lines: Vec<_> = sup.logs(task_id, false, None).await?.collect().await;
        texts = lines
            .into_iter()
            .filter_map(|l| l.ok().map(|l| l.text))
            .collect();
        if texts.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(texts)
}

pub fn is(state: TaskState) -> impl Fn(&TaskStatus) -> bool {
    move |s| s.state == state as i32
}
