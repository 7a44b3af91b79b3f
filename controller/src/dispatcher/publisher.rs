//! The one task that owns the dispatcher's view of the cluster while this
//! member leads: it follows the store's watch stream, updates the published
//! assignments once per burst of changes and wakes only the sessions concerned,
//! and declares silent nodes down.

use std::time::{Duration, Instant};

use berth_proto::v1::WatchEvent;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tracing::{debug, info, trace, warn};

use super::Dispatcher;
use super::assignments::{Dirty, Published, Tracker};
use super::liveness;
use crate::store::{read_networks, read_view};

/// After the first change of a burst, wait this long for the rest of it.
const SETTLE: Duration = Duration::from_millis(5);
/// Publishes follow each other at least this far apart: a steady stream of
/// changes (a large cluster converging) goes out in one update per interval,
/// as sessions send at most one message per pace anyway. Each update is one
/// encoded change of the shared part that every session sends: one per 5 ms
/// made every agent receive each endpoint's tasks in many small changes, its
/// service id repeated in each, and woke every session for each.
const PUBLISH_INTERVAL: Duration = super::SESSION_PACE;
/// And at least this far apart per open session: each update wakes every
/// session and is a message on the stream of every node it concerns, and
/// while a cluster converges a change concerns most nodes (each gets a task,
/// or a task of a service it follows starts). So a cluster of 1,000 nodes
/// publishes at most every 300 ms, and one of up to 166 nodes every 50 ms
/// (as Istio's debounce batches its pushes to every proxy): the messages per
/// node then stay about the same as the cluster grows, where at a fixed
/// interval they grew with the time a larger cluster takes to converge (the
/// N² term of bench-scale's growth ratio). At 1,000 nodes, 100 µs a session
/// had the leader at 3.9 s of CPU; 300 µs, 2.8–3.0 s (README, runs Q).
const PUBLISH_INTERVAL_PER_SESSION: Duration = Duration::from_micros(300);
/// However many sessions, an update goes out at least this often.
const PUBLISH_INTERVAL_MAX: Duration = Duration::from_millis(500);

/// The least time between two updates with `sessions` open.
fn publish_interval(sessions: usize) -> Duration {
    let sessions = u32::try_from(sessions).unwrap_or(u32::MAX);
    PUBLISH_INTERVAL_PER_SESSION
        .saturating_mul(sessions)
        .clamp(PUBLISH_INTERVAL, PUBLISH_INTERVAL_MAX)
}
/// How often leadership and liveness are checked.
const CHECK: Duration = Duration::from_millis(250);

/// Runs forever: serves only while this member is the leader.
pub async fn run(dispatcher: Dispatcher) {
    loop {
        if !dispatcher.raft.status().get().is_leader() {
            tokio::time::sleep(CHECK).await;
            continue;
        }
        // Apply everything earlier leaders committed before serving from it.
        if let Err(err) = dispatcher.raft.read_barrier().await {
            debug!(%err, "dispatcher read barrier failed; retrying");
            tokio::time::sleep(CHECK).await;
            continue;
        }
        info!("leading: the dispatcher serves agent sessions");
        let leading_since = dispatcher.clock.instant();
        serve(&dispatcher, leading_since).await;
        // Sessions belong to a leadership: agents register with the next one.
        dispatcher.sessions().clear();
        *dispatcher.hub.write() = Published::default();
        dispatcher.hub.set_applied_everywhere(0);
        dispatcher.hub.leadership_changed();
        info!("no longer the leader: agent sessions end");
    }
}

/// Serves until leadership ends. A watch that falls behind (or breaks) is
/// followed by a fresh read of the tables.
async fn serve(dispatcher: &Dispatcher, leading_since: Instant) {
    let sm = dispatcher.raft.state();
    'rebuild: loop {
        let mut live = match sm.watch().subscribe(0) {
            Ok((_, live)) => live,
            Err(err) => {
                warn!(%err, "dispatcher cannot watch the store; retrying");
                tokio::time::sleep(CHECK).await;
                continue;
            }
        };
        let read = sm
            .revision()
            .and_then(|revision| Ok((revision, read_view(sm)?, read_networks(sm)?)));
        let (mut tracker, mut dirty) = match read {
            Ok((revision, view, networks)) => Tracker::new(revision, view, networks),
            Err(err) => {
                warn!(%err, "dispatcher cannot read the store; retrying");
                tokio::time::sleep(CHECK).await;
                continue;
            }
        };
        // What was published before a rebuild (a watch that fell behind)
        // and is gone from the store now is looked at too: it goes.
        dispatcher.hub.read().mark_all(&mut dirty);
        publish(dispatcher, &tracker, dirty);
        dispatcher.hub.leadership_changed();
        let mut check = tokio::time::interval(CHECK);
        let mut last_publish = Instant::now();
        loop {
            tokio::select! {
                received = live.recv() => {
                    let mut dirty = Dirty::default();
                    match received {
                        Ok(event) => {
                            trace_change(&event);
                            tracker.apply(&event, &mut dirty)
                        }
                        Err(RecvError::Lagged(missed)) => {
                            debug!(missed, "dispatcher fell behind the store; reading it again");
                            continue 'rebuild;
                        }
                        Err(RecvError::Closed) => continue 'rebuild,
                    }
                    // One update for the whole burst.
                    let since = last_publish.elapsed();
                    let interval = publish_interval(dispatcher.sessions().len());
                    tokio::time::sleep(SETTLE.max(interval.saturating_sub(since))).await;
                    loop {
                        match live.try_recv() {
                            Ok(event) => {
                                trace_change(&event);
                                tracker.apply(&event, &mut dirty)
                            }
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Lagged(_)) | Err(TryRecvError::Closed) => {
                                continue 'rebuild;
                            }
                        }
                    }
                    publish(dispatcher, &tracker, dirty);
                    last_publish = Instant::now();
                }
                _ = check.tick() => {
                    if !dispatcher.raft.status().get().is_leader() {
                        return;
                    }
                    declare_down(dispatcher, &tracker, leading_since);
                }
            }
        }
    }
}

fn publish(dispatcher: &Dispatcher, tracker: &Tracker, dirty: Dirty) {
    let started = Instant::now();
    let touched = (
        dirty.assigned.len(),
        dirty.services.len(),
        dirty.nodes.len(),
        dirty.networks.len(),
    );
    let wake = dispatcher.hub.write().update(tracker, dirty);
    // What keeps an idle cluster busy shows here (RUST_LOG=...publisher=debug).
    debug!(
        revision = tracker.revision,
        assigned = touched.0,
        services = touched.1,
        nodes = touched.2,
        networks = touched.3,
        woken = wake.nodes.len(),
        shared = wake.shared,
        "published"
    );
    dispatcher.hub.wake(&wake);
    // A new stop, or a node gone down, may move the drain watermark.
    dispatcher.refresh_drain();
    let seconds = started.elapsed().as_secs_f64();
    (dispatcher.raft.metrics()).loop_round(crate::metrics::LOOP_DISPATCHER, seconds, true);
}

/// Each store change the dispatcher sees, at trace level: which object
/// changed, to find what still changes in a cluster that should be idle.
fn trace_change(event: &WatchEvent) {
    use berth_proto::v1::watch_event::Object;
    let (kind, id) = match &event.object {
        Some(Object::Node(o)) => ("node", o.id.as_str()),
        Some(Object::Service(o)) => ("service", o.id.as_str()),
        Some(Object::Task(o)) => ("task", o.id.as_str()),
        Some(Object::Network(o)) => ("network", o.id.as_str()),
        Some(Object::Secret(o)) => ("secret", o.id.as_str()),
        Some(Object::Config(o)) => ("config", o.id.as_str()),
        None => ("none", ""),
    };
    trace!(
        revision = event.revision,
        action = event.action,
        kind,
        id,
        "store change"
    );
}

/// Nodes without a sign of life for the down period go DOWN; their sessions
/// end, so a node that comes back registers again and is READY through Raft.
fn declare_down(dispatcher: &Dispatcher, tracker: &Tracker, leading_since: Instant) {
    let down_after = dispatcher.settings.down_after;
    let expired = {
        let sessions = dispatcher.sessions();
        liveness::expired(
            tracker.nodes(),
            &sessions,
            leading_since,
            dispatcher.clock.instant(),
            down_after,
        )
    };
    if expired.is_empty() {
        return;
    }
    let mut ops = Vec::with_capacity(expired.len());
    for (node_id, op) in expired {
        info!(node = %node_id, "no heartbeat for {down_after:?}: node down");
        dispatcher.sessions().close(&node_id);
        dispatcher.hub.wake_node(&node_id);
        ops.push(op);
    }
    let raft = dispatcher.raft.clone();
    // The loop goes on; a refused write (the node changed) is retried next check.
    tokio::spawn(async move {
        if let Err(err) = crate::store::commit(&raft, ops).await {
            warn!(%err, "marking nodes down failed; retrying");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_further_apart_with_many_sessions() {
        assert_eq!(publish_interval(0), PUBLISH_INTERVAL);
        assert_eq!(publish_interval(100), PUBLISH_INTERVAL);
        assert_eq!(publish_interval(1_000), Duration::from_millis(300));
        assert_eq!(publish_interval(1_000_000), PUBLISH_INTERVAL_MAX);
        assert_eq!(publish_interval(usize::MAX), PUBLISH_INTERVAL_MAX);
    }
}
