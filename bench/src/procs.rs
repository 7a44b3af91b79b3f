//! Child processes of a benchmark: started with logs in a directory, killed on
//! drop; the resident memory of processes found by their command line.

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

/// The processes whose command line (arguments joined by spaces) matches:
/// (pid, VmRSS in KiB, PSS in KiB).
fn matching(matches: impl Fn(&str) -> bool) -> Vec<(u32, u64, u64)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmd.is_empty() || !matches(&cmd) {
            continue;
        }
        let field = |file: &str, name: &str| {
            std::fs::read_to_string(entry.path().join(file))
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let Some(rss) = field("status", "VmRSS:") {
            found.push((pid, rss, field("smaps_rollup", "Pss:").unwrap_or(0)));
        }
    }
    found
}

/// Resident memory (VmRSS, KiB) of every process whose command line matches.
pub fn rss_kib(matches: impl Fn(&str) -> bool) -> u64 {
    matching(matches).iter().map(|(_, rss, _)| rss).sum()
}

/// What the processes kept per running container cost: berth's shims (and
/// runtime monitors, where a runtime still forks one), Docker's
/// containerd-shims.
#[derive(Clone, Copy, Debug)]
pub struct PerContainer {
    pub processes: usize,
    pub containers: usize,
    /// VmRSS summed: shared pages (libc, the binary) counted in each process.
    pub rss_kib: u64,
    /// PSS summed: shared pages divided among the processes that map them.
    pub pss_kib: u64,
}

impl PerContainer {
    /// berth's per-container processes: `berth-shim` (the agent's shim before
    /// it had a binary of its own: `berth-agent shim`), the container's
    /// minimal init (`berth-init -- PROGRAM ...`, PID 1 of a container run
    /// without `--init`), and berth-runtime's monitor (`berth-runtime ...
    /// create`, which a monitor's command line keeps; init's too until it
    /// execs, so measure with the containers running).
    pub fn is_berth(cmd: &str) -> bool {
        cmd.contains("berth-shim ")
            || cmd.contains("berth-agent shim ")
            || cmd.starts_with("berth-init -- ")
            || (cmd.contains("berth-runtime ") && cmd.contains(" create "))
    }

    /// Docker's per-container processes.
    pub fn is_docker(cmd: &str) -> bool {
        cmd.contains("containerd-shim")
    }

    /// Sums the matching processes' memory for `containers` running containers.
    pub fn measure(matches: impl Fn(&str) -> bool, containers: usize) -> PerContainer {
        let found = matching(matches);
        PerContainer {
            processes: found.len(),
            containers,
            rss_kib: found.iter().map(|(_, rss, _)| rss).sum(),
            pss_kib: found.iter().map(|(_, _, pss)| pss).sum(),
        }
    }

    /// RSS per running container, KiB.
    pub fn per_container_kib(&self) -> f64 {
        self.rss_kib as f64 / self.containers.max(1) as f64
    }
}

impl std::fmt::Display for PerContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.containers.max(1) as f64;
        write!(
            f,
            "{} MiB RSS in {} processes = {:.0} KiB per running container (PSS {:.0} KiB)",
            self.rss_kib / 1024,
            self.processes,
            self.per_container_kib(),
            self.pss_kib as f64 / n
        )
    }
}
