//! Converge 50 replicas on one host and scale back to 0: berth (`berth dev`)
//! against Docker Swarm (Debian's docker.io, a one-node swarm) with the same
//! busybox image, in the same run; then resident memory with 50 tasks; then
//! rolling updates of those 50 (parallelism 10, delay 0, monitor 1 s): the
//! time from the update command to all 50 tasks running the new spec.
//! Up and down are reported apart and together, each against Swarm's, with
//! the medians of every step of the agent's start and stop paths (from its
//! `berth_agent::supervisor::steps` debug lines, see `berth_bench::steps`).
//!
//!     scripts/build-release.sh && target/release/bench-services
//!
//! (The script links the per-container shim statically, as releases ship it.)
//!
//! Needs root, docker.io, docker-registry, umoci and skopeo (deploy/install-deps.sh
//! plus `apt-get install docker.io`). Not part of CI.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use berth_bench::procs::{Daemon, PerContainer, rss_kib, sibling_binary};
use berth_bench::stats::ms;
use berth_bench::steps::{self, PathSteps};
use berth_testhost::command::run;
use clap::Parser;

#[derive(Parser)]
#[command(about = "50 replicas up and down: berth vs Docker Swarm; memory with 50 tasks")]
struct Args {
    #[arg(long, default_value_t = 50)]
    replicas: usize,
    /// Rounds per system (medians reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Skip Docker Swarm (berth figures only).
    #[arg(long)]
    berth_only: bool,
    /// Keep the logs and data directory afterwards (for profiling).
    #[arg(long)]
    keep: bool,
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Berth {
    bin: PathBuf,
    api: String,
    /// The admin bundle `berth dev` made (mutual TLS, as Swarm always has).
    tls_dir: String,
    /// `berth dev`'s log, with the agent's step timings.
    log: PathBuf,
    _dev: Daemon,
}

impl Berth {
    fn start(dir: &Path) -> Result<Berth> {
        let bin = sibling_binary("berth")?;
        let api = "127.0.0.1:27600".to_string();
        let args: Vec<String> = vec![
            "dev".into(),
            "--data-dir".into(),
            dir.join("berth").to_string_lossy().to_string(),
            "--listen".into(),
            api.clone(),
            "--insecure-registry".into(),
            "127.0.0.1:5000".into(),
            "--log-level".into(),
            steps::LOG_LEVEL.into(),
        ];
        let dev = Daemon::start("berth-dev", &bin, &args, dir)?;
        let b = Berth {
            bin,
            api,
            tls_dir: dir
                .join("berth/controller/admin")
                .to_string_lossy()
                .to_string(),
            log: dir.join("berth/berth-dev.log"),
            _dev: dev,
        };
        wait_for("berth dev", Duration::from_secs(30), || {
            Ok(b.cli(&["node", "ls", "--format", "json"])
                .map(|o| o.contains("\"ready\""))
                .unwrap_or(false))
        })?;
        Ok(b)
    }

    fn cli(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["--controller", &self.api, "--tls-dir", &self.tls_dir];
        full.extend_from_slice(args);
        run(&self.bin.to_string_lossy(), &full)
    }

    /// Rolls `service` (all replicas running) to a new env value: the time
    /// until every one of its `n` tasks runs the new spec.
    fn rolling_update(&self, service: &str, n: usize, value: usize) -> Result<Duration> {
        let start = Instant::now();
        let env = format!("V={value}");
        self.cli(&[
            "service",
            "update",
            service,
            "--detach",
            "--env-add",
            &env,
            "--update-parallelism",
            "10",
            "--update-delay",
            "0",
            "--update-monitor",
            "1s",
        ])?;
        let inspect: serde_json::Value =
            serde_json::from_str(&self.cli(&["service", "inspect", service])?)?;
        let version = inspect["spec_version"].as_u64().unwrap_or(0);
        wait_for("berth rolling update", Duration::from_secs(600), || {
            let out = self.cli(&["service", "ps", service, "--format", "json"])?;
            let tasks: serde_json::Value = serde_json::from_str(&out)?;
            let new = tasks.as_array().map_or(0, |a| {
                a.iter()
                    .filter(|t| {
                        t["state"] == "running"
                            && t["desired_state"] == "running"
                            && t["spec_version"].as_u64() == Some(version)
                    })
                    .count()
            });
            Ok(new == n)
        })?;
        Ok(start.elapsed())
    }

    fn running(&self, service: &str) -> Result<usize> {
        let out = self.cli(&["service", "ps", service, "--format", "json"])?;
        let tasks: serde_json::Value = serde_json::from_str(&out)?;
        Ok(tasks
            .as_array()
            .map(|a| a.iter().filter(|t| t["state"] == "running").count())
            .unwrap_or(0))
    }

    /// Up to `n` running, then down to 0: (up, down), with the agent's
    /// step timings of each.
    fn round(&self, n: usize) -> Result<(Duration, Duration, RoundSteps)> {
        let before = steps::log_mark(&self.log);
        let start = Instant::now();
        self.cli(&[
            "service",
            "create",
            "--detach",
            "bench",
            "--image",
            "127.0.0.1:5000/busybox:1",
            "--replicas",
            &n.to_string(),
            "--",
            "sleep",
            "3600",
        ])?;
        wait_for("berth replicas up", Duration::from_secs(300), || {
            Ok(self.running("bench")? == n)
        })?;
        let up = start.elapsed();
        let upped = steps::log_mark(&self.log);
        let start = Instant::now();
        self.cli(&["service", "scale", "--detach", "bench=0"])?;
        wait_for("berth replicas down", Duration::from_secs(300), || {
            Ok(self.running("bench")? == 0)
        })?;
        let down = start.elapsed();
        // The last tasks' lines follow their final status by a moment.
        std::thread::sleep(Duration::from_millis(500));
        let downed = steps::log_mark(&self.log);
        self.cli(&["service", "rm", "bench"])?;
        std::thread::sleep(Duration::from_secs(1));
        Ok((
            up,
            down,
            RoundSteps {
                start: PathSteps::read(&self.log, before, upped, "start path"),
                network: PathSteps::read(&self.log, before, upped, steps::NETWORK_PATH),
                stop: PathSteps::read(&self.log, upped, downed, "stop path"),
            },
        ))
    }
}

/// The agent's step timings of a round's start, its network part, and stop.
#[derive(Default)]
struct RoundSteps {
    start: PathSteps,
    network: PathSteps,
    stop: PathSteps,
}

impl RoundSteps {
    fn merge(&mut self, other: RoundSteps) {
        self.start.merge(other.start);
        self.network.merge(other.network);
        self.stop.merge(other.stop);
    }

    fn print(&self, what: &str) {
        println!("  {what} agent start path: {}", self.start.summary());
        println!("  {what}   of it network:  {}", self.network.summary());
        println!("  {what} agent stop path:  {}", self.stop.summary());
    }
}

struct Swarm {
    sock: String,
    _dockerd: Daemon,
}

impl Swarm {
    fn start(dir: &Path) -> Result<Swarm> {
        let root = dir.join("docker");
        std::fs::create_dir_all(&root)?;
        let sock = format!("unix://{}", root.join("docker.sock").display());
        let args: Vec<String> = vec![
            "--data-root".into(),
            root.join("data").to_string_lossy().to_string(),
            "--exec-root".into(),
            root.join("exec").to_string_lossy().to_string(),
            "--pidfile".into(),
            root.join("docker.pid").to_string_lossy().to_string(),
            "-H".into(),
            sock.clone(),
        ];
        let dockerd = Daemon::start("dockerd", Path::new("/usr/sbin/dockerd"), &args, dir)?;
        let s = Swarm {
            sock,
            _dockerd: dockerd,
        };
        wait_for("dockerd", Duration::from_secs(60), || {
            Ok(s.docker(&["info"]).is_ok())
        })?;
        s.docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"])?;
        // The same busybox rootfs as berth's image, imported (no image can be pulled).
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin"))?;
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))?;
        for applet in run("/bin/busybox", &["--list"])?.lines() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
            }
        }
        let tar = dir.join("rootfs.tar");
        run(
            "tar",
            &[
                "-C",
                &rootfs.to_string_lossy(),
                "-cf",
                &tar.to_string_lossy(),
                ".",
            ],
        )?;
        s.docker(&["import", &tar.to_string_lossy(), "busybox-bench:1"])?;
        Ok(s)
    }

    fn docker(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-H", &self.sock];
        full.extend_from_slice(args);
        run("docker", &full)
    }

    fn running(&self) -> Result<usize> {
        let out = self.docker(&[
            "ps",
            "-q",
            "--filter",
            "label=com.docker.swarm.service.name=bench",
        ])?;
        Ok(out.lines().filter(|l| !l.trim().is_empty()).count())
    }

    /// As `Berth::rolling_update`: the time until `n` tasks desired running,
    /// none of them from before the update, all run.
    fn rolling_update(&self, n: usize, value: usize) -> Result<Duration> {
        let tasks = || -> Result<Vec<(String, bool)>> {
            let out = self.docker(&[
                "service",
                "ps",
                "bench",
                "--filter",
                "desired-state=running",
                "--format",
                "{{.ID}} {{.CurrentState}}",
            ])?;
            Ok(out
                .lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(id, state)| (id.to_string(), state.starts_with("Running")))
                .collect())
        };
        let old: Vec<String> = tasks()?.into_iter().map(|(id, _)| id).collect();
        let start = Instant::now();
        let env = format!("V={value}");
        self.docker(&[
            "service",
            "update",
            "--detach",
            "--env-add",
            &env,
            "--update-parallelism",
            "10",
            "--update-delay",
            "0s",
            "--update-monitor",
            "1s",
            "bench",
        ])?;
        wait_for("swarm rolling update", Duration::from_secs(900), || {
            let now = tasks()?;
            Ok(now.len() == n
                && now
                    .iter()
                    .all(|(id, running)| *running && !old.contains(id)))
        })?;
        Ok(start.elapsed())
    }

    fn round(&self, n: usize) -> Result<(Duration, Duration)> {
        let start = Instant::now();
        self.docker(&[
            "service",
            "create",
            "--detach",
            "--name",
            "bench",
            "--replicas",
            &n.to_string(),
            "busybox-bench:1",
            "sleep",
            "3600",
        ])?;
        wait_for("swarm replicas up", Duration::from_secs(600), || {
            Ok(self.running()? == n)
        })?;
        let up = start.elapsed();
        let start = Instant::now();
        self.docker(&["service", "scale", "--detach", "bench=0"])?;
        wait_for("swarm replicas down", Duration::from_secs(600), || {
            Ok(self.running()? == 0)
        })?;
        let down = start.elapsed();
        self.docker(&["service", "rm", "bench"])?;
        std::thread::sleep(Duration::from_secs(2));
        Ok((up, down))
    }
}

/// dockerd leaves its iptables chains (and the FORWARD rules that jump to
/// them) and its bridges behind when it stops: removes those, and only those.
fn remove_docker_leftovers() {
    let docker = |rule: &str| rule.contains("DOCKER") || rule.contains("docker");
    for table in ["filter", "nat"] {
        let rules = run("iptables", &["-t", table, "-S"]).unwrap_or_default();
        // Rules of the built-in chains that mention Docker's, as "-A CHAIN ...".
        for rule in rules.lines().filter(|r| r.starts_with("-A ") && docker(r)) {
            let chain = rule.split_whitespace().nth(1).unwrap_or_default();
            if chain.starts_with("DOCKER") {
                continue;
            }
            let mut args = vec!["-t", table, "-D"];
            args.extend(rule.split_whitespace().skip(1));
            let _ = run("iptables", &args);
        }
        // Then Docker's own chains: emptied, then removed.
        let chains: Vec<&str> = rules
            .lines()
            .filter_map(|r| r.strip_prefix("-N "))
            .filter(|c| c.starts_with("DOCKER"))
            .collect();
        for flag in ["-F", "-X"] {
            for chain in &chains {
                let _ = run("iptables", &["-t", table, flag, chain]);
            }
        }
    }
    for bridge in ["docker0", "docker_gwbridge"] {
        let _ = run("ip", &["link", "del", bridge]);
    }
}

/// Unmounts what dockerd left mounted under `dir` (its data root and the
/// swarm's network namespaces), so the temporary directory can go.
fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let prefix = dir.to_string_lossy().to_string();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    // Deepest first.
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = run("umount", &["-l", point]);
    }
}

/// The registry demo-registry.sh started for this run (if none answered on
/// 127.0.0.1:5000 already), stopped at the end: the script detaches it, and
/// its data is in this run's temporary directory. Matched by its config
/// file, so a registry the user runs is left alone.
struct OwnRegistry(PathBuf);

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        let pattern = format!("docker-registry serve {}", self.0.display());
        let _ = std::process::Command::new("pkill")
            .args(["-f", &pattern])
            .status();
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut dir = tempfile::tempdir()?;
    dir.disable_cleanup(args.keep);
    println!("logs and data in {}", dir.path().display());
    let registry = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo-registry.sh");
    run(
        &registry.to_string_lossy(),
        &[&dir.path().join("registry").to_string_lossy()],
    )?;
    let _registry = OwnRegistry(dir.path().join("registry/config.yml"));

    let berth = Berth::start(dir.path())?;
    // Image present on the host first, as for Swarm (imported).
    berth.cli(&[
        "service",
        "create",
        "--detach",
        "warm",
        "--image",
        "127.0.0.1:5000/busybox:1",
        "--",
        "sleep",
        "3600",
    ])?;
    wait_for("the warm-up task", Duration::from_secs(60), || {
        Ok(berth.running("warm")? == 1)
    })?;
    berth.cli(&["service", "rm", "warm"])?;
    let (mut b_total, mut b_up, mut b_down) = (Vec::new(), Vec::new(), Vec::new());
    let mut all_steps = RoundSteps::default();
    for _ in 0..args.rounds {
        let (up, down, steps) = berth.round(args.replicas)?;
        println!(
            "berth: {} up {:.0} ms, down {:.0} ms",
            args.replicas,
            ms(up),
            ms(down)
        );
        steps.print("round:");
        b_total.push(up + down);
        b_up.push(up);
        b_down.push(down);
        all_steps.merge(steps);
    }
    println!("berth per-step medians (ms) over all rounds, from the agent's log:");
    all_steps.print("all:");
    // Memory with the replicas running.
    berth.cli(&[
        "service",
        "create",
        "--detach",
        "mem",
        "--image",
        "127.0.0.1:5000/busybox:1",
        "--replicas",
        &args.replicas.to_string(),
        "--",
        "sleep",
        "3600",
    ])?;
    wait_for("berth memory replicas", Duration::from_secs(300), || {
        Ok(berth.running("mem")? == args.replicas)
    })?;
    let berth_daemon = rss_kib(|c| c.contains("berth dev"));
    let berth_per = PerContainer::measure(PerContainer::is_berth, args.replicas);
    println!(
        "berth memory with {} tasks: controller+agent {} MiB, per-container processes {}",
        args.replicas,
        berth_daemon / 1024,
        berth_per
    );
    let mut b_updates = Vec::new();
    for round in 0..args.rounds {
        let took = berth.rolling_update("mem", args.replicas, round + 2)?;
        println!(
            "berth: rolling update of {} in {:.0} ms",
            args.replicas,
            ms(took)
        );
        b_updates.push(took);
    }
    berth.cli(&["service", "rm", "mem"])?;
    // The service is gone from the API at once; wait for its containers.
    let data = dir.path().to_string_lossy().to_string();
    wait_for("berth cleanup", Duration::from_secs(120), || {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        Ok(rss_kib(|c| c.starts_with("sleep 3600")) == 0 && !mounts.contains(&data))
    })?;
    drop(berth);
    let b = median(b_total);
    println!(
        "berth median up+down: {:.0} ms (up {:.0} ms, down {:.0} ms)",
        ms(b),
        ms(median(b_up.clone())),
        ms(median(b_down.clone()))
    );
    let b_update = median(b_updates);
    println!("berth median rolling update: {:.0} ms", ms(b_update));
    if args.berth_only {
        return Ok(());
    }

    let swarm = Swarm::start(dir.path())?;
    let (mut s_total, mut s_up, mut s_down) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        let (up, down) = swarm.round(args.replicas)?;
        println!(
            "swarm: {} up {:.0} ms, down {:.0} ms",
            args.replicas,
            ms(up),
            ms(down)
        );
        s_total.push(up + down);
        s_up.push(up);
        s_down.push(down);
    }
    swarm.docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        "bench",
        "--replicas",
        &args.replicas.to_string(),
        "busybox-bench:1",
        "sleep",
        "3600",
    ])?;
    wait_for("swarm memory replicas", Duration::from_secs(600), || {
        Ok(swarm.running()? == args.replicas)
    })?;
    let dockerd = rss_kib(|c| c.starts_with("/usr/sbin/dockerd"));
    let containerd =
        rss_kib(|c| c.starts_with("containerd ") || c.contains("/containerd --config"));
    let docker_per = PerContainer::measure(PerContainer::is_docker, args.replicas);
    println!(
        "docker memory with {} tasks: dockerd {} MiB, containerd {} MiB, per-container processes {}",
        args.replicas,
        dockerd / 1024,
        containerd / 1024,
        docker_per
    );
    println!(
        "berth/docker per-container memory: {:.0} KiB / {:.0} KiB = {:.3} (target: <= 2 MiB per container)",
        berth_per.per_container_kib(),
        docker_per.per_container_kib(),
        berth_per.per_container_kib() / docker_per.per_container_kib().max(1.0)
    );
    let mut s_updates = Vec::new();
    for round in 0..args.rounds {
        let took = swarm.rolling_update(args.replicas, round + 2)?;
        println!(
            "swarm: rolling update of {} in {:.0} ms",
            args.replicas,
            ms(took)
        );
        s_updates.push(took);
    }
    swarm.docker(&["service", "rm", "bench"])?;
    let _ = swarm.docker(&["swarm", "leave", "--force"]);
    drop(swarm);
    remove_docker_leftovers();
    unmount_under(dir.path());
    let s = median(s_total);
    println!("swarm median up+down: {:.0} ms", ms(s));
    println!(
        "berth/swarm converge 50 up and down: {:.3} (target <= 0.1)   memory (all daemons + shims): {:.2}",
        ms(b) / ms(s),
        (berth_daemon + berth_per.rss_kib) as f64
            / (dockerd + containerd + docker_per.rss_kib).max(1) as f64
    );
    let (b_up, b_down, s_up, s_down) = (median(b_up), median(b_down), median(s_up), median(s_down));
    println!(
        "berth/swarm 50 up: {:.0} ms / {:.0} ms = {:.3}   down: {:.0} ms / {:.0} ms = {:.3} (targets <= 0.1 each)",
        ms(b_up),
        ms(s_up),
        ms(b_up) / ms(s_up),
        ms(b_down),
        ms(s_down),
        ms(b_down) / ms(s_down)
    );
    let s_update = median(s_updates);
    println!(
        "berth/swarm rolling update of {} (parallelism 10, delay 0, monitor 1s): {:.0} ms / {:.0} ms = {:.3} (target <= 0.2)",
        args.replicas,
        ms(b_update),
        ms(s_update),
        ms(b_update) / ms(s_update)
    );
    Ok(())
}
