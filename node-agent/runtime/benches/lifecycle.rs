//! Benchmark (not a test): create + start + wait + delete of a busybox `true`
//! bundle under berth-runtime, runc and (where it works) crun, alternating in one
//! run. Prints the median per runtime and the ratio to runc.
//!
//! `cargo bench -p berth-runtime` (as root); BENCH_ITERS sets the rounds (200).

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{ProcessBuilder, RootBuilder, Spec};

const BERTH: &str = env!("CARGO_BIN_EXE_berth-runtime");

struct Bench {
    dir: tempfile::TempDir,
    bundle: PathBuf,
    cgroup: String,
}

fn make_bundle(dir: &Path, cgroup: &str) -> Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy("/bin/busybox", bin.join("busybox")).context("copy /bin/busybox")?;
    std::os::unix::fs::symlink("busybox", bin.join("true"))?;
    let mut spec = Spec::default();
    spec.set_process(Some(
        ProcessBuilder::default()
            .args(vec!["/bin/true".to_string()])
            .env(vec!["PATH=/bin".to_string()])
            .cwd("/")
            .build()?,
    ));
    spec.set_root(Some(
        RootBuilder::default()
            .path(&rootfs)
            .readonly(true)
            .build()?,
    ));
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_cgroups_path(Some(PathBuf::from(format!("/{cgroup}/c"))));
    spec.set_linux(Some(linux));
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle)?;
    spec.save(bundle.join("config.json"))?;
    Ok(bundle)
}

fn quiet(binary: &str, root: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new(binary)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("starting {binary}"))?;
    if !status.success() {
        bail!("{binary} {args:?} failed: {status}");
    }
    Ok(())
}

/// Waits for a process that is not our child (pidfd), then reaps what we adopted.
fn wait_pid(pid: i32) -> Result<()> {
    // SAFETY: pidfd_open with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd >= 0 {
        // SAFETY: a fresh fd from the kernel.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut fds = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10_000u16))?;
    }
    reap();
    Ok(())
}

fn reap() {
    // SAFETY: waitpid with integer arguments and a null status.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}

impl Bench {
    /// create + start + wait + delete.
    fn split(&self, binary: &str, n: usize) -> Result<Duration> {
        let root = self.dir.path().join(format!("state-{}", short(binary)));
        let id = format!("{}-{n}", self.cgroup);
        let pid_file = self.dir.path().join("pid");
        let bundle = self.bundle.to_string_lossy().into_owned();
        let pid_arg = pid_file.to_string_lossy().into_owned();
        let t = Instant::now();
        quiet(
            binary,
            &root,
            &["create", "--bundle", &bundle, "--pid-file", &pid_arg, &id],
        )?;
        let pid: i32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
        quiet(binary, &root, &["start", &id])?;
        wait_pid(pid)?;
        quiet(binary, &root, &["delete", &id])?;
        Ok(t.elapsed())
    }

    /// `run` (create, start, wait and delete in one command).
    fn run(&self, binary: &str, n: usize) -> Result<Duration> {
        let root = self.dir.path().join(format!("state-{}", short(binary)));
        let id = format!("{}-r{n}", self.cgroup);
        let bundle = self.bundle.to_string_lossy().into_owned();
        let t = Instant::now();
        quiet(binary, &root, &["run", "--bundle", &bundle, &id])?;
        Ok(t.elapsed())
    }
}

fn short(binary: &str) -> &str {
    Path::new(binary)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(binary)
}

fn median(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn main() -> Result<()> {
    // cargo bench passes --bench; nothing to parse.
    berth_testhost::cgroups::remove_stale();
    let cgroup = format!(
        "{}{}-bench",
        berth_testhost::cgroups::TEST_PREFIX,
        std::process::id()
    );
    let dir = tempfile::Builder::new()
        .prefix(&format!("{cgroup}-"))
        .tempdir()?;
    let bundle = make_bundle(dir.path(), &cgroup)?;
    let bench = Bench {
        dir,
        bundle,
        cgroup,
    };
    // Adopt orphaned container processes (runc's init after create) to reap them.
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let iters: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut runtimes: Vec<String> = vec![BERTH.to_string(), "runc".to_string()];
    // crun refuses hybrid cgroup hosts; include it only where one run works.
    if Command::new("crun").arg("--version").output().is_ok() && bench.run("crun", 0).is_ok() {
        runtimes.push("crun".to_string());
    } else {
        println!("crun: not installed or not usable on this host's cgroups; skipped");
    }
    for rt in &runtimes {
        for i in 0..5 {
            bench.run(rt, 1_000_000 + i)?;
        }
    }
    let mut run_times: Vec<Vec<Duration>> = vec![Vec::new(); runtimes.len()];
    let mut split_times: Vec<Vec<Duration>> = vec![Vec::new(); runtimes.len()];
    for n in 0..iters {
        for (k, rt) in runtimes.iter().enumerate() {
            split_times[k].push(bench.split(rt, n)?);
            run_times[k].push(bench.run(rt, n)?);
        }
    }
    let result = berth_testhost::cgroups::remove_everywhere(&bench.cgroup);
    println!("busybox `true`, {iters} rounds, runtimes alternating:");
    for (label, times) in [
        ("create+start+wait+delete", &mut split_times),
        ("run (incl. delete)", &mut run_times),
    ] {
        let medians: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
        let runc = medians[1];
        for (k, rt) in runtimes.iter().enumerate() {
            println!(
                "  {label:<26} {:<14} median {:>7.2} ms   ratio to runc {:.2}",
                short(rt),
                medians[k],
                medians[k] / runc
            );
        }
    }
    result
}
