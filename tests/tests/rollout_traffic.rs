//! Zero failed requests while a service changes under load, end to end: real
//! controllers, three agent hosts, images from a real registry, and real HTTP
//! from berth-loadgen through the service's VIP (from a container) and
//! through its published port (from a host). A task about to stop first
//! leaves every node's load balancer and DNS (drain before stop), so:
//! - a start-first rolling update v1 → v2 (through the gRPC API) fails no
//!   request, and once it completed every answer is v2;
//! - scaling 6 → 3 fails no request, even with one node slow to apply it;
//! - a task that turns unhealthy leaves the VIP within interval × retries + 1 s;
//! - a stop-first update with parallelism 2 never has more than 2 replicas
//!   unavailable (sampled), and fails no request;
//! - an update to a version whose health check fails is rolled back by itself
//!   within monitor + 5 s, failing no request and never taking down more than
//!   its parallelism.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use berth_proto::v1::{
    GetServiceRequest, ListTasksRequest, Task, TaskHealth, TaskState, UpdateConfig, UpdateOrder,
    UpdateServiceRequest,
};
use berth_testhost::cluster::Cluster;
use berth_testhost::controllers::connect;
use berth_testhost::images::web_layout;
use berth_testhost::traffic::{Load, Summary, probe_from_container, probe_from_host};
use berth_testhost::wait_until;

const CONVERGE: Duration = Duration::from_secs(90);
/// busybox httpd serving the image's /www (index.html: its version).
const HTTPD: &[&str] = &["httpd", "-f", "-p", "80", "-h", "/www"];
const PUBLISHED: u16 = 8080;
/// How long n1's agent stays paused around the scale-down.
const SLOW_NODE: Duration = Duration::from_millis(300);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Pushes the web image as `web:v1` and `web:v2`; returns both references.
fn push_web_images(cluster: &Cluster) -> Result<(String, String)> {
    let work = cluster.c.net.workdir().join("web");
    std::fs::create_dir_all(&work)?;
    let layout = work.join("layout");
    let mut refs = Vec::new();
    for version in ["v1", "v2"] {
        web_layout(&work, &layout, version, version)?;
        refs.push(cluster.registry.push(
            &cluster.c.net,
            &layout,
            version,
            &format!("web:{version}"),
        )?);
    }
    Ok((refs[0].clone(), refs[1].clone()))
}

/// `berth service create NAME --image IMAGE EXTRA... -- COMMAND...`.
fn create(
    cluster: &Cluster,
    name: &str,
    image: &str,
    extra: &[&str],
    command: &[&str],
) -> Result<()> {
    let mut args = vec!["service", "create", name, "--image", image];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(command);
    cluster.berth(&args).map(drop)
}

/// The service's tasks, through the API.
fn tasks(cluster: &Cluster, service: &str) -> Result<Vec<Task>> {
    let (addr, security, service) = (
        cluster.c.address(0),
        cluster.c.security(),
        service.to_string(),
    );
    cluster.c.run(async move {
        let mut client = connect(&addr, &security).await?;
        let answer = client
            .list_tasks(ListTasksRequest {
                service,
                node: String::new(),
            })
            .await?;
        Ok(answer.into_inner().tasks)
    })
}

fn observed(task: &Task) -> i32 {
    task.status.as_ref().map_or(0, |s| s.state)
}

/// The running task `service` has on some agent whose container answers
/// `exec`: (agent index, task id).
fn a_running_task(cluster: &Cluster, service: &str) -> Result<(usize, String)> {
    let row = cluster
        .ps(service)?
        .into_iter()
        .find(|t| t.state == "running")
        .with_context(|| format!("no running task of {service}"))?;
    let agent = row.node.trim_start_matches('n').parse::<usize>()? - 1;
    Ok((agent, row.id))
}

/// Waits until `probe` answers only with successes.
fn wait_answering(what: &str, probe: impl Fn() -> Result<Summary>) -> Result<()> {
    wait_until(what, CONVERGE, || {
        let s = probe().ok()?;
        (s.ok > 0 && s.failed == 0).then_some(())
    })
}

/// No failed request, and enough requests to have meant something.
fn assert_no_failures(what: &str, s: &Summary) {
    assert_eq!(s.failed, 0, "{what}: failed requests: {:?}", s.failures);
    assert!(s.ok >= 50, "{what}: only {} requests answered", s.ok);
}

/// The web service (6 replicas, v1, published on 8080, healthy on GET /), a
/// client task for VIP traffic, and both paths answering.
struct Web {
    cluster: Cluster,
    v2: String,
    vip: std::net::Ipv4Addr,
    client: (usize, String),
    /// The published port as a client host reaches it: an agent host's address.
    published: String,
}

fn web_cluster(test: &str) -> Result<Web> {
    let cluster = Cluster::start(test, 1, 3, 0)?;
    let (v1, v2) = push_web_images(&cluster)?;
    let publish = format!("{PUBLISHED}:80");
    create(
        &cluster,
        "web",
        &v1,
        &[
            "--replicas",
            "6",
            "--publish",
            &publish,
            "--health-http",
            "80/",
            "--health-interval",
            "300ms",
            "--stop-grace-period",
            "2s",
        ],
        HTTPD,
    )?;
    create(&cluster, "client", &v1, &[], &["sleep", "3600"])?;
    wait_until("6 healthy web tasks", CONVERGE, || {
        let rows = cluster.ps("web").ok()?;
        let healthy = rows
            .iter()
            .filter(|t| t.state == "running" && t.health == "healthy")
            .count();
        (healthy == 6).then_some(())
    })?;
    let per_node = cluster.running_per_node("web")?;
    assert_eq!(
        per_node.len(),
        3,
        "6 replicas spread over 3 hosts: {per_node:?}"
    );
    cluster.wait_running("client", 1, CONVERGE)?;
    let client = a_running_task(&cluster, "client")?;
    let vip = wait_until("web's VIP by name", CONVERGE, || {
        let ips = cluster.lookup(client.0, &client.1, "web").ok()?;
        ips.into_iter().next()
    })?;
    let published = format!(
        "http://{}:{PUBLISHED}/",
        cluster.c.net.host(cluster.agent_hosts[0]).address()
    );
    let vip_url = format!("http://{vip}:80/");
    wait_answering("the VIP to answer every request", || {
        probe_from_container(&cluster, client.0, &client.1, &vip_url, "1s")
    })?;
    let from = cluster.c.client_host();
    wait_answering("the published port to answer every request", || {
        probe_from_host(&cluster, from, &published, "1s")
    })?;
    Ok(Web {
        cluster,
        v2,
        vip,
        client,
        published,
    })
}

impl Web {
    /// Both load generators: through the VIP from the client container and
    /// through the published port from the client host.
    fn start_loads(&mut self, round: &str) -> Result<(Load, Load)> {
        let (agent, task) = self.client.clone();
        let vip = Load::in_container(
            &mut self.cluster,
            agent,
            &task,
            &format!("vip-{round}"),
            &format!("http://{}:80/", self.vip),
        )?;
        let host = self.cluster.c.client_host();
        let published = Load::from_host(
            &mut self.cluster,
            host,
            &format!("published-{round}"),
            &self.published,
        )?;
        // Traffic before the change, too.
        std::thread::sleep(Duration::from_secs(2));
        Ok((vip, published))
    }

    /// Stops both load generators of `change`: what each saw, after checking
    /// that none failed a request.
    fn stop_loads(
        &mut self,
        change: &str,
        vip: Load,
        published: Load,
    ) -> Result<Vec<(&'static str, Summary)>> {
        let mut seen = Vec::new();
        for (what, load) in [
            ("through the VIP", vip),
            ("through the published port", published),
        ] {
            let s = load.stop(&mut self.cluster)?;
            eprintln!("{change}, {what}: {s:?}");
            assert_no_failures(&format!("{change}, {what}"), &s);
            seen.push((what, s));
        }
        Ok(seen)
    }
}

/// Waits until exactly `n` tasks of `service` run, none is still stopping,
/// and every running one satisfies `current`.
fn wait_settled(
    cluster: &Cluster,
    service: &str,
    n: usize,
    current: impl Fn(&Task) -> bool,
) -> Result<()> {
    wait_until(
        &format!("{n} current tasks of {service} and no other"),
        CONVERGE,
        || {
            let tasks = tasks(cluster, service).ok()?;
            let running: Vec<&Task> = tasks
                .iter()
                .filter(|t| observed(t) == TaskState::Running as i32)
                .collect();
            let settled = running.len() == n
                && running
                    .iter()
                    .all(|t| t.desired_state == TaskState::Running as i32 && current(t))
                && tasks
                    .iter()
                    .all(|t| observed(t) >= TaskState::Running as i32);
            settled.then_some(())
        },
    )
}

#[test]
fn a_start_first_update_and_a_scale_down_fail_no_request() -> Result<()> {
    let mut web = web_cluster("traffic_rollout")?;

    // (b) v1 → v2, start-first, two at a time, through the API.
    let (vip, published) = web.start_loads("update")?;
    let (addr, security, v2) = (
        web.cluster.c.address(0),
        web.cluster.c.security(),
        web.v2.clone(),
    );
    let version = web.cluster.c.run(async move {
        let mut client = connect(&addr, &security).await?;
        let service = client
            .get_service(GetServiceRequest {
                service: "web".into(),
            })
            .await?
            .into_inner();
        let mut spec = service.spec.context("web has a spec")?;
        spec.image = v2;
        spec.update_config = Some(UpdateConfig {
            parallelism: 2,
            order: UpdateOrder::StartFirst as i32,
            ..Default::default()
        });
        let updated = client
            .update_service(UpdateServiceRequest {
                service: "web".into(),
                spec: Some(spec),
                version: service.version,
                ..Default::default()
            })
            .await?
            .into_inner();
        anyhow::Ok(updated.service.context("the updated service")?.spec_version)
    })?;
    wait_settled(&web.cluster, "web", 6, |t| t.spec_version >= version)?;
    let completed_ms = now_ms();
    for t in tasks(&web.cluster, "web")? {
        eprintln!(
            "task {} v{} on {} at {:?}: desired {}, observed {}",
            t.id,
            t.spec_version,
            t.node_id,
            t.addresses.get("berth"),
            t.desired_state,
            observed(&t)
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    for (what, s) in web.stop_loads("the update", vip, published)? {
        let v1 = s.body("v1").context("v1 answered before the update")?;
        let v2 = s.body("v2").context("v2 answered after the update")?;
        assert!(
            v1.last_ms < completed_ms,
            "{what}: v1 answered at {} ms, after the update completed at {completed_ms} ms",
            v1.last_ms
        );
        assert!(v2.last_ms > completed_ms, "{what}: {v2:?}");
        assert_eq!(
            s.bodies.len(),
            2,
            "{what}: only v1 and v2 answer: {:?}",
            s.bodies
        );
    }

    // (a) 6 → 3, with n1 slow to apply the change: its agent is paused
    // around it, so its kernel keeps sending connections by the old
    // endpoints (n1's published port is the host client's way in) until it
    // resumes and catches up. Without the drain the tasks stopped elsewhere
    // would get their signal while n1 still sends them connections.
    let (vip, published) = web.start_loads("scale")?;
    let slow = web.cluster.agent(0)?.pid().context("n1's agent runs")?;
    let pause = nix::unistd::Pid::from_raw(i32::try_from(slow)?);
    nix::sys::signal::kill(pause, nix::sys::signal::Signal::SIGSTOP)?;
    let resume = std::thread::spawn(move || {
        // Well below the agents' 1 s drain bound, so the stopping tasks wait
        // for n1's acknowledgement rather than run out of patience.
        std::thread::sleep(SLOW_NODE);
        nix::sys::signal::kill(pause, nix::sys::signal::Signal::SIGCONT)
    });
    let scaled = web.cluster.berth(&["service", "scale", "web=3"]);
    resume
        .join()
        .map_err(|_| anyhow::anyhow!("the resuming thread panicked"))??;
    scaled?;
    wait_settled(&web.cluster, "web", 3, |_| true)?;
    std::thread::sleep(Duration::from_secs(2));
    for (what, s) in web.stop_loads("scaling down", vip, published)? {
        assert_eq!(
            s.bodies.iter().map(|b| b.what.as_str()).collect::<Vec<_>>(),
            ["v2"],
            "{what}"
        );
    }
    Ok(())
}

#[test]
fn an_unhealthy_task_leaves_the_vip_within_interval_times_retries_plus_a_second() -> Result<()> {
    const INTERVAL_MS: u64 = 500;
    const RETRIES: u64 = 2;
    /// What the test itself adds to the bound: the `exec` that makes the task
    /// sick starts before the file exists (the clock is read before it), and
    /// the load generator's threads are scheduled on a loaded machine.
    const MARGIN_MS: u64 = 500;
    let mut cluster = Cluster::start("traffic_unhealthy", 1, 3, 0)?;
    let (v1, _) = push_web_images(&cluster)?;
    let interval = format!("{INTERVAL_MS}ms");
    let retries = RETRIES.to_string();
    // Each task answers with its hostname, and is healthy while /sick is absent.
    create(
        &cluster,
        "gate",
        &v1,
        &[
            "--replicas",
            "2",
            "--health-cmd",
            "test ! -e /sick",
            "--health-interval",
            &interval,
            "--health-retries",
            &retries,
        ],
        &[
            "sh",
            "-c",
            "hostname > /www/index.html && exec httpd -f -p 80 -h /www",
        ],
    )?;
    create(&cluster, "client", &v1, &[], &["sleep", "3600"])?;
    wait_until("2 healthy gate tasks", CONVERGE, || {
        let rows = cluster.ps("gate").ok()?;
        (rows
            .iter()
            .filter(|t| t.state == "running" && t.health == "healthy")
            .count()
            == 2)
            .then_some(rows)
    })?;
    cluster.wait_running("client", 1, CONVERGE)?;
    let client = a_running_task(&cluster, "client")?;
    let vip = wait_until("gate's VIP by name", CONVERGE, || {
        cluster
            .lookup(client.0, &client.1, "gate")
            .ok()?
            .into_iter()
            .next()
    })?;
    let url = format!("http://{vip}:80/");
    wait_until(
        "both gate tasks to answer through the VIP",
        CONVERGE,
        || {
            let s = probe_from_container(&cluster, client.0, &client.1, &url, "1s").ok()?;
            (s.failed == 0 && s.bodies.len() == 2).then_some(())
        },
    )?;
    let (sick_agent, sick) = a_running_task(&cluster, "gate")?;
    let sick_hostname: String = sick.chars().take(12).collect();

    let load = Load::in_container(&mut cluster, client.0, &client.1, "vip-gate", &url)?;
    std::thread::sleep(Duration::from_secs(2));
    let sick_from_ms = now_ms();
    let made = cluster.exec(sick_agent, &sick, &["touch", "/sick"])?;
    if !made.status.success() {
        bail!("touch /sick in {sick}: {made:?}");
    }
    wait_until("the sick task to be reported unhealthy", CONVERGE, || {
        cluster
            .ps("gate")
            .ok()?
            .iter()
            .any(|t| t.id == sick && (t.health == "unhealthy" || t.state == "failed"))
            .then_some(())
    })?;
    std::thread::sleep(Duration::from_secs(3));
    let s = load.stop(&mut cluster)?;
    eprintln!("unhealthy: {s:?}");
    // An unhealthy task drains too: it gets its stop signal only once every
    // node let it go, so no request to it is refused.
    assert_eq!(s.failed, 0, "requests failed: {:?}", s.failures);
    let last = s
        .body(&sick_hostname)
        .with_context(|| {
            format!(
                "the sick task {sick_hostname} answered before: {:?}",
                s.bodies
            )
        })?
        .last_ms;
    let left_after = last.saturating_sub(sick_from_ms);
    let bound = INTERVAL_MS * RETRIES + 1000;
    eprintln!(
        "the sick task answered through the VIP until {left_after} ms after its check began \
         to fail (bound {bound} ms + {MARGIN_MS} ms margin)"
    );
    assert!(
        left_after <= bound + MARGIN_MS,
        "the unhealthy task still answered through the VIP {left_after} ms after its check \
         began to fail; bound: interval × retries + 1 s = {bound} ms (+ {MARGIN_MS} ms margin)"
    );
    assert!(
        s.bodies
            .iter()
            .any(|b| b.what != sick_hostname && b.last_ms > last),
        "the healthy task kept answering: {:?}",
        s.bodies
    );
    Ok(())
}

/// Slots of `service` with a task that serves: meant to run, running and
/// healthy.
fn serving_slots(cluster: &Cluster, service: &str) -> Result<usize> {
    let slots: std::collections::BTreeSet<u64> = tasks(cluster, service)?
        .iter()
        .filter(|t| {
            t.desired_state == TaskState::Running as i32
                && observed(t) == TaskState::Running as i32
                && t.status.as_ref().map(|s| s.health) == Some(TaskHealth::Healthy as i32)
        })
        .map(|t| t.slot)
        .collect();
    Ok(slots.len())
}

/// The service's rollout state as `service inspect` names it.
fn rollout_state(cluster: &Cluster, service: &str) -> Result<String> {
    let inspect: serde_json::Value =
        serde_json::from_str(&cluster.berth(&["service", "inspect", service])?)?;
    Ok(inspect["update_status"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Samples how many of `replicas` slots do not serve until the rollout of
/// `service` reaches `end`; returns the most seen at once and how long it took.
fn sample_until(
    cluster: &Cluster,
    service: &str,
    replicas: usize,
    end: &str,
) -> Result<(usize, Duration)> {
    let start = std::time::Instant::now();
    let mut worst = 0;
    loop {
        let down = replicas.saturating_sub(serving_slots(cluster, service)?);
        worst = worst.max(down);
        let state = rollout_state(cluster, service)?;
        if state == end {
            return Ok((worst, start.elapsed()));
        }
        if start.elapsed() > CONVERGE {
            bail!("the rollout of {service} did not reach {end} (it is {state:?})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn stop_first_stays_within_parallelism_and_a_failing_version_rolls_back_unseen() -> Result<()> {
    const PARALLELISM: usize = 2;
    const MONITOR_MS: u64 = 2_000;
    let mut web = web_cluster("traffic_stop_first")?;

    // Stop-first, two at a time: at most two replicas down at any sample.
    let (vip, published) = web.start_loads("stop-first")?;
    let v2 = web.v2.clone();
    web.cluster.berth(&[
        "service",
        "update",
        "web",
        "--detach",
        "--image",
        &v2,
        "--update-parallelism",
        "2",
        "--update-order",
        "stop-first",
        "--update-monitor",
        "1s",
    ])?;
    let (worst, _) = sample_until(&web.cluster, "web", 6, "completed")?;
    eprintln!("stop-first, parallelism {PARALLELISM}: at most {worst} replicas down");
    assert!(
        worst <= PARALLELISM,
        "{worst} replicas down at once, parallelism {PARALLELISM}"
    );
    std::thread::sleep(Duration::from_secs(1));
    web.stop_loads("the stop-first update", vip, published)?;

    // A version whose check never passes: rolled back by itself within
    // monitor + 5 s; start-first, so the old tasks serve throughout.
    let (vip, published) = web.start_loads("failing")?;
    let monitor = format!("{MONITOR_MS}ms");
    web.cluster.berth(&[
        "service",
        "update",
        "web",
        "--detach",
        "--env-add",
        "BROKEN=1",
        "--health-cmd",
        "exit 1",
        "--health-interval",
        "300ms",
        "--health-retries",
        "1",
        "--update-failure-action",
        "rollback",
        "--update-order",
        "start-first",
        "--update-parallelism",
        "2",
        "--update-monitor",
        &monitor,
    ])?;
    let (worst, took) = sample_until(&web.cluster, "web", 6, "rollback_completed")?;
    let bound = Duration::from_millis(MONITOR_MS + 5_000);
    eprintln!(
        "failing version: rolled back in {} ms (bound {} ms), at most {worst} replicas down",
        took.as_millis(),
        bound.as_millis()
    );
    assert!(
        took <= bound,
        "rolled back after {} ms; bound: monitor + 5 s = {} ms",
        took.as_millis(),
        bound.as_millis()
    );
    assert!(worst <= PARALLELISM, "{worst} replicas down at once");
    std::thread::sleep(Duration::from_secs(1));
    for (what, s) in web.stop_loads("the failing update", vip, published)? {
        assert_eq!(
            s.bodies.iter().map(|b| b.what.as_str()).collect::<Vec<_>>(),
            ["v2"],
            "{what}: only the old version answered"
        );
    }
    Ok(())
}
