//! The phases of bench-scale: one size (a fresh 3-controller cluster, N
//! simulated agents, N services of R replicas, until every task runs), then on
//! the last size's cluster an idle window and the loss of some nodes.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth_pki::{Credentials, Security};
use tempfile::TempDir;

use super::api::{Api, ApiError, is_down, is_ready};
use super::fleet::Fleet;
use super::usage::{cpu_time, peak_rss_kib};
use crate::controller::berth::{BerthCluster, Transport};

/// The network the services join unless they use the default one: a /14 has
/// room for 3,840 node blocks of /26 (the default network's /16 has 960, fewer
/// than 1,000 nodes need).
pub const NETWORK: &str = "scale";

pub struct SizeSettings {
    pub nodes: usize,
    pub tasks_per_node: u64,
    /// From the first create until every task must run.
    pub deadline: Duration,
    /// For all agents to register and open their sessions.
    pub register_deadline: Duration,
    /// Shared connections per controller.
    pub connections: usize,
    /// The controllers' --node-down-after.
    pub down_after: Duration,
    /// Subnet of the services' own network; None = the default network.
    pub network_subnet: Option<String>,
    pub base_port: u16,
    /// Mutual TLS (each agent with its own certificate) or plain text.
    pub transport: Transport,
}

pub struct SizeResult {
    pub nodes: usize,
    pub tasks: usize,
    pub registered: usize,
    pub register: Duration,
    /// From the first create to every task running (None: not within the deadline).
    pub converge: Option<Duration>,
    /// Tasks running at the end (the API's count).
    pub running: usize,
    pub leader_cpu: Duration,
    /// CPU time of all three controllers (the leader may change under load).
    pub controllers_cpu: Duration,
    pub leader_peak_rss_kib: u64,
    pub bytes_to_agents: u64,
    /// Registrations beyond the first of each agent (lost sessions).
    pub re_registrations: u64,
    /// Sessions that ended, all causes (see [`Fleet::session_ends`]).
    pub session_ends: u64,
    pub leader_changed: bool,
    /// Leaders elected during the run (a leader that loses its quorum under
    /// load steps down and a new one is elected).
    pub elections: usize,
    /// What the leader's dispatcher sessions sent by kind, from its
    /// `berth_dispatcher_session_{messages,bytes}_total`:
    /// `kind:messages/MB,...` ("unknown" when the scrape failed).
    pub session_messages: String,
}

/// A cluster and its agents, kept after a size's run for the idle and lost
/// phases; dropping it kills the controllers and removes their data.
pub struct Live {
    pub cluster: BerthCluster,
    pub fleet: Fleet,
    /// Connected to a follower: the idle and lost phases only read.
    pub api: Api,
    pub leader_pid: u32,
    pub tasks: usize,
    pub converged: bool,
    pub down_after: Duration,
    pub dir: TempDir,
}

/// CPU time of every running member.
fn controllers_cpu(cluster: &BerthCluster) -> Duration {
    cluster
        .members
        .iter()
        .filter_map(|m| m.pid())
        .filter_map(|pid| cpu_time(pid).ok())
        .sum()
}

/// Leaders elected so far, from the members' logs.
fn elections(dir: &Path) -> usize {
    (0..3)
        .filter_map(|i| std::fs::read_to_string(dir.join(format!("berth-{i}.log"))).ok())
        .map(|log| log.matches("became leader").count())
        .sum()
}

fn session_ends(fleet: &Fleet) -> u64 {
    fleet.session_ends().iter().map(|(_, n)| n).sum()
}

/// The leader's session messages and bytes by kind since it started
/// (`complete:1000/2.1MB,delta:...`), scraped from the `/metrics` its log
/// names.
async fn session_counters(log: &Path) -> Result<String> {
    let addr = crate::metrics_cost::logged_metrics_address(log).await?;
    let text =
        tokio::task::spawn_blocking(move || crate::metrics_cost::scrape_text(addr)).await??;
    let messages =
        crate::metrics_cost::counter_by_label(&text, "berth_dispatcher_session_messages_total");
    let bytes =
        crate::metrics_cost::counter_by_label(&text, "berth_dispatcher_session_bytes_total");
    let parts: Vec<String> = messages
        .iter()
        .map(|(kind, n)| {
            let b = bytes
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(0.0, |(_, b)| *b);
            format!("{kind}:{n:.0}/{:.1}MB", b / 1e6)
        })
        .collect();
    anyhow::ensure!(
        !parts.is_empty(),
        "no berth_dispatcher_session_* in the scrape"
    );
    Ok(parts.join(","))
}

fn progress(what: &str, started: Instant) {
    eprintln!("  [{:>6.1} s] {what}", started.elapsed().as_secs_f64());
}

/// Polls until `target` tasks run (the agents' acknowledged count first, then
/// the API's, leaving out tasks on `excluded` nodes) or `deadline` passes.
/// Returns the time since `since` at which the agents' count reached the
/// target, if the API confirmed it.
async fn wait_running(
    fleet: &Fleet,
    api: &Api,
    target: usize,
    excluded: &HashSet<String>,
    since: Instant,
    deadline: Instant,
) -> Result<Option<Duration>> {
    let mut reached: Option<Duration> = None;
    let mut next_progress = Instant::now() + Duration::from_secs(10);
    loop {
        let running = fleet.running();
        if running >= target {
            let at = *reached.get_or_insert_with(|| since.elapsed());
            match api.tasks(excluded).await {
                Ok(count) if count.running >= target => return Ok(Some(at)),
                Ok(_) => {}
                // No leader for a moment (elections under load): ask again.
                Err(err) => eprintln!("  {err}"),
            }
            // The agents' count ran ahead of the store: ask again shortly.
            tokio::time::sleep(Duration::from_millis(500)).await;
        } else {
            reached = None;
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        if Instant::now() >= next_progress {
            progress(
                &format!(
                    "{running} of {target} tasks running ({} agents connected)",
                    fleet.connected()
                ),
                since,
            );
            next_progress += Duration::from_secs(10);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A certificate for each of `nodes` simulated agents, joined with the agent
/// token as real agents join (before the clock of the run starts).
async fn enroll(cluster: &BerthCluster, address: &str, nodes: usize) -> Result<Vec<Security>> {
    let started = Instant::now();
    let token = berth_pki::JoinToken::parse(&cluster.join_token("agent").await?)?;
    let semaphore = Arc::new(tokio::sync::Semaphore::new(32));
    let mut joins = tokio::task::JoinSet::new();
    for index in 0..nodes {
        let (token, address, semaphore) = (token.clone(), address.to_string(), semaphore.clone());
        joins.spawn(async move {
            let _permit = semaphore.acquire_owned().await?;
            let enrolled = berth_pki::enroll::join(&address, &token, None, "").await?;
            anyhow::Ok((index, Credentials::new(enrolled.bundle)?))
        });
    }
    let mut identities = vec![None; nodes];
    while let Some(joined) = joins.join_next().await {
        let (index, creds) = joined??;
        identities[index] = Some(Security::Tls(creds));
    }
    eprintln!(
        "  {nodes} agent certificates issued in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(identities.into_iter().flatten().collect())
}

/// One size: a fresh cluster in a directory under `parent`, its agents
/// registered, then the services created and the time until all tasks run.
pub async fn size(parent: &Path, s: &SizeSettings) -> Result<(SizeResult, Live)> {
    let dir = tempfile::tempdir_in(parent)?;
    let extra = [
        "--node-down-after".to_string(),
        s.down_after.as_secs().to_string(),
        // The leader's session counters are read after convergence.
        "--metrics-listen".to_string(),
        "127.0.0.1:0".to_string(),
    ];
    let cluster = BerthCluster::start_with(dir.path(), s.base_port, &extra, s.transport).await?;
    let leader = cluster.leader().await?;
    let leader_pid = cluster.members[leader]
        .pid()
        .context("the leader is not running")?;
    let addresses = cluster.addresses();
    eprintln!(
        "  3 controllers up in {}; leader {} (pid {leader_pid})",
        dir.path().display(),
        addresses[leader]
    );
    let api = Api::connect(&addresses[leader], cluster.security()).await?;
    // What the benchmark reads to watch the cluster (every task, when the
    // agents say they all run) it asks a follower: linearizable there too,
    // and the leader's CPU and memory are then the cluster's work, not the
    // observer's (listing 20,000 tasks was ~14 % of the leader's new pages).
    let observer = Api::connect(
        &addresses[(leader + 1) % addresses.len()],
        cluster.security(),
    )
    .await?;
    let identities = match s.transport {
        Transport::Tls => enroll(&cluster, &addresses[leader], s.nodes).await?,
        Transport::Plaintext => Vec::new(),
    };
    let network = match &s.network_subnet {
        Some(subnet) => {
            api.create_network(NETWORK, subnet).await?;
            Some(NETWORK)
        }
        None => None,
    };

    let started = Instant::now();
    let fleet = Fleet::start(addresses.clone(), s.nodes, s.connections, identities);
    let register_deadline = started + s.register_deadline;
    let mut next_progress = started + Duration::from_secs(10);
    while fleet.connected() < s.nodes && Instant::now() < register_deadline {
        if Instant::now() >= next_progress {
            progress(
                &format!("{} of {} agents connected", fleet.connected(), s.nodes),
                started,
            );
            next_progress += Duration::from_secs(10);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let register = started.elapsed();
    let registered = match api.nodes().await {
        Ok(nodes) => nodes.iter().filter(|n| is_ready(n)).count(),
        Err(err) => {
            eprintln!("  {err}");
            0
        }
    };
    progress(
        &format!("{registered} of {} nodes ready; creating services", s.nodes),
        started,
    );

    let tasks = s.nodes * s.tasks_per_node as usize;
    let cpu_before = cpu_time(leader_pid)?;
    let all_cpu_before = controllers_cpu(&cluster);
    let bytes_before = fleet.bytes_received();
    let registrations_before = fleet.registrations();
    let ends_before = session_ends(&fleet);
    let elections_before = elections(dir.path());
    let first_create = Instant::now();
    let creator = {
        let api = api.clone();
        let network = network.map(str::to_string);
        let (services, replicas) = (s.nodes, s.tasks_per_node);
        tokio::spawn(async move {
            api.create_services(services, replicas, network.as_deref(), 8)
                .await
        })
    };
    let converge = wait_running(
        &fleet,
        &observer,
        tasks,
        &HashSet::new(),
        first_create,
        first_create + s.deadline,
    )
    .await?;
    let leader_cpu = cpu_time(leader_pid)?.saturating_sub(cpu_before);
    let controllers_cpu = controllers_cpu(&cluster).saturating_sub(all_cpu_before);
    let bytes_to_agents = fleet.bytes_received() - bytes_before;
    let re_registrations = fleet.registrations() - registrations_before;
    let leader_peak_rss_kib = peak_rss_kib(leader_pid)?;
    let session_messages = session_counters(&dir.path().join(format!("berth-{leader}.log")))
        .await
        .unwrap_or_else(|err| {
            eprintln!("  the leader's session counters: {err:#}");
            "unknown".to_string()
        });
    if creator.is_finished() {
        match creator.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("  creating services failed: {err}"),
            Err(err) => eprintln!("  creating services did not finish: {err}"),
        }
    } else {
        eprintln!("  services were still being created at the deadline");
        creator.abort();
    }
    // How evenly the scheduler spread the tasks (the lost-node phase moves
    // what its agents held).
    match observer.tasks(&HashSet::new()).await {
        Ok(count) => {
            let ids: Vec<String> = (0..fleet.len()).map(|i| fleet.node_id(i)).collect();
            let (fewest, most) = count.spread(ids.iter().map(String::as_str));
            eprintln!("  tasks desired per node: {fewest} to {most}");
        }
        Err(err) => eprintln!("  {err}"),
    }
    let running = match converge {
        Some(_) => tasks,
        None => observer
            .tasks(&HashSet::new())
            .await
            .map(|c| c.running)
            .unwrap_or_else(|err| {
                eprintln!("  {err}");
                fleet.running()
            }),
    };
    let leader_changed = cluster.leader().await.ok() != Some(leader);
    let ends = fleet.session_ends();
    if !ends.is_empty() {
        let top: Vec<String> = ends
            .iter()
            .take(6)
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        eprintln!(
            "  sessions ended (since the agents started): {}",
            top.join(", ")
        );
    }
    let result = SizeResult {
        nodes: s.nodes,
        tasks,
        registered,
        register,
        converge,
        running,
        leader_cpu,
        controllers_cpu,
        leader_peak_rss_kib,
        bytes_to_agents,
        re_registrations,
        session_ends: session_ends(&fleet) - ends_before,
        leader_changed,
        elections: elections(dir.path()) - elections_before,
        session_messages,
    };
    let live = Live {
        cluster,
        fleet,
        api: observer,
        leader_pid,
        tasks,
        converged: converge.is_some(),
        down_after: s.down_after,
        dir,
    };
    Ok((result, live))
}

pub struct IdleResult {
    pub window: Duration,
    /// The leader's CPU time over the window as a percentage of one core.
    pub leader_cpu_percent: f64,
    pub bytes_to_agents: u64,
    pub re_registrations: u64,
    /// From the start of the phase (the settle included) to the end of the
    /// last second in which the agents still received more than
    /// [`DELIVERY_BUSY`] bytes: the tail of the convergence's deliveries
    /// (endpoints reach every agent after the tasks run). None: none.
    pub delivery_tail: Option<Duration>,
    /// The window's seconds after its last delivery, and the leader's CPU
    /// over them (None: fewer than [`QUIET_MIN`]).
    pub quiet: Duration,
    pub quiet_cpu_percent: Option<f64>,
}

/// Bytes a second to the agents that count as deliveries still going on.
pub const DELIVERY_BUSY: u64 = 100_000;

/// The quiet part of an idle window: the seconds after the last one with
/// deliveries, when at least this many remain.
pub const QUIET_MIN: Duration = Duration::from_secs(5);

/// The leader's cost of a cluster where nothing changes: agents heartbeat,
/// sessions stay open. Sampled each second, so the window's quiet part (after
/// the convergence's last deliveries) is measured too.
pub async fn idle(live: &Live, settle: Duration, window: Duration) -> Result<IdleResult> {
    let phase = Instant::now();
    let mut delivery_tail = None;
    let mut last_bytes = live.fleet.bytes_received();
    let mut busy = |delivery_tail: &mut Option<Duration>| {
        let now = live.fleet.bytes_received();
        let busy = now - last_bytes > DELIVERY_BUSY;
        if busy {
            *delivery_tail = Some(phase.elapsed());
        }
        last_bytes = now;
        busy
    };
    while phase.elapsed() + Duration::from_secs(1) <= settle {
        tokio::time::sleep(Duration::from_secs(1)).await;
        busy(&mut delivery_tail);
    }
    tokio::time::sleep(settle.saturating_sub(phase.elapsed())).await;
    let cpu_before = cpu_time(live.leader_pid)?;
    let bytes_before = live.fleet.bytes_received();
    let registrations_before = live.fleet.registrations();
    let started = Instant::now();
    // The CPU reading at the end of the last busy second (or the start).
    let mut quiet_from = (started, cpu_before);
    while started.elapsed() + Duration::from_secs(1) <= window {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if busy(&mut delivery_tail) {
            quiet_from = (Instant::now(), cpu_time(live.leader_pid)?);
        }
    }
    tokio::time::sleep(window.saturating_sub(started.elapsed())).await;
    let window = started.elapsed();
    let cpu_after = cpu_time(live.leader_pid)?;
    let cpu = cpu_after.saturating_sub(cpu_before);
    let quiet = quiet_from.0.elapsed();
    let quiet_cpu_percent = (quiet >= QUIET_MIN).then(|| {
        cpu_after.saturating_sub(quiet_from.1).as_secs_f64() / quiet.as_secs_f64() * 100.0
    });
    Ok(IdleResult {
        window,
        leader_cpu_percent: cpu.as_secs_f64() / window.as_secs_f64() * 100.0,
        bytes_to_agents: live.fleet.bytes_received() - bytes_before,
        re_registrations: live.fleet.registrations() - registrations_before,
        delivery_tail,
        quiet,
        quiet_cpu_percent,
    })
}

pub struct LostResult {
    pub lost: usize,
    /// Tasks desired running on the lost nodes when they stopped (per the
    /// store): what has to move. 0 means the phase measured nothing.
    pub tasks_on_lost: usize,
    /// From the agents' stop until all tasks run on the other nodes.
    pub recovered: Option<Duration>,
    /// Tasks running on the other nodes at the end.
    pub running: usize,
    /// Lost nodes the leader declared down.
    pub declared_down: usize,
    /// Other nodes seen down at any check during the phase.
    pub false_downs: usize,
}

/// Stops `count` agents spread over the fleet (no more heartbeats, streams
/// dropped) and waits until their tasks run elsewhere, watching the other
/// nodes' status every 2 s.
pub async fn lose(live: &mut Live, count: usize, deadline: Duration) -> Result<LostResult> {
    let n = live.fleet.len();
    let count = count.min(n);
    let indexes: Vec<usize> = (0..count).map(|i| i * n / count).collect();
    let lost: HashSet<String> = indexes
        .iter()
        .map(|&i| live.fleet.node_id(i))
        .filter(|id| !id.is_empty())
        .collect();
    let tasks_on_lost = match (
        live.api.tasks(&HashSet::new()).await,
        live.api.tasks(&lost).await,
    ) {
        (Ok(all), Ok(rest)) => all.desired.saturating_sub(rest.desired),
        (Err(err), _) | (_, Err(err)) => {
            eprintln!("  {err}");
            0
        }
    };
    let started = Instant::now();
    for &i in &indexes {
        live.fleet.stop(i);
    }
    let mut falsely_down = HashSet::new();
    let mut declared_down = 0;
    let mut check_nodes = |nodes: Result<Vec<berth_proto::v1::Node>, ApiError>| {
        let nodes = match nodes {
            Ok(nodes) => nodes,
            Err(err) => {
                eprintln!("  {err}");
                return;
            }
        };
        declared_down = 0;
        for node in nodes.iter().filter(|n| is_down(n)) {
            if lost.contains(&node.id) {
                declared_down += 1;
            } else {
                falsely_down.insert(node.id.clone());
            }
        }
    };
    let mut recovered = None;
    let mut next_check = started;
    let mut next_progress = started + Duration::from_secs(10);
    loop {
        if Instant::now() >= next_check {
            check_nodes(live.api.nodes().await);
            next_check += Duration::from_secs(2);
        }
        let running = live.fleet.running();
        if running >= live.tasks
            && live
                .api
                .tasks(&lost)
                .await
                .is_ok_and(|c| c.running >= live.tasks)
        {
            recovered = Some(started.elapsed());
            break;
        }
        if started.elapsed() >= deadline {
            break;
        }
        if Instant::now() >= next_progress {
            progress(
                &format!(
                    "{running} of {} tasks running on the other nodes",
                    live.tasks
                ),
                started,
            );
            next_progress += Duration::from_secs(10);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check_nodes(live.api.nodes().await);
    let running = match live.api.tasks(&lost).await {
        Ok(count) => count.running,
        Err(err) => {
            eprintln!("  {err}");
            live.fleet.running()
        }
    };
    Ok(LostResult {
        lost: lost.len(),
        tasks_on_lost,
        recovered,
        running,
        declared_down,
        false_downs: falsely_down.len(),
    })
}
