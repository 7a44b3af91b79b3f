//! Fakes of the worker's two seams, for unit tests without root: a container
//! runtime whose containers do what the test scripts (fail to create, exit with
//! a code, get OOM-killed, ignore their stop signal) and which records every
//! call with the (tokio) time it came, and images that need no registry and
//! no mounts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::{Barrier, watch};
use tokio::time::Instant;

use super::container_runtime::{ContainerFiles, ContainerRuntime, ExitInfo, Init};
use super::error::{Result, SupervisorError};
use super::health::{HealthProbe, Probe, ProbeTarget};
use super::images::TaskImages;
use crate::image::{Digest, Image, ImageConfig, ImageError, RegistryCredentials};

/// One call the worker made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Create(String),
    Start(String),
    Kill(String, String),
    KeepLogging(String),
    ExitInfo(String),
    Delete(String),
}

struct Container {
    init: Init,
    /// Set once init has exited.
    exit: watch::Sender<Option<ExitInfo>>,
}

#[derive(Default)]
struct Script {
    create_error: Option<String>,
    /// Signals containers go on running after (SIGKILL too: a process stuck
    /// in the kernel).
    ignored: HashSet<String>,
    containers: HashMap<String, Container>,
    calls: Vec<(Call, Instant)>,
    next_pid: i32,
    /// Creates, and deletes, wait here until this many are under way.
    create_meeting: Option<Arc<Barrier>>,
    delete_meeting: Option<Arc<Barrier>>,
}

/// A scripted container runtime.
#[derive(Default)]
pub struct FakeRuntime {
    script: Mutex<Script>,
}

impl FakeRuntime {
    fn lock(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, call: Call) {
        self.lock().calls.push((call, Instant::now()));
    }

    /// Every create from now on fails with `reason`.
    pub fn fail_create(&self, reason: &str) {
        self.lock().create_error = Some(reason.to_string());
    }

    /// From now on a create returns only once `n` creates are under way at
    /// the same time (a serialized start path never gets there).
    pub fn meet_in_create(&self, n: usize) {
        self.lock().create_meeting = Some(Arc::new(Barrier::new(n)));
    }

    /// As `meet_in_create`, for deletes (the stop path).
    pub fn meet_in_delete(&self, n: usize) {
        self.lock().delete_meeting = Some(Arc::new(Barrier::new(n)));
    }

    /// Containers go on running when they get `signal`.
    pub fn ignore(&self, signal: &str) {
        self.lock().ignored.insert(signal.to_string());
    }

    /// A container that runs already (made by an earlier agent).
    pub fn running(&self, id: &str) -> Init {
        let mut s = self.lock();
        s.next_pid += 1;
        let init = Init {
            pid: 1000 + s.next_pid,
            start: Some(42),
        };
        let (exit, _) = watch::channel(None);
        s.containers
            .insert(id.to_string(), Container { init, exit });
        init
    }

    /// Container `id`'s init ends as `exit` says.
    pub fn end(&self, id: &str, exit: ExitInfo) {
        if let Some(c) = self.lock().containers.get(id) {
            c.exit.send_if_modified(|e| e.replace(exit).is_none());
        }
    }

    /// Container `id`'s init exits with `code`.
    pub fn exit(&self, id: &str, code: i32) {
        self.end(
            id,
            ExitInfo {
                code: Some(code),
                signal: None,
                oom_killed: false,
            },
        );
    }

    /// The OOM killer kills container `id`'s init.
    pub fn oom_kill(&self, id: &str) {
        self.end(
            id,
            ExitInfo {
                code: Some(128 + libc::SIGKILL),
                signal: Some(libc::SIGKILL),
                oom_killed: true,
            },
        );
    }

    /// The calls so far, in order, without the periodic log checks.
    pub fn calls(&self) -> Vec<Call> {
        self.timed_calls().into_iter().map(|(c, _)| c).collect()
    }

    /// How many periodic log checks container `id` had.
    pub fn log_checks(&self, id: &str) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|(c, _)| matches!(c, Call::KeepLogging(i) if i == id))
            .count()
    }

    /// The calls so far with when they came, without the periodic log checks.
    pub fn timed_calls(&self) -> Vec<(Call, Instant)> {
        self.lock()
            .calls
            .iter()
            .filter(|(c, _)| !matches!(c, Call::KeepLogging(_)))
            .cloned()
            .collect()
    }

    /// Whether container `id` exists.
    pub fn exists(&self, id: &str) -> bool {
        self.lock().containers.contains_key(id)
    }

    fn exit_rx(&self, init: Init) -> Option<watch::Receiver<Option<ExitInfo>>> {
        self.lock()
            .containers
            .values()
            .find(|c| c.init == init)
            .map(|c| c.exit.subscribe())
    }
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn create(&self, c: &ContainerFiles) -> Result<Init> {
        self.record(Call::Create(c.id.clone()));
        let meeting = self.lock().create_meeting.clone();
        if let Some(meeting) = meeting {
            meeting.wait().await;
        }
        if !c.bundle.join("config.json").is_file() {
            return Err(fake_error("create", &c.id, "no config.json in the bundle"));
        }
        let reason = self.lock().create_error.clone();
        match reason {
            Some(reason) => Err(fake_error("create", &c.id, &reason)),
            None => Ok(self.running(&c.id)),
        }
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.record(Call::Start(id.to_string()));
        Ok(())
    }

    async fn kill(&self, id: &str, _init: Init, signal: &str) -> Result<()> {
        self.record(Call::Kill(id.to_string(), signal.to_string()));
        if self.lock().ignored.contains(signal) {
            return Ok(());
        }
        let number = berth_runtime::signal::parse(signal)
            .map_err(|e| fake_error("kill", id, &e.to_string()))? as i32;
        self.end(
            id,
            ExitInfo {
                code: Some(128 + number),
                signal: Some(number),
                oom_killed: false,
            },
        );
        Ok(())
    }

    async fn wait_exit(&self, init: Init) {
        let Some(mut rx) = self.exit_rx(init) else {
            return;
        };
        let _ = rx.wait_for(Option::is_some).await;
    }

    fn keep_logging(&self, c: &ContainerFiles, _init: Init) -> Result<()> {
        self.record(Call::KeepLogging(c.id.clone()));
        Ok(())
    }

    async fn exit_info(&self, c: &ContainerFiles) -> ExitInfo {
        self.record(Call::ExitInfo(c.id.clone()));
        self.lock()
            .containers
            .get(&c.id)
            .and_then(|c| *c.exit.borrow())
            .unwrap_or_default()
    }

    async fn delete(&self, c: &ContainerFiles) -> Result<()> {
        self.record(Call::Delete(c.id.clone()));
        let meeting = self.lock().delete_meeting.clone();
        if let Some(meeting) = meeting {
            meeting.wait().await;
        }
        self.lock().containers.remove(&c.id);
        Ok(())
    }
}

fn fake_error(command: &'static str, id: &str, reason: &str) -> SupervisorError {
    SupervisorError::Runtime {
        runtime: PathBuf::from("fake"),
        command,
        container: id.to_string(),
        reason: reason.to_string(),
    }
}

/// Images that are always there: a config with `cmd` and the given stop
/// signal, and a rootfs that is an empty directory. Pulls can be held.
pub struct FakeImages {
    pub root: PathBuf,
    pub stop_signal: Option<String>,
    pub released: Mutex<Vec<String>>,
    /// The credentials each `get` was given, in order.
    pub credentials: Mutex<Vec<Option<RegistryCredentials>>>,
    /// While false, pulls wait.
    pulls_open: watch::Sender<bool>,
}

impl FakeImages {
    pub fn new(root: &Path) -> FakeImages {
        FakeImages {
            root: root.to_path_buf(),
            stop_signal: None,
            released: Mutex::new(Vec::new()),
            credentials: Mutex::new(Vec::new()),
            pulls_open: watch::channel(true).0,
        }
    }

    /// Pulls wait from now on, until `release_pulls`.
    pub fn hold_pulls(&self) {
        self.pulls_open.send_replace(false);
    }

    pub fn release_pulls(&self) {
        self.pulls_open.send_replace(true);
    }
}

#[async_trait]
impl TaskImages for FakeImages {
    async fn get(
        &self,
        name: &str,
        credentials: Option<RegistryCredentials>,
    ) -> Result<(Image, ImageConfig), ImageError> {
        self.credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(credentials);
        let _ = self.pulls_open.subscribe().wait_for(|open| *open).await;
        let digest = Digest::of(name.as_bytes());
        let image = Image {
            name: name.to_string(),
            index_digest: None,
            manifest_digest: digest.clone(),
            config_digest: digest,
            layers: Vec::new(),
            created: 0,
        };
        let config = ImageConfig {
            cmd: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            stop_signal: self.stop_signal.clone(),
            ..ImageConfig::default()
        };
        Ok((image, config))
    }

    async fn prepare_rootfs(
        &self,
        _image: &Image,
        container_id: &str,
    ) -> Result<PathBuf, ImageError> {
        let dir = self.root.join(container_id);
        std::fs::create_dir_all(&dir).map_err(|e| ImageError::Io {
            op: "create",
            path: dir.clone(),
            source: e,
        })?;
        Ok(dir)
    }

    async fn release_rootfs(&self, container_id: &str) -> Result<(), ImageError> {
        self.released
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(container_id.to_string());
        Ok(())
    }
}

/// Health probes answered from a script, then with `otherwise` forever.
pub struct FakeProbe {
    pub script: Mutex<VecDeque<std::result::Result<(), String>>>,
    pub otherwise: std::result::Result<(), String>,
}

impl FakeProbe {
    pub fn new(
        script: Vec<std::result::Result<(), String>>,
        otherwise: std::result::Result<(), String>,
    ) -> FakeProbe {
        FakeProbe {
            script: Mutex::new(script.into()),
            otherwise,
        }
    }
}

#[async_trait]
impl HealthProbe for FakeProbe {
    async fn check(
        &self,
        _: &ProbeTarget,
        _: &Probe,
        _: std::time::Duration,
    ) -> std::result::Result<(), String> {
        let next = self
            .script
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        next.unwrap_or_else(|| self.otherwise.clone())
    }
}
