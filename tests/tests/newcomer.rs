//! The newcomer's path from the README (#16): `scripts/dev.sh`, then, in
//! another terminal, `berth service ps demo` and `curl localhost:8080`. The
//! script runs as written in a test host (its own network namespace, so its
//! own 127.0.0.1, and its own /run), with this build's binaries installed
//! into a prefix, a data dir and a HOME of the test's own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_testhost::cluster::Cluster;
use berth_testhost::{ProcSpec, TestNet, bin_path, wait_until};
use nix::sys::signal::Signal;
use serde_json::Value;

/// Kills, when dropped, every process whose command line names `dir` (the
/// demo registry the script starts with setsid, `berth dev`, its shims):
/// they live outside the harness's processes. The containers are in the
/// test's cgroup, which the harness removes after.
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in Cluster::processes_matching(&self.0.to_string_lossy()) {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
    }
}

fn repo() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .context("the repository")
}

#[test]
fn scripts_dev_sh_runs_the_demo_and_it_answers_on_localhost() -> Result<()> {
    let mut net = TestNet::new("newcomer", 1)?;
    let cgroup = net.cgroup_parent().to_string();
    let dir = net.host(0).dir().to_path_buf();
    // Dropped before `net`: the script's own processes go before the cgroups.
    let _reaper = Reaper(dir.clone());
    let prefix = dir.join("bin");
    let home = dir.join("home");
    std::fs::create_dir_all(&home)?;
    let bin_dir = bin_path("berth")
        .parent()
        .context("the binaries' directory")?
        .to_path_buf();
    // The toolchain the script checks for stays the machine's, though HOME
    // is the test's (the admin bundle goes to $HOME/.config/berth/tls).
    let real_home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let rustup_home =
        std::env::var("RUSTUP_HOME").unwrap_or_else(|_| format!("{real_home}/.rustup"));
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{real_home}/.cargo"));
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let env = vec![
        ("BERTH_DEV_BIN_DIR".to_string(), path(&bin_dir)),
        ("BERTH_DEV_PREFIX".to_string(), path(&prefix)),
        ("BERTH_DEV_DATA_DIR".to_string(), path(&dir.join("data"))),
        (
            "BERTH_DEV_ARGS".to_string(),
            format!("--cgroup-parent {cgroup}"),
        ),
        ("HOME".to_string(), path(&home)),
        ("RUSTUP_HOME".to_string(), rustup_home),
        ("CARGO_HOME".to_string(), cargo_home),
    ];
    let repo = repo()?;
    let host = net.host_mut(0);
    host.spawn_spec(
        "dev",
        ProcSpec {
            program: PathBuf::from("bash"),
            args: vec![path(&repo.join("scripts/dev.sh"))],
            env: env.clone(),
            cwd: repo,
        },
    )?;
    wait_until(
        "scripts/dev.sh to say berth dev is running",
        Duration::from_secs(240),
        || {
            let proc = host.proc("dev").ok()?;
            let log = proc.log();
            if log.contains("berth dev is running") {
                return Some(Ok(()));
            }
            (!proc.is_running()).then_some(Err(log))
        },
    )?
    .map_err(|log| anyhow::anyhow!("scripts/dev.sh ended early:\n{log}"))?;

    // "In another terminal": the installed berth, with the HOME the script
    // wrote the admin bundle to.
    let berth = path(&prefix.join("berth"));
    let home_env = format!("HOME={}", path(&home));
    let host = net.host(0);
    let out = host.run(
        "env",
        &[
            &home_env, &berth, "service", "ps", "demo", "--format", "json",
        ],
    )?;
    let tasks: Value = serde_json::from_slice(&out.stdout).context("service ps JSON")?;
    let running = tasks
        .as_array()
        .map(|t| t.iter().filter(|t| t["state"] == "running").count())
        .unwrap_or(0);
    assert_eq!(running, 3, "{tasks}");
    let body = host.run("curl", &["-fsS", "--max-time", "5", "localhost:8080"])?;
    let body = String::from_utf8_lossy(&body.stdout);
    if !body.contains("hello from") {
        bail!("curl localhost:8080 answered {body:?}");
    }

    // Tidy up as a user would: remove the demo, then Ctrl-C the script.
    host.run("env", &[&home_env, &berth, "service", "rm", "demo"])?;
    wait_until(
        "the demo's tasks to be gone",
        Duration::from_secs(60),
        || {
            let out = host
                .run_unchecked("env", &[&home_env, &berth, "ps", "-a", "-q"])
                .ok()?;
            (out.status.success() && String::from_utf8_lossy(&out.stdout).trim().is_empty())
                .then_some(())
        },
    )?;
    let proc = net.host_mut(0).proc("dev")?;
    proc.signal(Signal::SIGINT)?;
    proc.wait_exit(Duration::from_secs(30))?;
    Ok(())
}
