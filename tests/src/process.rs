//! Real programs started inside a test host: kill -9, pause, resume, restart on
//! the same data dir, and their output in a log file printed when a test fails.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::ns::{NsFds, enter_before_exec};

/// How to start a program; kept so that it can be started again.
#[derive(Clone, Debug)]
pub struct ProcSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

/// A program running in a test host. Dropping it kills it.
pub struct Proc {
    name: String,
    host: String,
    spec: ProcSpec,
    ns: NsFds,
    log_path: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Proc {
    pub(crate) fn start(
        name: &str,
        host: &str,
        spec: ProcSpec,
        ns: NsFds,
        log_path: PathBuf,
    ) -> Result<Proc> {
        let mut proc = Proc {
            name: name.to_string(),
            host: host.to_string(),
            spec,
            ns,
            log_path,
            child: None,
            starts: 0,
        };
        proc.spawn()?;
        Ok(proc)
    }

    fn spawn(&mut self) -> Result<()> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("failed to open {}", self.log_path.display()))?;
        self.starts += 1;
        writeln!(
            log,
            "==== start #{} of {} on {}: {} {}",
            self.starts,
            self.name,
            self.host,
            self.spec.program.display(),
            self.spec.args.join(" ")
        )?;
        let mut cmd = Command::new(&self.spec.program);
        cmd.args(&self.spec.args)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        enter_before_exec(&mut cmd, self.ns, &self.spec.cwd)?;
        let child = cmd.spawn().with_context(|| {
            format!(
                "failed to start {} ({}) on {}",
                self.name,
                self.spec.program.display(),
                self.host
            )
        })?;
        self.child = Some(child);
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// True while the process has not exited (a stopped process is running).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// kill -9 and reap.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            // A stopped process dies of SIGKILL too.
            let _ = child.kill();
            child
                .wait()
                .with_context(|| format!("failed to reap {}", self.name))?;
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn terminate(&mut self, grace: Duration) -> Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGCONT);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        Ok(Some(child.wait()?))
    }

    /// SIGSTOP: the process stays alive but does nothing (a hung host).
    pub fn pause(&self) -> Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) -> Result<()> {
        self.signal(Signal::SIGCONT)
    }

    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = self
            .pid()
            .with_context(|| format!("{} is not running", self.name))?;
        kill(Pid::from_raw(pid as i32), signal)
            .with_context(|| format!("failed to send {signal} to {}", self.name))
    }

    /// Starts the same program again (same args, same data dir); kills it first if
    /// it still runs.
    pub fn restart(&mut self) -> Result<()> {
        self.kill9()?;
        self.spawn()
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let child = self
            .child
            .as_mut()
            .with_context(|| format!("{} is not running", self.name))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                anyhow::bail!("{} did not exit within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// Prints the tail of a log file to stderr (the test's captured output).
pub(crate) fn print_log(title: &str, path: &Path, max_lines: usize) {
    let Ok(file) = File::open(path) else {
        return;
    };
    let text = std::io::read_to_string(file).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(max_lines);
    eprintln!(
        "----- {title} ({}, last {} lines)",
        path.display(),
        lines.len() - skip
    );
    for line in &lines[skip..] {
        eprintln!("{line}");
    }
}
