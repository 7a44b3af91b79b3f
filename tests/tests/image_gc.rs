//! Image garbage collection in the running agent (#17): the agent's data dir
//! is a 128 MiB tmpfs (mounted in the agent host's own mount namespace, so
//! it goes with the host whatever happens to the test); three images of
//! ~16 MiB each run as tasks, one for good and two that end; a file then
//! fills the disk above the high mark. The agent removes the least recently
//! used image no task holds, and only that one: after it the disk is under
//! the low mark, so the other ended task's image stays, and the image of the
//! running task (the least recently started of all) is never a candidate.
//! The agent is killed (-9) and restarted before the disk fills: the order
//! is kept on disk.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_testhost::cluster::Cluster;
use berth_testhost::command::run;
use berth_testhost::images::busybox_layout;
use berth_testhost::wait_until;
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;
/// The data dir's size, and how much random data each image adds.
const DISK_MIB: u64 = 128;
const IMAGE_MIB: u64 = 8;

/// Adds tag `tag` to `layout`: `from`'s image with `IMAGE_MIB` random bytes
/// in `/data` (random, so that neither the layer nor the three images'
/// layers compress or coincide).
fn random_layer(work: &Path, layout: &Path, from: &str, tag: &str) -> Result<()> {
    let layout_s = layout.to_string_lossy().to_string();
    let bundle = work.join(format!("bundle-{tag}"));
    let bundle_s = bundle.to_string_lossy().to_string();
    run(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{layout_s}:{from}"),
            &bundle_s,
        ],
    )?;
    let mut data = vec![0u8; (IMAGE_MIB * MIB) as usize];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut data);
    std::fs::write(bundle.join("rootfs/data"), &data)?;
    run(
        "umoci",
        &["repack", "--image", &format!("{layout_s}:{tag}"), &bundle_s],
    )?;
    std::fs::remove_dir_all(&bundle)?;
    Ok(())
}

/// The names of the images on node n1.
fn images(cluster: &Cluster) -> Result<Vec<String>> {
    let out = cluster.berth(&["images", "--format", "json", "--node", "n1"])?;
    let rows: Vec<Value> = serde_json::from_str(&out).context("images JSON")?;
    Ok(rows
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect())
}

/// Whether n1 holds an image of repository `repo` (services pin their
/// image to its digest: `HOST/repo@sha256:…`).
fn has(names: &[String], repo: &str) -> bool {
    names.iter().any(|n| n.contains(&format!("/{repo}@")))
}

/// (total, available) bytes of the filesystem at `dir`, seen from the agent's host.
fn disk(cluster: &Cluster, dir: &Path) -> Result<(u64, u64)> {
    let host = cluster.c.net.host(cluster.agent_hosts[0]);
    let out = host.run("stat", &["-f", "-c", "%b %a %S", &dir.to_string_lossy()])?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let n: Vec<u64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("stat -f said {text:?}"))?;
    let [blocks, avail, size] = n[..] else {
        bail!("stat -f said {text:?}");
    };
    Ok((blocks * size, avail * size))
}

/// Runs a task of `image` and, unless `keep`, removes its service and waits
/// until n1 no longer holds the image for it.
fn run_task(cluster: &Cluster, service: &str, image: &str, keep: bool) -> Result<()> {
    cluster.create_service_from(service, image, &[], &["sleep", "3600"])?;
    cluster.wait_running(service, 1, CONVERGE)?;
    if keep {
        return Ok(());
    }
    cluster.berth(&["service", "rm", service])?;
    wait_until(&format!("{service}'s task to end"), CONVERGE, || {
        let out = cluster
            .berth(&["images", "--format", "json", "--node", "n1"])
            .ok()?;
        let rows: Vec<Value> = serde_json::from_str(&out).ok()?;
        let used = rows.iter().any(|r| {
            r["used_by"]
                .as_array()
                .is_some_and(|users| !users.is_empty())
                && r["name"].as_str().is_some_and(|n| n.contains(service))
        });
        (!used).then_some(())
    })?;
    // Last use is kept in seconds: the next task starts in a later one.
    std::thread::sleep(Duration::from_millis(1100));
    Ok(())
}

#[test]
fn image_gc_removes_the_least_recently_used_unused_image_and_keeps_those_in_use() -> Result<()> {
    let mut cluster = Cluster::start("imggc", 1, 0, 1)?;
    let work = cluster.c.net.workdir().join("gc-images");
    std::fs::create_dir_all(&work)?;
    let layout = work.join("layout");
    busybox_layout(&work, &layout, "base")?;
    let mut refs = Vec::new();
    for repo in ["gc-a", "gc-b", "gc-c"] {
        random_layer(&work, &layout, "base", repo)?;
        refs.push(
            cluster
                .registry
                .push(&cluster.c.net, &layout, repo, &format!("{repo}:1"))?,
        );
    }

    // The agent's data dir: a small tmpfs of its host's own.
    let data_dir = cluster.agent_dir(0);
    std::fs::create_dir_all(&data_dir)?;
    let size = format!("size={DISK_MIB}m");
    let dir_s = data_dir.to_string_lossy().to_string();
    let host = cluster.agent_hosts[0];
    cluster
        .c
        .net
        .host(host)
        .run("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", &dir_s])?;
    cluster.agent_args = [
        "--image-gc-high",
        "80",
        "--image-gc-low",
        "78",
        "--image-gc-interval",
        "1",
        "--image-gc-keep-recent",
        "0",
    ]
    .map(String::from)
    .to_vec();
    cluster.start_agent(0)?;
    cluster.wait_nodes_ready(1)?;

    // a runs for good (started first: the least recently started of all);
    // b then c run and end, in that order.
    run_task(&cluster, "gc-a", &refs[0], true)?;
    std::thread::sleep(Duration::from_millis(1100));
    run_task(&cluster, "gc-b", &refs[1], false)?;
    run_task(&cluster, "gc-c", &refs[2], false)?;
    let before = images(&cluster)?;
    for repo in ["gc-a", "gc-b", "gc-c"] {
        assert!(has(&before, repo), "{repo} missing before GC: {before:?}");
    }

    // The order survives a crash of the agent (it is in the image index);
    // the running task goes on.
    cluster.agent(0)?.restart()?;
    cluster.wait_nodes_ready(1)?;
    cluster.wait_running("gc-a", 1, CONVERGE)?;

    // Fill the disk to 85 %: one ~16 MiB image (12.5 %) brings it under 78 %.
    let (total, available) = disk(&cluster, &data_dir)?;
    let used = total - available;
    let target = total * 85 / 100;
    if used >= target - 2 * IMAGE_MIB * MIB {
        bail!("the images take {used} of {total} bytes already: no room for the test");
    }
    let filler = data_dir.join("filler");
    let filler_s = filler.to_string_lossy().to_string();
    cluster.c.net.host(host).run(
        "fallocate",
        &["-l", &(target - used).to_string(), &filler_s],
    )?;

    wait_until("GC to remove gc-b", CONVERGE, || {
        let names = images(&cluster).ok()?;
        (!has(&names, "gc-b")).then_some(names)
    })?;
    // The round is over once the disk is under the low mark; it stays so.
    wait_until("the disk under the low mark", CONVERGE, || {
        let (total, available) = disk(&cluster, &data_dir).ok()?;
        ((total - available) * 100 < total * 78).then_some(())
    })?;
    let after = images(&cluster)?;
    assert!(
        has(&after, "gc-a"),
        "the running task's image went: {after:?}"
    );
    assert!(
        has(&after, "gc-c"),
        "the more recently used image went too: {after:?}"
    );
    assert!(!has(&after, "gc-b"), "{after:?}");
    cluster.wait_running("gc-a", 1, CONVERGE)?;
    let tasks = cluster.ps("gc-a")?;
    assert!(
        tasks.iter().all(|t| t.error.is_empty()),
        "the running task failed: {:?}",
        tasks.iter().map(|t| &t.error).collect::<Vec<_>>()
    );

    cluster.c.net.host(host).run("rm", &["-f", &filler_s])?;
    Ok(())
}
