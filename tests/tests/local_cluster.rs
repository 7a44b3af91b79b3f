//! `deploy/local-cluster.sh up 3` then `down` (#17): three hosts in network
//! namespaces on this machine, the webapp demo stack serving, three ready
//! nodes through the CLI, and after `down` nothing of it left: no namespace,
//! link, process, mount, cgroup or data dir of its prefix. The prefix, the
//! /24 and the data dir are this run's own, so that it cannot meet another
//! test; traffic goes only to the namespaces the script made.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};
use berth_testhost::bin_path;
use berth_testhost::cluster::Cluster;
use serde_json::Value;

struct LocalCluster {
    prefix: String,
    net: String,
    dir: PathBuf,
    bin: PathBuf,
}

impl LocalCluster {
    fn new() -> LocalCluster {
        let pid = std::process::id();
        let agent = bin_path("berth-agent");
        LocalCluster {
            prefix: format!("lct{pid:x}"),
            net: format!("10.213.{}", 1 + pid % 250),
            dir: std::env::temp_dir().join(format!("berth-lct-{pid}")),
            bin: agent.parent().map(Path::to_path_buf).unwrap_or_default(),
        }
    }

    fn script(&self, args: &[&str]) -> Result<Output> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local-cluster.sh");
        Command::new(&script)
            .args(args)
            .env("BERTH_LC_PREFIX", &self.prefix)
            .env("BERTH_LC_NET", &self.net)
            .env("BERTH_LC_DIR", &self.dir)
            .env("BERTH_LC_BIN", &self.bin)
            .output()
            .with_context(|| format!("failed to run {}", script.display()))
    }

    /// `berth ARGS` with the address and credentials `up` printed.
    fn berth(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(self.bin.join("berth"))
            .arg("--controller")
            .arg(format!("{}.1:7400", self.net))
            .arg("--tls-dir")
            .arg(self.dir.join("h1/controller/admin"))
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "berth {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// What of this run is still on the machine, one line each.
    fn leftovers(&self) -> Result<Vec<String>> {
        let mut left = Vec::new();
        let netns = berth_testhost::command::run("ip", &["netns", "list"])?;
        left.extend(
            netns
                .lines()
                .filter(|l| l.starts_with(&format!("{}-", self.prefix)))
                .map(|l| format!("netns {l}")),
        );
        let links = berth_testhost::command::run("ip", &["-o", "link", "show"])?;
        left.extend(
            links
                .lines()
                .filter(|l| l.contains(&self.prefix))
                .map(|l| format!("link {l}")),
        );
        let dir = self.dir.to_string_lossy().to_string();
        left.extend(
            Cluster::processes_matching(&dir)
                .into_iter()
                .chain(Cluster::processes_matching(&self.prefix))
                .map(|pid| format!("process {pid}")),
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
        left.extend(
            mounts
                .lines()
                .filter(|l| l.contains(&dir) || l.contains(&self.prefix))
                .map(|l| format!("mount {l}")),
        );
        let cgroup = Path::new("/sys/fs/cgroup").join(&self.prefix);
        if cgroup.exists() {
            left.push(format!("cgroup {}", cgroup.display()));
        }
        if self.dir.exists() {
            left.push(format!("data dir {}", self.dir.display()));
        }
        Ok(left)
    }
}

impl Drop for LocalCluster {
    /// `down` also when the test failed halfway.
    fn drop(&mut self) {
        if let Ok(out) = self.script(&["down"])
            && !out.status.success()
        {
            eprintln!(
                "local-cluster.sh down failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn curl(url: &str) -> Result<String> {
    let out = Command::new("curl")
        .args(["-fsS", "--max-time", "5", url])
        .output()?;
    if !out.status.success() {
        bail!("GET {url}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn local_cluster_up_3_serves_the_demo_stack_and_down_leaves_nothing_behind() -> Result<()> {
    let lc = LocalCluster::new();
    let up = lc.script(&["up", "3"])?;
    let stdout = String::from_utf8_lossy(&up.stdout).to_string();
    if !up.status.success() {
        let logs = std::fs::read_dir(&lc.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('h'))
            .flat_map(|h| std::fs::read_dir(h.path()).into_iter().flatten().flatten())
            .filter(|f| f.file_name().to_string_lossy().ends_with(".log"))
            .map(|f| {
                let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                format!("{}:\n{}", f.path().display(), tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n");
        bail!(
            "up 3 failed:\n{stdout}\n{}\n{logs}",
            String::from_utf8_lossy(&up.stderr)
        );
    }
    assert!(stdout.contains("berth runs on 3 hosts"), "{stdout}");
    assert!(stdout.contains("berth node ls"), "{stdout}");

    // Three ready nodes, through the CLI with what `up` printed.
    let nodes: Value = serde_json::from_str(&lc.berth(&["node", "ls", "--format", "json"])?)?;
    let ready: Vec<&str> = nodes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["status"] == "ready")
        .filter_map(|n| n["hostname"].as_str().or(n["name"].as_str()))
        .collect();
    assert_eq!(ready.len(), 3, "{nodes}");

    // The demo stack serves, on every host's published port.
    for host in 1..=3 {
        let body = curl(&format!("http://{}.{host}:8088/", lc.net))?;
        assert!(body.contains("hello from berth"), "h{host}: {body}");
    }
    let services = lc.berth(&["stack", "services", "demo"])?;
    for service in ["demo_web", "demo_db", "demo_cache"] {
        assert!(services.contains(service), "{services}");
    }

    let down = lc.script(&["down"])?;
    let stdout = String::from_utf8_lossy(&down.stdout).to_string();
    assert!(
        down.status.success(),
        "down failed: {stdout}\n{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(stdout.contains("removed netns"), "{stdout}");
    let left = lc.leftovers()?;
    assert!(left.is_empty(), "left behind: {left:#?}");
    // A second down has nothing to do.
    let again = lc.script(&["down"])?;
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing to remove"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    Ok(())
}
