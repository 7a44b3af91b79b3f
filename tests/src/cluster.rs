//! A whole berth cluster on test hosts: controllers, agents, a registry with a
//! busybox image, and a client host that runs the `berth` CLI.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::controllers::Controllers;
use crate::images::{HostRegistry, REGISTRY_PORT, busybox_layout};
use crate::testnet::host_address;
use crate::{bin_path, wait_until};

pub struct Cluster {
    pub c: Controllers,
    pub registry: HostRegistry,
    /// Reference of the busybox image in the registry.
    pub image: String,
    /// Host indexes of agents (started or not yet).
    pub agent_hosts: Vec<usize>,
    /// Registries (HOST:PORT) the agents started from now on reach over
    /// plain HTTP: `registry`'s, and those a test adds.
    pub insecure_registries: Vec<String>,
    /// More arguments for the agents started from now on (`--metrics-listen`).
    pub agent_args: Vec<String>,
    controllers: usize,
}

/// Task as `berth service ps --format json` shows it.
#[derive(Clone, Debug)]
pub struct TaskRow {
    pub id: String,
    pub slot: u64,
    /// The service spec version the task runs.
    pub spec_version: u64,
    pub node: String,
    pub desired_state: String,
    pub state: String,
    /// "healthy", "unhealthy", "starting", or "" without a health check.
    pub health: String,
    pub message: String,
    pub error: String,
    pub exit_code: Option<i64>,
    /// Overlay address per network ("IP/PREFIX" in the JSON).
    pub addresses: std::collections::BTreeMap<String, berth_proto::net::Ipv4Prefix>,
}

impl Cluster {
    /// `controllers` controller hosts, `agents` agent hosts (agents started), and
    /// `spare_agents` more hosts for agents started later by the test. The
    /// registry runs on the client host.
    pub fn start(
        test: &str,
        controllers: usize,
        agents: usize,
        spare_agents: usize,
    ) -> Result<Cluster> {
        Self::start_with(test, controllers, agents, spare_agents, &[])
    }

    /// As `start`, with more controller arguments (e.g. `--cert-expiry 10s`).
    pub fn start_with(
        test: &str,
        controllers: usize,
        agents: usize,
        spare_agents: usize,
        controller_args: &[&str],
    ) -> Result<Cluster> {
        let mut args = Vec::new();
        if !controller_args.contains(&"--node-down-after") {
            args.extend(["--node-down-after", "4"]);
        }
        // The controllers pin images of the registry below (on the client
        // host, the one after the controllers' and agents') to digests,
        // asking it over plain HTTP as the agents pull from it.
        let registry_address = format!(
            "{}:{REGISTRY_PORT}",
            host_address(controllers + agents + spare_agents)
        );
        args.extend(["--insecure-registry", registry_address.as_str()]);
        args.extend_from_slice(controller_args);
        let mut c = Controllers::start_with(test, controllers, agents + spare_agents, &args)?;
        let client = c.client_host();
        let registry = HostRegistry::start(&mut c.net, client)?;
        if registry.address() != registry_address {
            bail!(
                "the registry listens on {}, the controllers were told {registry_address}",
                registry.address()
            );
        }
        let work = c.net.workdir().join("image");
        std::fs::create_dir_all(&work)?;
        let layout = Self::layout_in(&c);
        busybox_layout(&work, &layout, "1")?;
        let image = registry.push(&c.net, &layout, "1", "busybox:1")?;
        let agent_hosts: Vec<usize> = (controllers..controllers + agents + spare_agents).collect();
        let insecure_registries = vec![registry.address().to_string()];
        let mut cluster = Cluster {
            c,
            registry,
            image,
            agent_hosts,
            insecure_registries,
            agent_args: Vec::new(),
            controllers,
        };
        for i in 0..agents {
            cluster.start_agent(i)?;
        }
        cluster.wait_nodes_ready(agents)?;
        Ok(cluster)
    }

    fn layout_in(c: &Controllers) -> std::path::PathBuf {
        c.net.workdir().join("image").join("layout")
    }

    /// The OCI layout `image` was pushed from (tag `1`), to push it elsewhere.
    pub fn image_layout(&self) -> std::path::PathBuf {
        Self::layout_in(&self.c)
    }

    fn controller_list(&self) -> String {
        (0..self.controllers)
            .map(|h| self.c.address(h))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn agent_name(i: usize) -> String {
        format!("n{}", i + 1)
    }

    /// Starts agent number `i` (on `agent_hosts[i]`) with the agent token.
    pub fn start_agent(&mut self, i: usize) -> Result<()> {
        let token = self.c.token_file("agent")?;
        self.start_agent_with(i, "agent", Some(&token))
    }

    /// The agent's data dir on its host.
    pub fn agent_dir(&self, i: usize) -> std::path::PathBuf {
        self.c.net.host(self.agent_hosts[i]).dir().join("agent")
    }

    /// Starts agent number `i` as process `proc_name`, with the token in
    /// `token_file` (none: the agent must have a valid certificate).
    pub fn start_agent_with(
        &mut self,
        i: usize,
        proc_name: &str,
        token_file: Option<&std::path::Path>,
    ) -> Result<()> {
        let host = self.agent_hosts[i];
        let data_dir = self.agent_dir(i);
        let mut args = vec![
            "--data-dir".to_string(),
            data_dir.to_string_lossy().to_string(),
            "--controller".into(),
            self.controller_list(),
            "--name".into(),
            Self::agent_name(i),
            "--advertise".into(),
            self.c.net.host(host).address().to_string(),
            "--runtime".into(),
            bin_path("berth-runtime").to_string_lossy().to_string(),
            "--cgroup-parent".into(),
            self.c.net.cgroup_parent().to_string(),
        ];
        for registry in &self.insecure_registries {
            args.push("--insecure-registry".into());
            args.push(registry.clone());
        }
        args.extend(self.agent_args.iter().cloned());
        if let Some(token) = token_file {
            args.push("--token-file".into());
            args.push(token.to_string_lossy().to_string());
        }
        let program = bin_path("berth-agent");
        self.c
            .net
            .host_mut(host)
            .spawn(proc_name, &program, &args)?;
        Ok(())
    }

    /// The agent process `proc_name` of agent `i`.
    pub fn agent_proc(&mut self, i: usize, proc_name: &str) -> Result<&mut crate::Proc> {
        let host = self.agent_hosts[i];
        self.c.net.host_mut(host).proc(proc_name)
    }

    pub fn agent(&mut self, i: usize) -> Result<&mut crate::Proc> {
        let host = self.agent_hosts[i];
        self.c.net.host_mut(host).proc("agent")
    }

    /// Runs the `berth` CLI on the client host against controller `via`.
    pub fn berth_via(&self, via: usize, args: &[&str]) -> Result<String> {
        let tls_dir = self.c.admin_dir().to_string_lossy().to_string();
        let mut full = vec!["--tls-dir", tls_dir.as_str()];
        full.extend_from_slice(args);
        let out = self.berth_raw(via, &full)?;
        if !out.status.success() {
            bail!(
                "berth {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Runs the `berth` CLI on the client host against controller `via` with
    /// exactly `args` (no credentials added); returns its output, whatever its exit.
    pub fn berth_raw(&self, via: usize, args: &[&str]) -> Result<std::process::Output> {
        let berth = bin_path("berth");
        let addr = self.c.address(via);
        let mut full = vec!["--controller", &addr];
        full.extend_from_slice(args);
        self.c
            .net
            .host(self.c.client_host())
            .run_unchecked(&berth.to_string_lossy(), &full)
    }

    /// Runs the `berth` CLI with the admin bundle and the environment
    /// `env` (KEY=VALUE entries) on the client host against controller
    /// `via`; returns its output, whatever its exit.
    pub fn berth_env(
        &self,
        via: usize,
        env: &[&str],
        args: &[&str],
    ) -> Result<std::process::Output> {
        let berth = bin_path("berth").to_string_lossy().to_string();
        let addr = self.c.address(via);
        let tls_dir = self.c.admin_dir().to_string_lossy().to_string();
        let mut full = env.to_vec();
        full.extend([berth.as_str(), "--controller", &addr, "--tls-dir", &tls_dir]);
        full.extend_from_slice(args);
        self.c
            .net
            .host(self.c.client_host())
            .run_unchecked("env", &full)
    }

    /// `berth service create NAME --image <the busybox image> EXTRA... [-- COMMAND...]`.
    pub fn create_service(&self, name: &str, extra: &[&str], command: &[&str]) -> Result<()> {
        self.create_service_from(name, &self.image, extra, command)
    }

    /// `berth service create --detach NAME --image IMAGE EXTRA... [-- COMMAND...]`.
    pub fn create_service_from(
        &self,
        name: &str,
        image: &str,
        extra: &[&str],
        command: &[&str],
    ) -> Result<()> {
        let mut args = vec!["service", "create", "--detach", name, "--image", image];
        args.extend_from_slice(extra);
        if !command.is_empty() {
            args.push("--");
            args.extend_from_slice(command);
        }
        self.berth(&args).map(drop)
    }

    /// Runs the CLI against any controller that answers.
    pub fn berth(&self, args: &[&str]) -> Result<String> {
        let mut last = None;
        for via in 0..self.controllers {
            match self.berth_via(via, args) {
                Ok(out) => return Ok(out),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no controllers")))
    }

    pub fn nodes(&self) -> Result<Vec<Value>> {
        let out = self.berth(&["node", "ls", "--format", "json"])?;
        let value: Value = serde_json::from_str(&out)?;
        Ok(value.as_array().cloned().unwrap_or_default())
    }

    pub fn wait_nodes_ready(&self, n: usize) -> Result<()> {
        wait_until(&format!("{n} ready nodes"), Duration::from_secs(30), || {
            let nodes = self.nodes().ok()?;
            (nodes.iter().filter(|n| n["status"] == "ready").count() >= n).then_some(())
        })
    }

    pub fn ps(&self, service: &str) -> Result<Vec<TaskRow>> {
        let out = self.berth(&["service", "ps", service, "--format", "json"])?;
        let value: Value = serde_json::from_str(&out).context("service ps JSON")?;
        Ok(value
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|t| TaskRow {
                id: t["id"].as_str().unwrap_or_default().to_string(),
                slot: t["slot"].as_u64().unwrap_or(0),
                spec_version: t["spec_version"].as_u64().unwrap_or(0),
                node: t["node"].as_str().unwrap_or_default().to_string(),
                desired_state: t["desired_state"].as_str().unwrap_or_default().to_string(),
                state: t["state"].as_str().unwrap_or_default().to_string(),
                health: t["health"].as_str().unwrap_or_default().to_string(),
                message: t["message"].as_str().unwrap_or_default().to_string(),
                error: t["error"].as_str().unwrap_or_default().to_string(),
                exit_code: t["exit_code"].as_i64(),
                addresses: serde_json::from_value(t["addresses"].clone()).unwrap_or_default(),
            })
            .collect())
    }

    /// Tasks of `service` observed running, per node name.
    pub fn running_per_node(
        &self,
        service: &str,
    ) -> Result<std::collections::BTreeMap<String, usize>> {
        let mut map = std::collections::BTreeMap::new();
        for t in self.ps(service)? {
            if t.state == "running" {
                *map.entry(t.node).or_default() += 1;
            }
        }
        Ok(map)
    }

    pub fn wait_running(&self, service: &str, n: usize, timeout: Duration) -> Result<()> {
        wait_until(&format!("{n} running tasks of {service}"), timeout, || {
            let rows = self.ps(service).ok()?;
            let running = rows
                .iter()
                .filter(|t| t.state == "running" && t.desired_state == "running")
                .count();
            (running == n).then_some(())
        })
    }

    /// Runs `command` inside the container of `task`, which runs on agent `i`
    /// (through the agent host's runtime); returns its output whatever its exit.
    pub fn exec(&self, i: usize, task: &str, command: &[&str]) -> Result<std::process::Output> {
        let runtime = bin_path("berth-runtime");
        let mut args = vec!["--root", "/run/berth/runtime", "exec", task];
        args.extend_from_slice(command);
        self.c
            .net
            .host(self.agent_hosts[i])
            .run_unchecked(&runtime.to_string_lossy(), &args)
    }

    /// The IPv4 addresses `nslookup NAME` prints inside the container of
    /// `task` on agent `i` (through the resolv.conf the agent gave it).
    pub fn lookup(
        &self,
        i: usize,
        task: &str,
        name: &str,
    ) -> Result<std::collections::BTreeSet<std::net::Ipv4Addr>> {
        let out = self.exec(i, task, &["nslookup", name])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut seen_name = false;
        let mut ips = std::collections::BTreeSet::new();
        for line in text.lines() {
            if line.starts_with("Name:") {
                seen_name = true;
            } else if seen_name
                && let Some(rest) = line.strip_prefix("Address:")
                && let Ok(ip) = rest.trim().parse()
            {
                ips.insert(ip);
            }
        }
        Ok(ips)
    }

    /// Processes whose command line contains `needle`, on the whole machine.
    /// The pids of `n` processes matching `needle`, once there are exactly
    /// `n`: a task reports running when its container started, and its
    /// command follows the container's init a moment later.
    pub fn wait_processes(needle: &str, n: usize) -> Result<Vec<u32>> {
        wait_until(
            &format!("{n} processes running {needle:?}"),
            Duration::from_secs(30),
            || {
                let pids = Self::processes_matching(needle);
                (pids.len() == n).then_some(pids)
            },
        )
    }

    pub fn processes_matching(needle: &str) -> Vec<u32> {
        let mut pids = Vec::new();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                // A container's minimal init names the task's command in its
                // own (`berth-init -- /bin/sleep sleep 3600`): the task's
                // process is its child.
                if text.contains(needle) && !text.starts_with("berth-init -- ") {
                    pids.push(pid);
                }
            }
        }
        pids.sort();
        pids
    }
}
