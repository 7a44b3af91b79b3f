//! Child processes of a benchmark: started with logs in a directory, killed on
//! drop.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

pub struct Daemon {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    pub fn start(name: &str, program: &Path, args: &[String], logs: &Path) -> Result<Daemon> {
        let mut d = Daemon {
            name: name.to_string(),
            program: program.to_path_buf(),
            args: args.to_vec(),
            log: logs.join(format!("{name}.log")),
            child: None,
        };
        d.spawn()?;
        Ok(d)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // A benchmark killed outright (no Drop) takes its daemons with it. The
        // signal follows the death of the spawning thread: benchmarks spawn
        // from their main thread or a runtime worker, which live as long.
        // SAFETY: prctl is async-signal-safe and touches only the child.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("failed to start {}", self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) -> Result<()> {
        self.kill9();
        self.spawn()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A binary next to the running one (target/<profile>/NAME).
pub fn sibling_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("binary has no directory")?.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} not found: build the workspace first",
        path.display()
    );
    Ok(path)
}
