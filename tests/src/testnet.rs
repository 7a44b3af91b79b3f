//! A network of test hosts on one machine.
//!
//! Layout: a sandbox (its own mount + network namespace, private /run) whose
//! network namespace is the "fabric": a bridge `fabric` with one veth per host.
//! Each host has its own network namespace (`eth0` with 198.18.0.N/15) and its own
//! mount namespace with a private /run. Nothing is created in the machine's
//! namespaces, so `ip netns list` on the machine never shows anything of ours, and
//! everything disappears when the holders die, even after a crash.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

use crate::cgroups::{self, TEST_PREFIX};
use crate::ns::{Holder, HolderKind, NsFds, enter_before_exec, in_netns};
use crate::process::{Proc, ProcSpec, print_log};

/// Interface name of a host's link to the fabric.
pub const HOST_IFACE: &str = "eth0";

/// The fabric address of host number `index` (h1 is 0), known before the
/// host exists (say, to name a registry in the controllers' arguments).
pub fn host_address(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, (index + 1) as u8)
}
/// nftables table the harness owns in a host for cuts.
const CUT_TABLE: &str = "berth_harness_cut";

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// Which traffic a cut drops, seen from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Nothing in, nothing out.
    Both,
    /// Packets to the host are dropped; what it sends still arrives.
    Inbound,
    /// Packets from the host are dropped; what others send still arrives.
    Outbound,
}

pub struct TestNet {
    name: String,
    workdir: PathBuf,
    // Field order is drop order: processes, then hosts, then the sandbox.
    hosts: Vec<Host>,
    sandbox: Holder,
    keep_workdir: bool,
}

pub struct Host {
    index: usize,
    name: String,
    address: Ipv4Addr,
    procs: Vec<Proc>,
    holder: Holder,
    /// The sandbox's namespaces (valid while the TestNet lives; hosts drop first).
    fabric: NsFds,
    workdir: PathBuf,
}

impl TestNet {
    /// Builds `hosts` test hosts named h1..hN. `test` names the test in paths.
    pub fn new(test: &str, hosts: usize) -> Result<TestNet> {
        if hosts > 250 {
            bail!("at most 250 test hosts, asked for {hosts}");
        }
        remove_stale_runs();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{TEST_PREFIX}{}-{id}-{}",
            std::process::id(),
            sanitize(test)
        );
        let workdir = base_dir().join(&name);
        std::fs::create_dir_all(workdir.join("logs"))
            .with_context(|| format!("failed to create {}", workdir.display()))?;
        let sandbox = Holder::start(HolderKind::Sandbox).context("failed to create the sandbox")?;
        let mut net = TestNet {
            name,
            workdir,
            hosts: Vec::new(),
            sandbox,
            keep_workdir: false,
        };
        net.fabric(&["link", "add", "fabric", "type", "bridge"])?;
        net.fabric(&["link", "set", "fabric", "up"])?;
        net.fabric(&["link", "set", "lo", "up"])?;
        for index in 0..hosts {
            net.add_host(index)?;
        }
        Ok(net)
    }

    fn add_host(&mut self, index: usize) -> Result<()> {
        let name = format!("h{}", index + 1);
        let address = host_address(index);
        let holder = Holder::start(HolderKind::Host {
            sandbox: &self.sandbox,
        })
        .with_context(|| format!("failed to create host {name}"))?;
        let workdir = self.workdir.join(&name);
        std::fs::create_dir_all(&workdir)?;
        let veth = format!("v{name}"); // Host::fabric_port
        let pid = holder.pid().to_string();
        self.fabric(&[
            "link", "add", &veth, "type", "veth", "peer", "name", HOST_IFACE, "netns", &pid,
        ])?;
        self.fabric(&["link", "set", &veth, "master", "fabric", "up"])?;
        let host = Host {
            index,
            name,
            address,
            procs: Vec::new(),
            holder,
            fabric: self.sandbox.fds(),
            workdir,
        };
        let cidr = format!("{address}/15");
        host.ip(&["link", "set", "lo", "up"])?;
        host.ip(&["addr", "add", &cidr, "dev", HOST_IFACE])?;
        host.ip(&["link", "set", HOST_IFACE, "up"])?;
        self.hosts.push(host);
        Ok(())
    }

    /// Runs `ip ARGS` in the fabric namespace.
    fn fabric(&self, args: &[&str]) -> Result<Output> {
        run_checked(self.sandbox.fds(), &self.workdir, "ip", args)
    }

    /// The per-test name: prefix for cgroups and anything else global a test makes.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Top-level cgroup name the test's runtimes should put containers under; it is
    /// removed from every hierarchy when the TestNet is dropped.
    pub fn cgroup_parent(&self) -> &str {
        &self.name
    }

    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn host(&self, index: usize) -> &Host {
        &self.hosts[index]
    }

    pub fn host_mut(&mut self, index: usize) -> &mut Host {
        &mut self.hosts[index]
    }

    /// Keeps the work directory (data dirs and logs) after the test.
    pub fn keep_workdir(&mut self) {
        self.keep_workdir = true;
    }

    /// Prints every process log (called on drop; runners show it for failures).
    pub fn print_logs(&self) {
        for host in &self.hosts {
            for proc in &host.procs {
                print_log(
                    &format!("{} on {}", proc.name(), host.name),
                    proc.log_path(),
                    400,
                );
            }
        }
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Always: test runners show a test's output only when it fails, and a
        // test that returns Err is not panicking here.
        self.print_logs();
        for host in &mut self.hosts {
            host.procs.clear();
        }
        self.hosts.clear();
        if let Err(err) = cgroups::remove_everywhere(&self.name) {
            eprintln!("testnet cleanup: {err:#}");
        }
        if !self.keep_workdir {
            let _ = std::fs::remove_dir_all(&self.workdir);
        }
    }
}

impl Host {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// A directory of this host's own on the machine's disk (data dirs go here).
    pub fn dir(&self) -> &Path {
        &self.workdir
    }

    /// Pid of the process that holds this host's namespaces.
    pub fn holder_pid(&self) -> u32 {
        self.holder.pid()
    }

    pub fn ns(&self) -> NsFds {
        self.holder.fds()
    }

    /// Starts `program` inside this host; its output goes to a log file.
    pub fn spawn<S: AsRef<str>>(
        &mut self,
        name: &str,
        program: impl AsRef<Path>,
        args: &[S],
    ) -> Result<&mut Proc> {
        let spec = ProcSpec {
            program: program.as_ref().to_path_buf(),
            args: args.iter().map(|a| a.as_ref().to_string()).collect(),
            env: Vec::new(),
            cwd: self.workdir.clone(),
        };
        self.spawn_spec(name, spec)
    }

    pub fn spawn_spec(&mut self, name: &str, spec: ProcSpec) -> Result<&mut Proc> {
        if self.procs.iter().any(|p| p.name() == name) {
            bail!("{} already runs a process named {name}", self.name);
        }
        let log = self
            .workdir
            .parent()
            .unwrap_or(&self.workdir)
            .join("logs")
            .join(format!("{}-{name}.log", self.name));
        let proc = Proc::start(name, &self.name, spec, self.holder.fds(), log)?;
        self.procs.push(proc);
        Ok(self.procs.last_mut().expect("just pushed"))
    }

    pub fn proc(&mut self, name: &str) -> Result<&mut Proc> {
        let host = self.name.clone();
        self.procs
            .iter_mut()
            .find(|p| p.name() == name)
            .with_context(|| format!("{host} runs no process named {name}"))
    }

    /// Runs a command inside this host to completion and returns its output; fails
    /// when it exits non-zero.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<Output> {
        run_checked(self.holder.fds(), &self.workdir, program, args)
    }

    /// The body of `GET path` from `ip:port`, asked from this host (None: no
    /// answer, or one without a body).
    pub fn http_get(&self, ip: Ipv4Addr, port: u16, path: &str) -> Result<Option<String>> {
        let script = crate::http::get_script("busybox nc", ip, port, path);
        let out = self.run_unchecked("sh", &["-c", &script])?;
        Ok(crate::http::body_of(&out.stdout))
    }

    /// Runs a command inside this host and returns its output whatever its status.
    pub fn run_unchecked(&self, program: &str, args: &[&str]) -> Result<Output> {
        run_in(self.holder.fds(), &self.workdir, program, args)
    }

    /// `program args` to run in this host (its namespaces and work dir), for
    /// a test that sets up its stdio itself (a PTY, a pipe it writes).
    pub fn command(&self, program: &str, args: &[&str]) -> Result<Command> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        enter_before_exec(&mut cmd, self.holder.fds(), &self.workdir)?;
        Ok(cmd)
    }

    fn ip(&self, args: &[&str]) -> Result<Output> {
        self.run("ip", args)
    }

    /// Runs `f` on a thread inside this host's network namespace (for test
    /// clients: sockets opened there talk from this host).
    pub fn net<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        in_netns(self.holder.net_file(), f)
    }

    /// A tokio runtime whose threads all live in this host's network namespace:
    /// clients spawned on it talk from this host. Drive work with
    /// [`crate::netruntime::run`] (plain `block_on` would poll on the caller's thread).
    pub fn runtime(&self) -> Result<tokio::runtime::Runtime> {
        crate::netruntime::runtime_in(self.holder.net_file())
    }

    /// Cuts this host off the fabric: the fabric's bridge silently drops its
    /// packets, as in a real partition (links stay up, senders see no error).
    /// Replaces an earlier cut.
    pub fn cut(&self, cut: Cut) -> Result<()> {
        self.heal()?;
        let (inbound, outbound) = match cut {
            Cut::Both => (true, true),
            Cut::Inbound => (true, false),
            Cut::Outbound => (false, true),
        };
        let port = self.fabric_port();
        let rule = |on: bool, r: String| if on { r } else { String::new() };
        // Only IP is dropped: ARP still passes, or a one-way cut would stop the
        // allowed direction too (its sender could not resolve the peer's MAC).
        const IP: &str = "meta protocol { ip, ip6 }";
        let script = format!(
            "table bridge {table} {{\n\
             chain forward {{ type filter hook forward priority -400; {} {} }}\n\
             }}\n",
            // Leaving the bridge through the host's port = traffic to the host.
            rule(inbound, format!("oifname \"{port}\" {IP} drop;")),
            rule(outbound, format!("iifname \"{port}\" {IP} drop;")),
            table = self.cut_table(),
        );
        let script_path = self.workdir.join("cut.nft");
        std::fs::write(&script_path, script)?;
        let path = script_path.to_string_lossy().to_string();
        run_checked(self.fabric, &self.workdir, "nft", &["-f", &path])
            .with_context(|| format!("failed to cut {} ({cut:?})", self.name))?;
        Ok(())
    }

    /// Undoes `cut`.
    pub fn heal(&self) -> Result<()> {
        let table = self.cut_table();
        let out = run_in(
            self.fabric,
            &self.workdir,
            "nft",
            &["delete", "table", "bridge", &table],
        )?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !stderr.contains("No such file or directory") {
            bail!("failed to heal {}: {}", self.name, stderr.trim());
        }
        Ok(())
    }

    /// The fabric bridge's port (veth end) that leads to this host.
    fn fabric_port(&self) -> String {
        format!("v{}", self.name)
    }

    fn cut_table(&self) -> String {
        format!("{CUT_TABLE}_{}", self.name)
    }

    /// kill -9 of every process of this host (a crashed machine).
    pub fn kill_all(&mut self) -> Result<()> {
        for proc in &mut self.procs {
            proc.kill9()?;
        }
        Ok(())
    }
}

fn run_in(ns: NsFds, cwd: &Path, program: &str, args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    enter_before_exec(&mut cmd, ns, cwd)?;
    cmd.output()
        .with_context(|| format!("failed to run {program} {}", args.join(" ")))
}

fn run_checked(ns: NsFds, cwd: &Path, program: &str, args: &[&str]) -> Result<Output> {
    let out = run_in(ns, cwd, program, args)?;
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Where test networks keep their data dirs and logs.
pub fn base_dir() -> PathBuf {
    std::env::var_os("BERTH_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("berth-tests"))
}

/// Removes work dirs and cgroups of earlier runs whose test process died.
pub fn remove_stale_runs() {
    cgroups::remove_stale();
    if let Ok(entries) = std::fs::read_dir(base_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if cgroups::owner_is_dead(&name) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn sanitize(test: &str) -> String {
    let s: String = test
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    if s.is_empty() { "test".to_string() } else { s }
}
