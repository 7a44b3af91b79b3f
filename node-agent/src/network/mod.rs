//! The agent's network plane: turns each assignment set into this host's overlay
//! (bridges, VXLANs, routes — [`crate::dataplane::Overlay`]) and puts tasks on it
//! (a namespace per task, a veth per network) for the supervisor.
//!
//! The session hands every assignment set to [`NetPlane::set`] before the
//! supervisor sees its tasks; [`NetPlane::run`] reconciles the kernel on every
//! change and every period; a task's `prepare` first makes sure the current plan
//! is applied, so its bridge exists when its veth is attached.

mod dns;
mod loopback;
mod view;

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_proto::v1::{Assignments, Task};
use futures_util::future::BoxFuture;
use tokio::sync::{Mutex, RwLock, watch};
use tracing::{info, warn};

use crate::dataplane::dns::Following;
use crate::dataplane::lb::{LoadBalancer, Protocol, SystemFirewall};
use crate::dataplane::names::veth_names;
use crate::dataplane::netlink::Netlink;
use crate::dataplane::{LocalPlan, NetworkError, Overlay, RtNetlink, create_netns, remove_netns};
use crate::supervisor::steps::Steps;
use crate::supervisor::{TaskNet, TaskNetwork, hostname_of};
use loopback::LoopbackProxy;
pub use view::{NetView, View};

pub struct NetPlane {
    overlay: Overlay<RtNetlink>,
    /// Where task namespaces are bind-mounted (`<dir>/<task id>`).
    netns_dir: PathBuf,
    view: watch::Sender<Arc<View>>,
    /// An assignment set has arrived this run. Until then the kernel is left as
    /// it is: a restarted agent must not reconcile its running containers'
    /// networks against an empty plan while its session is still connecting.
    assigned: AtomicBool,
    /// The plan last reconciled into the kernel (`None`: not yet this run).
    /// Task attaches hold it shared, so tasks join their networks
    /// concurrently; a reconcile (which may re-create a bridge under an
    /// attach) holds it alone.
    applied: RwLock<Option<LocalPlan>>,
    dns: dns::DnsPlane,
    balancer: LoadBalancer<SystemFirewall, RtNetlink>,
    /// Published TCP ports on 127.0.0.1 too (see [`loopback`]).
    loopback: LoopbackProxy,
    /// For the host's own addresses (where the loopback proxy relays to).
    netlink: RtNetlink,
    /// What keeps the overlay from being built here (another VXLAN device on
    /// the cluster's port and VNI, ...), as the last reconcile found; empty:
    /// nothing. Heartbeats carry it: the node takes no new tasks meanwhile.
    conflict: std::sync::Mutex<String>,
    /// Whether the FORWARD accepts were last wanted (None: not synced yet).
    forward_wanted: Mutex<Option<bool>>,
    /// The shared sequence of the last view whose DNS answers and load
    /// balancer are in the kernel (the session acknowledges it).
    applied_seq: watch::Sender<u64>,
    /// The services whose tasks the DNS servers asked for, and those followed
    /// in what the kernel holds.
    following: Arc<Following>,
}

impl NetPlane {
    /// Opens netlink in the calling thread's namespace (the host's); call
    /// inside a tokio runtime.
    pub fn new(netns_dir: PathBuf) -> Result<Arc<NetPlane>, NetworkError> {
        let (view, _) = watch::channel(Arc::new(View::default()));
        let netlink = RtNetlink::new()?;
        let following = Arc::new(Following::default());
        Ok(Arc::new(NetPlane {
            balancer: LoadBalancer::new(SystemFirewall, netlink.clone()),
            overlay: Overlay::new(netlink.clone()),
            loopback: LoopbackProxy::new(std::net::Ipv4Addr::LOCALHOST),
            netlink,
            conflict: std::sync::Mutex::new(String::new()),
            forward_wanted: Mutex::new(None),
            netns_dir,
            view,
            assigned: AtomicBool::new(false),
            applied: RwLock::new(None),
            dns: dns::DnsPlane::new(Arc::clone(&following)),
            applied_seq: watch::channel(0).0,
            following,
        }))
    }

    /// Takes a new assignment set (cheap; the kernel work happens in `run` or
    /// in the next `prepare`).
    pub fn set(&self, assignments: &Assignments) {
        self.assigned.store(true, Ordering::Release);
        let next = View::from_assignments(assignments);
        self.view.send_if_modified(|current| {
            if **current == next {
                return false;
            }
            *current = Arc::new(next);
            true
        });
    }

    /// The services the DNS servers asked to follow (the session tells the
    /// leader).
    pub fn follow_wanted(&self) -> watch::Receiver<BTreeSet<String>> {
        self.following.wanted()
    }

    /// The names the DNS servers asked for (the session tells the leader).
    pub fn names_wanted(&self) -> watch::Receiver<BTreeSet<String>> {
        self.following.wanted_names()
    }

    /// Follows the shared sequence whose endpoints are in the kernel.
    pub fn applied_seq(&self) -> watch::Receiver<u64> {
        self.applied_seq.subscribe()
    }

    /// What keeps this node's data plane from working (empty: nothing).
    pub fn dataplane_conflict(&self) -> String {
        self.conflict
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_conflict(&self, now: String) {
        let mut conflict = self
            .conflict
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *conflict != now {
            if now.is_empty() {
                info!(was = %conflict, "the data plane conflict is gone");
            } else {
                warn!(conflict = %now, "the data plane cannot be built; the node takes no new tasks");
            }
            *conflict = now;
        }
    }

    pub fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    fn netns_path(&self, task_id: &str) -> PathBuf {
        self.netns_dir.join(task_id)
    }

    /// Reconciles the current plan, DNS and load balancer unless they are the
    /// ones applied last (`force`: anyway, to repair what someone else changed).
    /// Returns the view applied.
    async fn apply(&self, force: bool) -> Result<Arc<View>, NetworkError> {
        if !self.assigned.load(Ordering::Acquire) {
            return Ok(self.view());
        }
        let view = self.apply_overlay(force).await?;
        // Service answers change without the plan changing (tasks come and go).
        // A failure here is logged and retried at the next change or period:
        // it must not keep tasks from starting on a working overlay.
        let dns = self.sync_dns(&view).await;
        // Only what is in the kernel is acknowledged: after a failure a
        // stopping task waits out its drain bound instead. The table is what
        // new connections follow, so that is the moment (stale UDP flows are
        // forgotten after it).
        let acknowledge = || {
            if dns {
                self.applied_seq.send_if_modified(|seq| {
                    let changed = *seq != view.shared_seq;
                    *seq = view.shared_seq;
                    changed
                });
                // DNS servers waiting for a service's tasks answer now: its
                // VIP has its backends.
                self.following
                    .set_ready(view.followed.iter().cloned().collect());
                self.following.set_answered(
                    view.heads_on_demand,
                    view.answered_names.iter().cloned().collect(),
                );
            }
        };
        let lb_plan = view.lb_plan();
        if let Err(error) = self
            .balancer
            .balance_with(&lb_plan, force, acknowledge)
            .await
        {
            warn!(%error, "load balancer not in line with the assignments");
        }
        self.sync_loopback(&lb_plan).await;
        self.sync_forward(!view.plan.networks.is_empty(), force)
            .await;
        Ok(view)
    }

    /// The iptables FORWARD accepts for the overlay's devices (see
    /// [`crate::dataplane::forward`]): when wanted changes, and on every forced
    /// pass (Docker may have started since and set the policy to DROP).
    async fn sync_forward(&self, wanted: bool, force: bool) {
        let mut last = self.forward_wanted.lock().await;
        if !force && *last == Some(wanted) {
            return;
        }
        match crate::dataplane::forward::sync(wanted).await {
            Ok(()) => *last = Some(wanted),
            Err(error) => warn!(%error, "iptables FORWARD not in line with the overlay"),
        }
    }

    /// Gives every published TCP port a listener on 127.0.0.1 (and only those).
    async fn sync_loopback(&self, lb_plan: &crate::dataplane::lb::LbPlan) {
        let ports: BTreeSet<u16> = lb_plan
            .published
            .iter()
            .filter(|rule| rule.protocol == Protocol::Tcp)
            .map(|rule| rule.published_port)
            .collect();
        let target = if ports.is_empty() {
            None
        } else {
            match self.netlink.addresses().await {
                Ok(addresses) => loopback::relay_address(addresses.into_iter().map(|a| a.addr)),
                Err(error) => {
                    warn!(%error, "cannot list the host's addresses for the loopback proxy");
                    None
                }
            }
        };
        self.loopback.sync(&ports, target);
    }

    /// Brings the DNS servers in line with `view`; false if that failed.
    async fn sync_dns(&self, view: &View) -> bool {
        match self.dns.sync(view).await {
            Ok(()) => true,
            Err(error) => {
                warn!(%error, "DNS servers not in line with the assignments");
                false
            }
        }
    }

    /// The overlay part of `apply`: bridges, VXLANs, routes and the veths on them.
    async fn apply_overlay(&self, force: bool) -> Result<Arc<View>, NetworkError> {
        let view = self.view();
        let stale = force || self.applied.read().await.as_ref() != Some(&view.plan);
        let mut applied = match stale {
            true => Some(self.applied.write().await),
            false => None,
        };
        // Checked again under the exclusive lock: another task may have
        // applied this plan meanwhile.
        if let Some(applied) = applied
            .as_mut()
            .filter(|a| force || a.as_ref() != Some(&view.plan))
        {
            let report = match self.overlay.reconcile(&view.plan).await {
                Ok(report) => {
                    self.set_conflict(String::new());
                    report
                }
                Err(NetworkError::VxlanConflict(conflict)) => {
                    self.set_conflict(conflict.clone());
                    return Err(NetworkError::VxlanConflict(conflict));
                }
                Err(other) => return Err(other),
            };
            if !report.is_empty() {
                info!(changes = %report.changes.join(", "), "overlay reconciled");
            }
            **applied = Some(view.plan.clone());
            let reattached = self.overlay.reattach(&view.ports).await?;
            if !reattached.is_empty() {
                warn!(veths = %reattached.join(", "), "container veths had fallen off their bridges");
            }
        }
        // The sweep runs under the exclusive lock too: it must not see a
        // veth an attach is making.
        if force && let Err(error) = self.sweep_veths(&view).await {
            // Repairs of DNS and the load balancer follow regardless.
            warn!(%error, "sweeping veths of gone namespaces failed");
        }
        Ok(view)
    }

    /// The agent's one resync loop: keeps the kernel (overlay, DNS servers,
    /// load balancer) in line with the assignments, at once on every change and
    /// in full at the start and every `period` (repairing what someone else
    /// changed, sweeping veths of gone namespaces). A failed pass is logged and
    /// retried at the next change or period. Holds the plane weakly: ends when
    /// the plane is dropped.
    pub async fn run(self: Arc<Self>, period: Duration, metrics: crate::metrics::AgentMetrics) {
        let mut changes = self.view.subscribe();
        let plane = Arc::downgrade(&self);
        drop(self);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let force = tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    false
                }
                _ = tick.tick() => true,
            };
            let Some(plane) = plane.upgrade() else {
                return;
            };
            let applied = plane.apply(force).await;
            metrics.dataplane_round(applied.is_ok());
            if let Err(error) = applied {
                warn!(%error, "network reconcile failed; retrying at the next change or period");
            }
        }
    }

    async fn prepare_task(&self, task: &Task) -> Result<Option<TaskNet>, NetworkError> {
        if task.addresses.is_empty() {
            return Ok(None);
        }
        // The task needs its bridges and its DNS server; the load balancer
        // (an `nft` run, and changed by every task that starts) is left to
        // `run`, which follows the same change without holding the task up.
        // Its own steps go to the same debug line as the worker's.
        let mut steps = Steps::begin();
        let view = steps.time("overlay", self.apply_overlay(false)).await?;
        steps.time("dns", self.sync_dns(&view)).await;
        let netns = self.netns_path(&task.id);
        let requests = view
            .attach_requests(task, &netns)
            .map_err(NetworkError::Plan)?;
        steps.time("netns", create_netns(&netns)).await?;
        // Attach under the apply lock, shared with other tasks' attaches: a
        // reconcile never runs halfway through one.
        let _applied = steps.time("lock", self.applied.read()).await;
        for request in &requests {
            if let Err(e) = steps.time("attach", self.overlay.attach(request)).await {
                drop(_applied);
                self.release_task(&task.id).await;
                return Err(e);
            }
        }
        steps.log(&task.id, "network path");
        let mut files = Vec::new();
        if let Some(ip) = view.nameserver(task) {
            // ndots:0: a bare service name is looked up as is, first.
            let resolv = format!("nameserver {ip}\noptions ndots:0\n");
            files.push(("/etc/resolv.conf".to_string(), resolv));
        }
        let own = requests
            .first()
            .map(|r| format!("{} {}\n", r.address, hostname_of(task)))
            .unwrap_or_default();
        let hosts = format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n{own}");
        files.push(("/etc/hosts".to_string(), hosts));
        Ok(Some(TaskNet { netns, files }))
    }

    async fn release_task(&self, task_id: &str) {
        // Removing the namespace takes its veth ends, and with them the pairs:
        // the kernel tears down namespaces in batches, where deleting each veth
        // here would wait ~20 ms for its own RCU grace period. Veths of a
        // namespace something else still holds go at the next periodic sweep.
        // An unmount: off the async threads, so many stops unmount together.
        let path = self.netns_path(task_id);
        match tokio::task::spawn_blocking(move || remove_netns(&path)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(task = task_id, %error, "removing the task's netns failed"),
            Err(error) => warn!(task = task_id, %error, "removing the task's netns failed"),
        }
    }

    /// Task ids with a namespace file in the netns dir.
    fn namespaced_tasks(&self) -> Vec<String> {
        std::fs::read_dir(&self.netns_dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Host veths whose task neither has a namespace here nor is assigned.
    async fn sweep_veths(&self, view: &View) -> Result<(), NetworkError> {
        let mut tasks = self.namespaced_tasks();
        tasks.extend(view.ports.iter().map(|(task, _)| task.clone()));
        let keep: HashSet<String> = tasks
            .iter()
            .flat_map(|task| {
                view.networks
                    .values()
                    .map(move |net| veth_names(task, net.vni).0)
            })
            .collect();
        let removed = self.overlay.remove_veths_except(&keep).await?;
        if !removed.is_empty() {
            info!(veths = %removed.join(", "), "removed veths of namespaces gone elsewhere");
        }
        Ok(())
    }

    /// Namespaces left behind by tasks this node no longer has (removed while
    /// the agent was down): `keep` says which task ids still have a container.
    pub fn sweep_netns(&self, keep: impl Fn(&str) -> bool) {
        for task in self.namespaced_tasks() {
            if !keep(&task) {
                match remove_netns(&self.netns_path(&task)) {
                    Ok(()) => info!(%task, "removed a stale task netns"),
                    Err(error) => warn!(%task, %error, "stale task netns"),
                }
            }
        }
    }
}

impl TaskNetwork for NetPlane {
    fn prepare<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<Option<TaskNet>, String>> {
        Box::pin(async move { self.prepare_task(task).await.map_err(|e| e.to_string()) })
    }

    fn release<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.release_task(task_id))
    }
}
