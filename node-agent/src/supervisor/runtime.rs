//! The OCI runtime's command line (`berth-runtime` or runc): `start`, `state`,
//! `kill`, `delete`. `create` runs in the shim (see `shim.rs`). Every call is a
//! short-lived child process; the agent never forks a container itself.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tracing::debug;

use super::error::{Result, SupervisorError};

/// How long one runtime command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A runtime binary and its state root.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub binary: PathBuf,
    pub root: PathBuf,
}

/// The part of the OCI state (`runtime state ID`) the supervisor reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct State {
    /// berth-runtime only: how init ended, recorded by its monitor.
    #[serde(default)]
    pub exit: Option<berth_runtime::state::Exit>,
}

impl Runtime {
    /// `runtime --root ROOT COMMAND FLAGS... ID AFTER...`; its stdout.
    async fn call(
        &self,
        command: &'static str,
        id: &str,
        flags: &[&str],
        after: &[&str],
    ) -> Result<Vec<u8>> {
        let err = |reason: String| SupervisorError::Runtime {
            runtime: self.binary.clone(),
            command,
            container: id.to_string(),
            reason,
        };
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg(command)
            .args(flags)
            .arg(id)
            .args(after)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
            .await
            .map_err(|_| err(format!("no answer in {COMMAND_TIMEOUT:?}")))?
            .map_err(|e| err(e.to_string()))?;
        debug!(container = id, command, status = %out.status, "runtime called");
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr);
            return Err(err(format!(
                "{}: {}",
                out.status,
                last_message(&text).unwrap_or("no message")
            )));
        }
        Ok(out.stdout)
    }

    pub async fn start(&self, id: &str) -> Result<()> {
        self.call("start", id, &[], &[]).await.map(drop)
    }

    /// The container's state; `None` if the runtime does not know it.
    pub async fn state(&self, id: &str) -> Result<Option<State>> {
        match self.call("state", id, &[], &[]).await {
            Ok(out) => {
                serde_json::from_slice(&out)
                    .map(Some)
                    .map_err(|e| SupervisorError::Runtime {
                        runtime: self.binary.clone(),
                        command: "state",
                        container: id.to_string(),
                        reason: format!("unreadable state: {e}"),
                    })
            }
            Err(SupervisorError::Runtime { reason, .. }) if is_not_found(&reason) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends `signal` (a name like SIGTERM) to the container's init.
    pub async fn kill(&self, id: &str, signal: &str) -> Result<()> {
        match self.call("kill", id, &[], &[signal]).await {
            Ok(_) => Ok(()),
            // Already stopped or gone: nothing to signal.
            Err(SupervisorError::Runtime { reason, .. })
                if is_not_found(&reason) || reason.contains("not running") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes the container (killing it if it still runs); fine if it is gone.
    pub async fn delete(&self, id: &str) -> Result<()> {
        match self.call("delete", id, &["--force"], &[]).await {
            Ok(_) => Ok(()),
            Err(SupervisorError::Runtime { reason, .. }) if is_not_found(&reason) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// runc and berth-runtime both say "does not exist" / "not found" for an unknown id.
fn is_not_found(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    r.contains("does not exist") || r.contains("not found") || r.contains("no such")
}

/// The last non-empty line of a runtime's error output, without runc's
/// logrus decoration (`time=... level=error msg="..."`).
pub(crate) fn last_message(text: &str) -> Option<&str> {
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    if let Some(i) = line.find("msg=\"") {
        let rest = &line[i + 5..];
        return Some(rest.rfind('"').map_or(rest, |j| &rest[..j]));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_messages_are_unwrapped() {
        let runc = "time=\"2026-11-22T07:00:00Z\" level=error msg=\"runc create failed: unable to start container process: exec: \\\"nope\\\": executable file not found in $PATH\"\n";
        assert!(
            last_message(runc)
                .unwrap()
                .starts_with("runc create failed")
        );
        assert_eq!(
            last_message("x\nerror: bad thing\n\n"),
            Some("error: bad thing")
        );
        assert_eq!(last_message(""), None);
    }
}
