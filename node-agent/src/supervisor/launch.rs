//! The agent's side of the shim: starting one to create a container (and
//! reading its answer), starting one to attach to a running container whose
//! shim died, and reading what a shim leaves in the task's state directory.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::error::{Result, SupervisorError};
use super::logs::LogLimits;
use super::runtime::last_message;
use super::shim::{EXIT_FILE, PID_FILE, SHIM_PID_FILE, ShimExit};

/// What the agent passes to every shim it starts.
#[derive(Clone, Debug)]
pub(crate) struct ShimLaunch {
    /// The shim command (program and leading arguments, e.g. `berth-shim`).
    pub command: Vec<OsString>,
    pub runtime: PathBuf,
    pub runtime_root: PathBuf,
    pub limits: LogLimits,
}

impl ShimLaunch {
    fn command(
        &self,
        id: &str,
        bundle: &Path,
        state_dir: &Path,
        log_dir: &Path,
    ) -> Result<tokio::process::Command> {
        let (program, lead) = self.command.split_first().ok_or(SupervisorError::Shim {
            container: id.to_string(),
            reason: "no shim command configured".into(),
        })?;
        let log = state_dir.join("shim.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| SupervisorError::io("open", &log, e))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(lead)
            .arg("--runtime")
            .arg(&self.runtime)
            .arg("--runtime-root")
            .arg(&self.runtime_root)
            .arg("--bundle")
            .arg(bundle)
            .arg("--id")
            .arg(id)
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--log-dir")
            .arg(log_dir)
            .arg("--log-max-bytes")
            .arg(self.limits.max_bytes.to_string())
            .arg("--log-max-files")
            .arg(self.limits.max_files.to_string())
            .current_dir(state_dir)
            .stdin(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(false);
        Ok(cmd)
    }

    /// Starts a shim that creates the container; returns init's pid.
    pub async fn create(
        &self,
        id: &str,
        bundle: &Path,
        state_dir: &Path,
        log_dir: &Path,
    ) -> Result<i32> {
        let err = |reason: String| SupervisorError::Shim {
            container: id.to_string(),
            reason,
        };
        let mut cmd = self.command(id, bundle, state_dir, log_dir)?;
        cmd.stdout(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| err(format!("failed to start: {e}")))?;
        let stdout = child.stdout.take().ok_or_else(|| err("no stdout".into()))?;
        let line = tokio::time::timeout(Duration::from_secs(120), async move {
            use tokio::io::AsyncBufReadExt;
            let mut line = String::new();
            tokio::io::BufReader::new(stdout)
                .read_line(&mut line)
                .await
                .map(|_| line)
        })
        .await;
        // The shim lives on; tokio reaps it when it exits.
        drop(child);
        let line = match line {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => return Err(err(format!("reading its answer: {e}"))),
            Err(_) => return Err(err("no answer in 120 s".into())),
        };
        match line.trim().split_once(' ') {
            Some(("ok", pid)) => pid.parse().map_err(|_| err(format!("bad answer {line:?}"))),
            Some(("err", msg)) => Err(SupervisorError::Runtime {
                runtime: self.runtime.clone(),
                command: "create",
                container: id.to_string(),
                reason: msg.to_string(),
            }),
            _ => {
                let log = std::fs::read_to_string(state_dir.join("shim.log")).unwrap_or_default();
                Err(err(format!(
                    "exited without an answer: {}",
                    last_message(&log).unwrap_or("no message")
                )))
            }
        }
    }

    /// Starts a shim for a running container whose shim is gone (after an agent
    /// restart): it reopens the FIFOs and goes on writing the logs.
    pub fn attach(
        &self,
        id: &str,
        pid: i32,
        bundle: &Path,
        state_dir: &Path,
        log_dir: &Path,
    ) -> Result<()> {
        let mut cmd = self.command(id, bundle, state_dir, log_dir)?;
        cmd.arg("--attach")
            .arg(pid.to_string())
            .stdout(Stdio::null());
        cmd.spawn().map(drop).map_err(|e| SupervisorError::Shim {
            container: id.to_string(),
            reason: format!("failed to start: {e}"),
        })
    }
}

/// True if the shim recorded in `state_dir` still runs.
pub(crate) fn shim_alive(state_dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(state_dir.join(SHIM_PID_FILE)) else {
        return false;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return false;
    };
    // Its command line names this state dir (the pid may have been reused).
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let dir = state_dir.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == dir)
}

/// The exit the shim recorded, if any.
pub(crate) fn read_exit(state_dir: &Path) -> Option<ShimExit> {
    let data = std::fs::read(state_dir.join(EXIT_FILE)).ok()?;
    serde_json::from_slice(&data).ok()
}

/// Init's pid as the runtime wrote it at create.
pub(crate) fn read_init_pid(state_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(state_dir.join(PID_FILE)).ok()?;
    text.trim().parse().ok()
}
