//! `berth events` and the task history limit with real processes: a live
//! stream shows a service created, its tasks running, a node going down and
//! a rollout; `--since` replays them; a crash-looping task's slot keeps at
//! most the limit of ended tasks, and the removed tasks' logs go with them.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use berth_testhost::bin_path;
use berth_testhost::cluster::Cluster;
use berth_testhost::wait_until;
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(60);

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The JSON events among `text`'s lines (stderr's warnings are not JSON).
fn events_in(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn has(events: &[Value], kind: &str, action: &str, name_prefix: &str) -> bool {
    events.iter().any(|e| {
        e["type"] == kind
            && e["action"] == action
            && e["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(name_prefix))
    })
}

/// What the test waits for in the stream, all of it.
fn story_told(events: &[Value]) -> bool {
    has(events, "service", "create", "web")
        && has(events, "task", "running", "web.")
        && has(events, "node", "down", "n2")
        && has(events, "service", "update", "web")
        && has(events, "rollout", "start", "web")
        && has(events, "rollout", "complete", "web")
}

#[test]
fn events_tell_services_tasks_nodes_and_rollouts_live_and_replayed() -> Result<()> {
    let mut cluster = Cluster::start("events", 1, 2, 0)?;
    // Replays from here on; the live stream starts with --since too, so
    // nothing is lost before it connects.
    let since = (unix_seconds() - 1).to_string();
    let client = cluster.c.client_host();
    let admin = cluster.c.admin_dir().to_string_lossy().to_string();
    let address = cluster.c.address(0);
    let live_args = [
        "--controller",
        address.as_str(),
        "--tls-dir",
        admin.as_str(),
        "events",
        "--format",
        "json",
        "--since",
        since.as_str(),
    ];
    cluster
        .c
        .net
        .host_mut(client)
        .spawn("events", bin_path("berth"), &live_args)?;

    cluster.create_service("web", &["--replicas", "2"], &["sleep", "3600"])?;
    cluster.wait_running("web", 2, CONVERGE)?;
    // n2's agent dies: the node goes down after --node-down-after (4 s).
    cluster.agent(1)?.kill9()?;
    wait_until("n2 down", CONVERGE, || {
        let nodes = cluster.nodes().ok()?;
        nodes
            .iter()
            .any(|n| n["name"] == "n2" && n["status"] == "down")
            .then_some(())
    })?;
    // A rollout: a changed environment replaces the tasks (waits for it).
    cluster.berth(&["service", "update", "web", "--env-add", "COLOR=blue"])?;

    let live = cluster.c.net.host_mut(client).proc("events")?;
    let told = wait_until("the live stream to tell it all", CONVERGE, || {
        let events = events_in(&live.log());
        story_told(&events).then_some(events)
    })?;
    // A task event carries its service and node; a failed one its message.
    let running = told
        .iter()
        .find(|e| e["type"] == "task" && e["action"] == "running")
        .context("a running task event")?;
    assert_eq!(running["attributes"]["service"], "web", "{running}");
    assert!(running["attributes"]["node"].is_string(), "{running}");
    assert!(running["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    // Events come in the order they were committed.
    let revisions: Vec<u64> = told.iter().filter_map(|e| e["revision"].as_u64()).collect();
    assert!(revisions.windows(2).all(|w| w[0] <= w[1]), "{revisions:?}");
    live.terminate(Duration::from_secs(5))?;

    // --since replays what the store holds; --until ends the stream.
    let until = (unix_seconds() + 1).to_string();
    let replay = |filters: &[&str]| -> Result<Vec<Value>> {
        let mut args = vec![
            "events", "--format", "json", "--since", &since, "--until", &until,
        ];
        for f in filters {
            args.extend(["--filter", *f]);
        }
        Ok(events_in(&cluster.berth(&args)?))
    };
    let replayed = replay(&[])?;
    assert!(story_told(&replayed), "{replayed:#?}");

    // Filters: one type; one service's tasks.
    let nodes_only = replay(&["type=node"])?;
    assert!(has(&nodes_only, "node", "down", "n2"));
    assert!(
        nodes_only.iter().all(|e| e["type"] == "node"),
        "{nodes_only:#?}"
    );
    let web_tasks = replay(&["type=task", "service=web"])?;
    assert!(has(&web_tasks, "task", "running", "web."));
    assert!(
        web_tasks
            .iter()
            .all(|e| e["type"] == "task" && e["attributes"]["service"] == "web"),
        "{web_tasks:#?}"
    );

    // Text: one line per event, like docker events.
    let text = cluster.berth(&["events", "--since", &since, "--until", &until])?;
    assert!(
        text.lines()
            .any(|l| l.contains(" service create ") && l.contains("(name=web")),
        "{text}"
    );
    // A bad filter is refused with what was wrong.
    let err = cluster
        .berth(&["events", "--filter", "type=container"])
        .expect_err("an unknown type is refused")
        .to_string();
    assert!(err.contains("type=\"container\""), "{err}");
    Ok(())
}

#[test]
fn a_crash_looping_slot_keeps_its_history_limit_and_removed_tasks_lose_their_logs() -> Result<()> {
    const LIMIT: usize = 2;
    let cluster = Cluster::start("task_history", 1, 1, 0)?;
    let out = cluster.berth(&["cluster", "update", "--task-history-limit", "2"])?;
    assert!(out.contains("task history limit: 2"), "{out}");
    let shown = cluster.berth(&["cluster", "settings", "--format", "json"])?;
    assert!(shown.contains("\"task_history_limit\": 2"), "{shown}");

    cluster.create_service(
        "crash",
        &["--restart-condition", "any", "--restart-delay", "200ms"],
        &["sh", "-c", "echo crashing; exit 1"],
    )?;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    // Until more than LIMIT + 1 tasks were created for the slot, its ended
    // tasks never exceed the limit.
    wait_until(
        "the slot to crash and be replaced 5 times",
        CONVERGE,
        || {
            let rows = cluster.ps("crash").ok()?;
            seen.extend(rows.iter().map(|t| t.id.clone()));
            let ended = rows
                .iter()
                .filter(|t| {
                    ["failed", "complete", "shutdown", "rejected"].contains(&t.state.as_str())
                })
                .count();
            // The slot's occupant (desired running) may have ended and wait
            // for its restart delay: it is not history yet.
            let waiting = rows
                .iter()
                .filter(|t| t.desired_state == "running" && t.state == "failed")
                .count();
            let history = ended - waiting;
            assert!(history <= LIMIT, "{history} ended tasks kept: {rows:#?}");
            (seen.len() > LIMIT + 3).then_some(())
        },
    )?;

    // Stop the loop; what stays is at most the limit, and every removed
    // task's log directory is gone from the agent.
    cluster.berth(&["service", "scale", "crash=0"])?;
    let logs = cluster.agent_dir(0).join("logs");
    let (kept, removed) = wait_until("removed tasks' logs gone", CONVERGE, || {
        let rows = cluster.ps("crash").ok()?;
        let kept: BTreeSet<String> = rows.iter().map(|t| t.id.clone()).collect();
        let removed: Vec<&String> = seen.iter().filter(|id| !kept.contains(*id)).collect();
        let settled = rows.len() <= LIMIT
            && rows.iter().all(|t| t.desired_state != "running")
            && removed.iter().all(|id| !logs.join(id).exists());
        settled.then(|| (kept.clone(), removed.len()))
    })?;
    assert!(removed >= 3, "{removed} tasks removed of {seen:?}");
    // The kept ones still have theirs.
    for id in &kept {
        assert!(
            logs.join(id).exists(),
            "task {id} is kept but its logs are gone"
        );
    }
    Ok(())
}
