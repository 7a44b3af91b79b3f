//! Benchmark (not a test): pull and unpack a multi-layer image from a local
//! docker-registry with `berth-agent image pull`, against `skopeo copy` +
//! `umoci unpack` in the same run. Prints the medians and their ratio.
//!
//! `cargo bench -p berth-agent --bench pull_unpack` (root; needs docker-registry,
//! skopeo, umoci, busybox-static). `BENCH_ROUNDS` sets the rounds (default 5).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use support::{Registry, Workdir, busybox_layout, derive_layer, run};

/// Adds a layer of `files` small files and one large file of `big` bytes.
fn content_layer(root: &Path, layer: usize, files: usize, big: usize) -> Result<()> {
    let dir = root.join(format!("srv/layer{layer}"));
    std::fs::create_dir_all(&dir)?;
    // Deterministic, partly compressible data.
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ layer as u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..files {
        let sub = dir.join(format!("d{}", i % 32));
        std::fs::create_dir_all(&sub)?;
        let len = 512 + (next() % 8192) as usize;
        let data: Vec<u8> = (0..len)
            .map(|j| {
                if j % 3 == 0 {
                    (next() & 0xff) as u8
                } else {
                    b'a' + (j % 26) as u8
                }
            })
            .collect();
        std::fs::write(sub.join(format!("f{i}.txt")), data)?;
    }
    let data: Vec<u8> = (0..big)
        .map(|j| if j % 2 == 0 { (next() & 0xff) as u8 } else { 0 })
        .collect();
    std::fs::write(dir.join("blob.bin"), data)?;
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let work = Workdir::new("bench-pull")?;
    let layout = work.join("layout");
    busybox_layout(&work.path, &layout, "l0")?;
    let layers = 5;
    for l in 1..layers {
        derive_layer(
            &work.path,
            &layout,
            &format!("l{}", l - 1),
            &format!("l{l}"),
            |root| content_layer(root, l, 3000, 16 << 20),
        )?;
    }
    let tag = format!("l{}", layers - 1);
    let reg = Registry::start(&work.path, None)?;
    reg.push(&layout, &tag, "bench/image:1")?;
    let reference = format!("{}/bench/image:1", reg.addr());
    let agent = env!("CARGO_BIN_EXE_berth-agent");
    let size: u64 = std::fs::read_dir(layout.join("blobs/sha256"))?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!("image: {layers} layers, layout blobs {} MiB", size >> 20);

    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let data = work.join(format!("berth-{round}"));
        let t = Instant::now();
        // BERTH_LOG=info shows what each layer took.
        let status = std::process::Command::new(agent)
            .args(["image", "pull", "--quiet", "--data-dir"])
            .arg(&data)
            .args(["--insecure-registry", &reg.addr(), &reference])
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "berth-agent image pull failed");
        ours.push(t.elapsed());
        std::fs::remove_dir_all(&data)?;

        let oci = work.join(format!("skopeo-{round}"));
        let bundle = work.join(format!("bundle-{round}"));
        let t = Instant::now();
        run(
            "skopeo",
            &[
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                &format!("docker://{reference}"),
                &format!("oci:{}:1", oci.display()),
            ],
        )?;
        run(
            "umoci",
            &[
                "unpack",
                "--image",
                &format!("{}:1", oci.display()),
                &bundle.display().to_string(),
            ],
        )?;
        peer.push(t.elapsed());
        std::fs::remove_dir_all(&oci)?;
        std::fs::remove_dir_all(&bundle)?;
        println!(
            "round {round}: berth {:?}, skopeo+umoci {:?}",
            ours[round], peer[round]
        );
    }
    let (a, b) = (median(ours), median(peer));
    println!("median berth-agent image pull: {a:?}");
    println!("median skopeo copy + umoci unpack: {b:?}");
    println!(
        "ratio berth / (skopeo+umoci): {:.3} (target <= 1.0)",
        a.as_secs_f64() / b.as_secs_f64()
    );
    Ok(())
}
