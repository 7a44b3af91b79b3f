//! The real `ContainerRuntime`: an OCI runtime binary (berth-runtime or
//! runc) driven through its command line, a detached shim per container that
//! runs its `create`, owns its output and reaps init, and berth-runtime's
//! pidfds to watch init. The agent never forks a container from its own
//! (multi-threaded) process: every runtime call is a short-lived child process.

use std::time::Duration;

use async_trait::async_trait;
use berth_runtime::proc;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tracing::info;

use super::container_runtime::{ContainerFiles, ContainerRuntime, ExitInfo, Init};
use super::error::Result;
use super::launch::{self, ShimLaunch};
use super::runtime::Runtime;
use super::watch;

/// How long `delete` waits for a container's shim to drain its output.
const SHIM_DRAIN_WAIT: Duration = Duration::from_secs(3);

pub struct OciRuntime {
    pub cli: Runtime,
    pub shim: ShimLaunch,
    /// The inits being watched (their exit status outlives a killed shim).
    pub pidfds: watch::Pidfds,
}

#[async_trait]
impl ContainerRuntime for OciRuntime {
    async fn create(&self, c: &ContainerFiles) -> Result<Init> {
        let pid = self
            .shim
            .create(&c.id, &c.bundle, &c.state_dir, &c.log_dir)
            .await?;
        Ok(Init {
            pid,
            start: proc::start_time(pid),
        })
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.cli.start(id).await
    }

    async fn kill(&self, id: &str, init: Init, signal: &str) -> Result<()> {
        let sent = self.cli.kill(id, signal).await;
        if sent.is_err() && signal == "SIGKILL" && proc::alive(init.pid, init.start) {
            // The runtime could not (its state is gone, say): init itself,
            // pinned by its start time, gets it; the pid namespace goes with it.
            let _ = nix::sys::signal::kill(Pid::from_raw(init.pid), Signal::SIGKILL);
        }
        sent
    }

    async fn wait_exit(&self, init: Init) {
        watch::wait_exit(&self.pidfds, init).await;
    }

    fn keep_logging(&self, c: &ContainerFiles, init: Init) -> Result<()> {
        if !proc::alive(init.pid, init.start) || launch::shim_alive(&c.state_dir) {
            return Ok(());
        }
        info!(container = %c.id, "shim gone: attaching a new one");
        self.shim
            .attach(&c.id, init.pid, &c.bundle, &c.state_dir, &c.log_dir)
    }

    async fn exit_info(&self, c: &ContainerFiles) -> ExitInfo {
        watch::exit_info(&self.cli, &self.pidfds, c).await
    }

    async fn delete(&self, c: &ContainerFiles) -> Result<()> {
        watch::forget(&self.pidfds, c);
        let deleted = self.cli.delete(&c.id).await;
        // The shim ends once the container's output is drained.
        let deadline = tokio::time::Instant::now() + SHIM_DRAIN_WAIT;
        while launch::shim_alive(&c.state_dir) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        deleted
    }
}
