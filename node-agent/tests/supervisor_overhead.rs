//! Per-container overhead: each running container has exactly one process of
//! berth's own outside it (its shim, `berth-shim`, the parent of the
//! container's init; berth-runtime forks no monitor for it), and, with
//! berth-runtime, berth's minimal init as the container's PID 1 (`berth-init
//! -- PROGRAM ...`, a static executable of a few KB exec'd from a memfd); both
//! stay small. The bounds are sizes, with headroom over what a debug build
//! measures here: the shim's VmRSS ~2.8 MiB, most of it libc and binary pages
//! shared with every other process (PSS ~0.35 MiB), and ~0.3 MiB private to
//! the shim; berth-init ~16 KiB. (Before: the agent's binary as shim, 17 MiB
//! RSS, plus berth-runtime's monitor, 4 MiB; then a fork of berth-runtime as
//! init, 2.6 MiB.)

#[path = "support/supervisor.rs"]
mod fixture;
mod support;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use berth_proto::v1::TaskState;
use fixture::{Env, Rt, Seen, in_private_mounts, is};

const T: Duration = Duration::from_secs(60);
const CONTAINERS: usize = 8;
/// VmRSS bound for a container's shim (debug build; a release build is smaller).
const MAX_SHIM_RSS_KIB: u64 = 3584;
/// Bound for the shim's private memory (pages no other process shares).
const MAX_SHIM_PRIVATE_KIB: u64 = 1024;
/// VmRSS bound for berth-init, the container's PID 1 with berth-runtime.
const MAX_INIT_RSS_KIB: u64 = 128;

/// A field of `/proc/PID/FILE` in KiB (`VmRSS:`, `Pss:`).
fn kib(pid: i32, file: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis: state, then the parent pid.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn pid_ns(pid: i32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// The processes outside the container whose command line names it
/// (its shim, a runtime monitor).
fn outside_processes(id: &str, init: i32) -> Vec<i32> {
    let ns = pid_ns(init);
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let names_it = cmdline.split(|b| *b == 0).any(|arg| arg == id.as_bytes());
        if names_it && pid_ns(pid) != ns {
            found.push(pid);
        }
    }
    found
}

fn one_small_process_per_container(rt: Rt, name: &str) -> Result<()> {
    let env = std::sync::Arc::new(Env::new(name, rt)?);
    let e = env.clone();
    in_private_mounts(move || async move {
        let (sup, rx) = e.open().await?;
        let mut rx = Seen::new(rx);
        let tasks: Vec<_> = (0..CONTAINERS)
            .map(|i| e.task(&format!("c{i}"), "sleep 3600"))
            .collect();
        sup.reconcile(tasks.clone());
        for t in &tasks {
            rx.until(&t.id, T, is(TaskState::Running)).await?;
        }
        let (mut rss_sum, mut pss_sum) = (0, 0);
        for t in &tasks {
            let state = e.runtime_state(&t.id).context("runtime state")?;
            let init = state["pid"].as_i64().context("init pid")? as i32;
            let outside = outside_processes(&t.id, init);
            ensure!(
                outside.len() == 1,
                "container {}: {} processes of berth's besides its own: {outside:?}",
                t.id,
                outside.len()
            );
            let shim = outside[0];
            let cmd = std::fs::read_to_string(format!("/proc/{shim}/cmdline"))?;
            ensure!(
                cmd.split('\0')
                    .next()
                    .is_some_and(|p| p.ends_with("/berth-shim")),
                "container {}: its process is not berth-shim: {cmd:?}",
                t.id
            );
            ensure!(
                parent(init) == Some(shim),
                "container {}: init {init}'s parent is {:?}, not the shim {shim}",
                t.id,
                parent(init)
            );
            let rss = kib(shim, "status", "VmRSS:").context("shim VmRSS")?;
            let pss = kib(shim, "smaps_rollup", "Pss:").context("shim PSS")?;
            let private = kib(shim, "smaps_rollup", "Private_Clean:").unwrap_or(0)
                + kib(shim, "smaps_rollup", "Private_Dirty:").unwrap_or(0);
            println!(
                "{}: shim {shim} VmRSS {rss} KiB, PSS {pss} KiB, private {private} KiB",
                t.id
            );
            ensure!(
                rss <= MAX_SHIM_RSS_KIB,
                "container {}: its shim holds {rss} KiB resident (bound {MAX_SHIM_RSS_KIB} KiB)",
                t.id
            );
            ensure!(
                private <= MAX_SHIM_PRIVATE_KIB,
                "container {}: its shim holds {private} KiB of its own (bound {MAX_SHIM_PRIVATE_KIB} KiB)",
                t.id
            );
            rss_sum += rss;
            pss_sum += pss;
            if rt != Rt::Berth {
                // runc has no minimal init: PID 1 is the task's command.
                continue;
            }
            let cmd = std::fs::read(format!("/proc/{init}/cmdline"))?;
            ensure!(
                cmd.starts_with(b"berth-init\0--\0"),
                "container {}: its init is not berth-init: {:?}",
                t.id,
                String::from_utf8_lossy(&cmd)
            );
            let rss = kib(init, "status", "VmRSS:").context("init VmRSS")?;
            let pss = kib(init, "smaps_rollup", "Pss:").context("init PSS")?;
            println!("{}: init {init} VmRSS {rss} KiB, PSS {pss} KiB", t.id);
            ensure!(
                rss <= MAX_INIT_RSS_KIB,
                "container {}: its init holds {rss} KiB resident (bound {MAX_INIT_RSS_KIB} KiB)",
                t.id
            );
            rss_sum += rss;
            pss_sum += pss;
        }
        println!(
            "{CONTAINERS} containers: {} KiB RSS, {} KiB PSS per container in berth's processes",
            rss_sum / CONTAINERS as u64,
            pss_sum / CONTAINERS as u64
        );
        sup.reconcile(Vec::new());
        for t in &tasks {
            rx.until_end(&t.id, T).await?;
        }
        anyhow::Ok(())
    })
}

#[test]
fn each_container_has_one_small_process_with_berth_runtime() -> Result<()> {
    one_small_process_per_container(Rt::Berth, "overhead_b")
}

#[test]
fn each_container_has_one_small_process_with_runc() -> Result<()> {
    one_small_process_per_container(Rt::Runc, "overhead_r")
}
