//! Pulls from Debian's docker-registry of images built by umoci and pushed by skopeo.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};
use berth_agent::image::{ImageStore, PullOptions};
use support::{Registry, Workdir, busybox_layout, derive_layer, layout_layers, run};

fn opts(reg: &Registry) -> PullOptions {
    PullOptions {
        insecure_registries: vec![reg.addr()],
        ..PullOptions::default()
    }
}

/// Files left in the store's scratch areas (ingest files, unfinished snapshots).
fn scratch_left(store: &ImageStore) -> Vec<String> {
    let mut left = Vec::new();
    for dir in ["ingest", "snapshots"] {
        for e in std::fs::read_dir(store.root().join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            if dir == "ingest" || name.starts_with("tmp-") {
                left.push(format!("{dir}/{name}"));
            }
        }
    }
    left
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_image_on_the_same_base_fetches_only_its_new_layer() -> Result<()> {
    let work = Workdir::new("shared_base")?;
    let layout = work.join("layout");
    busybox_layout(&work.path, &layout, "base")?;
    derive_layer(&work.path, &layout, "base", "app", |root| {
        std::fs::write(root.join("etc/app.conf"), "port=8080\n")?;
        Ok(())
    })?;
    let base_layers = layout_layers(&layout, "base")?;
    let app_layers = layout_layers(&layout, "app")?;
    assert_eq!(base_layers.len(), 1);
    assert_eq!(app_layers.len(), 2);
    assert_eq!(app_layers[0], base_layers[0], "umoci kept the base layer");

    let reg = Registry::start(&work.path, None)?;
    reg.push(&layout, "base", "busybox:base")?;
    reg.push(&layout, "app", "app:1")?;

    let store = ImageStore::open(&work.join("agent"))?;
    let base = store
        .pull(&format!("{}/busybox:base", reg.addr()), &opts(&reg))
        .await?;
    assert_eq!(reg.blob_gets(&base_layers[0]), 1);
    let app = store
        .pull(&format!("{}/app:1", reg.addr()), &opts(&reg))
        .await?;
    assert_eq!(
        reg.blob_gets(&base_layers[0]),
        1,
        "the shared base layer was downloaded again"
    );
    assert_eq!(
        reg.blob_gets(&app_layers[1]),
        1,
        "the new layer was fetched once"
    );

    // A third pull of an image already there fetches no blob at all.
    let before = reg.all_blob_gets();
    store
        .pull(&format!("{}/app:1", reg.addr()), &opts(&reg))
        .await?;
    assert_eq!(reg.all_blob_gets(), before);

    // One snapshot per layer, the base one shared; its content is busybox.
    assert_eq!(app.layers[0].chain_id, base.layers[0].chain_id);
    let base_snap = store
        .snapshot_path(&base.layers[0].chain_id)?
        .context("base snapshot")?;
    let busybox = std::fs::metadata(base_snap.join("bin/busybox"))?;
    let original = std::fs::metadata("/bin/busybox")?;
    assert_eq!(busybox.len(), original.len());
    assert_eq!(busybox.mode() & 0o7777, original.mode() & 0o7777);
    assert_eq!(
        std::fs::read_link(base_snap.join("bin/sh"))?,
        Path::new("busybox")
    );
    let app_snap = store
        .snapshot_path(&app.layers[1].chain_id)?
        .context("app snapshot")?;
    assert_eq!(
        std::fs::read_to_string(app_snap.join("etc/app.conf"))?,
        "port=8080\n"
    );
    assert!(
        !app_snap.join("bin/busybox").exists(),
        "a snapshot holds only its layer"
    );

    let config = store.image_config(&app)?;
    assert_eq!(config.argv(), vec!["sh"]);
    assert_eq!(config.diff_ids.len(), 2);
    assert!(scratch_left(&store).is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_pulls_lists_removes_and_prunes() -> Result<()> {
    let work = Workdir::new("cli")?;
    let layout = work.join("layout");
    busybox_layout(&work.path, &layout, "base")?;
    let reg = Registry::start(&work.path, None)?;
    reg.push(&layout, "base", "cli/busybox:1")?;
    let agent = env!("CARGO_BIN_EXE_berth-agent");
    let data = work.join("agent").display().to_string();
    let reference = format!("{}/cli/busybox:1", reg.addr());
    let out = run(
        agent,
        &[
            "image",
            "pull",
            "--data-dir",
            &data,
            "--insecure-registry",
            &reg.addr(),
            &reference,
        ],
    )?;
    assert!(out.starts_with(&reference), "{out}");
    let listed: serde_json::Value = serde_json::from_str(&run(
        agent,
        &["image", "ls", "--data-dir", &data, "--format", "json"],
    )?)?;
    assert_eq!(listed[0]["name"], reference.as_str());
    assert_eq!(listed[0]["layers"].as_array().map(Vec::len), Some(1));
    let table = run(agent, &["image", "ls", "--data-dir", &data])?;
    assert!(table.contains(&reference), "{table}");
    let inspected: serde_json::Value = serde_json::from_str(&run(
        agent,
        &["image", "inspect", "--data-dir", &data, &reference],
    )?)?;
    assert_eq!(inspected["config"]["cmd"][0], "sh");
    assert_eq!(inspected["image"]["name"], reference.as_str());
    let unknown = std::process::Command::new(agent)
        .args(["image", "rm", "--data-dir", &data, "nope:1"])
        .output()?;
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("no such image: docker.io/library/nope:1")
    );

    // Without --insecure-registry the pull is HTTPS and fails clearly.
    let https = std::process::Command::new(agent)
        .args(["image", "pull", "--data-dir", &data, "--quiet", &reference])
        .output()?;
    assert!(!https.status.success());
    let err = String::from_utf8_lossy(&https.stderr);
    assert!(err.contains(&reference), "{err}");

    // `rm` removes the content nothing else needs at once, as `docker rmi`
    // does (it waited for a `prune` before); a prune then finds nothing.
    let pruned = run(agent, &["image", "rm", "--data-dir", &data, &reference])?;
    assert!(pruned.contains("removed 3 blobs"), "{pruned}");
    assert!(pruned.contains("1 snapshots"), "{pruned}");
    let again = run(agent, &["image", "prune", "--data-dir", &data])?;
    assert!(again.contains("removed 0 blobs"), "{again}");
    let store = ImageStore::open(&work.join("agent"))?;
    assert!(store.list()?.is_empty());
    assert!(
        std::fs::read_dir(store.root().join("blobs/sha256"))?
            .next()
            .is_none()
    );

    // The daemon form still parses, and says what it is missing.
    let daemon = std::process::Command::new(agent)
        .args(["--data-dir", &data])
        .output()?;
    assert!(!daemon.status.success());
    assert!(String::from_utf8_lossy(&daemon.stderr).contains("--controller"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_v2_manifests_zstd_layers_and_anonymous_tokens() -> Result<()> {
    let work = Workdir::new("formats")?;
    let layout = work.join("layout");
    busybox_layout(&work.path, &layout, "base")?;
    let reg = Registry::start(&work.path, None)?;
    let src = format!("oci:{}:base", layout.display());

    // Docker schema 2 manifest with Docker media types (gzip layers).
    run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--format",
            "v2s2",
            &src,
            &format!("docker://{}/fmt/docker:1", reg.addr()),
        ],
    )?;
    // OCI manifest with a zstd layer, recompressed by skopeo into a new layout.
    let zstd_layout = work.join("zstd-layout");
    run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-compress-format",
            "zstd",
            "--dest-compress",
            &src,
            &format!("oci:{}:base", zstd_layout.display()),
        ],
    )?;
    reg.push(&zstd_layout, "base", "fmt/zstd:1")?;
    let store = ImageStore::open(&work.join("agent"))?;
    let docker = store
        .pull(&format!("{}/fmt/docker:1", reg.addr()), &opts(&reg))
        .await?;
    assert_eq!(
        docker.layers[0].media_type,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let zstd = store
        .pull(&format!("{}/fmt/zstd:1", reg.addr()), &opts(&reg))
        .await?;
    assert_eq!(
        zstd.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    // Same content, different blobs: one snapshot.
    assert_ne!(zstd.layers[0].digest, docker.layers[0].digest);
    assert_eq!(zstd.layers[0].chain_id, docker.layers[0].chain_id);
    let snap = store
        .snapshot_path(&zstd.layers[0].chain_id)?
        .context("snapshot")?;
    assert!(snap.join("bin/busybox").is_file());

    // A registry that wants a bearer token, handed out anonymously.
    let relay = support::Relay::start(reg.port)?;
    relay.require_token("tok-123");
    let store2 = ImageStore::open(&work.join("agent2"))?;
    let via = format!("{}/fmt/docker:1", relay.addr());
    let image = store2
        .pull(
            &via,
            &PullOptions {
                insecure_registries: vec![relay.addr()],
                ..PullOptions::default()
            },
        )
        .await?;
    assert_eq!(image.manifest_digest, docker.manifest_digest);
    assert!(
        relay
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_sharing_a_base_fetch_and_unpack_it_once() -> Result<()> {
    let work = Workdir::new("concurrent")?;
    let layout = work.join("layout");
    busybox_layout(&work.path, &layout, "base")?;
    for app in ["one", "two"] {
        derive_layer(&work.path, &layout, "base", app, |root| {
            std::fs::write(root.join(format!("etc/{app}")), app)?;
            Ok(())
        })?;
    }
    let base_layer = layout_layers(&layout, "base")?.remove(0);
    let reg = Registry::start(&work.path, None)?;
    reg.push(&layout, "one", "apps/one:1")?;
    reg.push(&layout, "two", "apps/two:1")?;
    let store = ImageStore::open(&work.join("agent"))?;
    let (one, two) = (
        format!("{}/apps/one:1", reg.addr()),
        format!("{}/apps/two:1", reg.addr()),
    );
    let o = opts(&reg);
    let (a, b) = tokio::join!(store.get_or_pull(&one, &o), store.get_or_pull(&two, &o));
    let (a, b) = (a?, b?);
    assert_eq!(a.layers[0].chain_id, b.layers[0].chain_id);
    assert_eq!(
        reg.blob_gets(&base_layer),
        1,
        "the shared base was fetched twice"
    );
    let snapshots = std::fs::read_dir(store.root().join("snapshots"))?.count();
    assert_eq!(snapshots, 3, "base unpacked once, plus one layer per app");
    // Present now: get_or_pull asks the registry nothing.
    let before = reg.all_blob_gets();
    assert_eq!(store.get_or_pull(&one, &o).await?, a);
    assert_eq!(reg.all_blob_gets(), before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn https_uses_the_system_roots_and_plain_http_only_when_named() -> Result<()> {
    let work = Workdir::new("https")?;
    let layout = work.join("layout");
    busybox_layout(&work.path, &layout, "base")?;
    let (ca, cert, key) = support::test_certificates(&work.path)?;
    let reg = Registry::start_tls(&work.path, &cert, &key)?;
    reg.push(&layout, "base", "tls/busybox:1")?;
    let reference = format!("{}/tls/busybox:1", reg.addr());
    let agent = env!("CARGO_BIN_EXE_berth-agent");
    let pull = |data: &str, ca: Option<&Path>, insecure: bool| {
        let mut cmd = std::process::Command::new(agent);
        cmd.args(["image", "pull", "--quiet", "--data-dir", data]);
        if insecure {
            cmd.args(["--insecure-registry", &reg.addr()]);
        }
        cmd.arg(&reference);
        // The system roots as rustls-native-certs reads them: here, the test CA.
        match ca {
            Some(ca) => cmd.env("SSL_CERT_FILE", ca),
            None => cmd.env("SSL_CERT_FILE", "/nonexistent"),
        };
        cmd.output()
    };
    let data = work.join("agent").display().to_string();

    let untrusted = pull(&data, None, false)?;
    assert!(
        !untrusted.status.success(),
        "an untrusted certificate was accepted"
    );
    let err = String::from_utf8_lossy(&untrusted.stderr);
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // Named insecure, berth speaks plain HTTP, which this registry refuses.
    let plain = pull(&data, Some(&ca), true)?;
    assert!(
        !plain.status.success(),
        "plain HTTP reached an HTTPS-only registry"
    );

    let ok = pull(&data, Some(&ca), false)?;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with(&reference));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn layers_download_in_parallel() -> Result<()> {
    let work = Workdir::new("parallel")?;
    let layout = work.join("layout");
    busybox_layout(&work.path, &layout, "base")?;
    derive_layer(&work.path, &layout, "base", "two", |root| {
        std::fs::write(root.join("etc/two"), "2")?;
        Ok(())
    })?;
    derive_layer(&work.path, &layout, "two", "three", |root| {
        std::fs::write(root.join("etc/three"), "3")?;
        Ok(())
    })?;
    let layers = layout_layers(&layout, "three")?;
    assert_eq!(layers.len(), 3);
    let reg = Registry::start(&work.path, None)?;
    reg.push(&layout, "three", "par/img:1")?;
    let relay = support::Relay::start(reg.port)?;
    // Layer GETs are held until three are in flight together: a client that
    // fetched one layer after the other would never get there.
    relay.gate.hold_until(3, &layers);
    let store = ImageStore::open(&work.join("agent"))?;
    let image = store
        .pull(
            &format!("{}/par/img:1", relay.addr()),
            &PullOptions {
                insecure_registries: vec![relay.addr()],
                max_concurrent_downloads: 3,
                ..PullOptions::default()
            },
        )
        .await?;
    assert_eq!(image.layers.len(), 3);
    assert_eq!(
        relay.gate.max_in_flight(),
        3,
        "layers were not fetched in parallel"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_reference_pulls_exactly_the_digest_the_controller_resolved() -> Result<()> {
    use berth_registry::{Digest, ResolveError, ResolveOptions, pinned, resolve_digest};
    let work = Workdir::new("pinned")?;
    let layout = work.join("layout");
    busybox_layout(&work.path, &layout, "base")?;
    derive_layer(&work.path, &layout, "base", "next", |root| {
        std::fs::write(root.join("etc/next"), "2\n")?;
        Ok(())
    })?;
    let reg = Registry::start(&work.path, None)?;
    reg.push(&layout, "base", "web:1")?;
    let tag = format!("{}/web:1", reg.addr());
    let resolve = ResolveOptions {
        insecure_registries: vec![reg.addr()],
        timeout: std::time::Duration::from_secs(3),
        credentials: None,
    };
    let first = resolve_digest(&tag, &resolve).await?;

    // Not named insecure: the lookup says what to do about it.
    let https = ResolveOptions {
        insecure_registries: Vec::new(),
        ..resolve.clone()
    };
    let err = resolve_digest(&tag, &https).await.unwrap_err();
    assert!(
        matches!(err, ResolveError::NotHttps { .. })
            && err
                .to_string()
                .contains(&format!("--insecure-registry {}", reg.addr())),
        "{err}"
    );

    // The tag moves; the pinned name still gets what it named.
    reg.push(&layout, "next", "web:1")?;
    let second = resolve_digest(&tag, &resolve).await?;
    assert_ne!(first, second);
    let store = ImageStore::open(&work.join("agent"))?;
    let old = store.pull(&pinned(&tag, &first)?, &opts(&reg)).await?;
    assert_eq!(old.name, format!("{}/web@{first}", reg.addr()));
    assert_eq!(old.manifest_digest, first);
    assert_eq!(old.layers.len(), 1);
    let new = store.pull(&pinned(&tag, &second)?, &opts(&reg)).await?;
    assert_eq!(new.manifest_digest, second);
    assert_eq!(new.layers.len(), 2);

    // Both are named images: listed, found by name, kept by prune.
    let names: std::collections::BTreeSet<String> =
        store.list()?.into_iter().map(|i| i.name).collect();
    assert_eq!(names, [old.name.clone(), new.name.clone()].into());
    store.prune().await?;
    assert_eq!(store.get(&old.name)?.manifest_digest, first);
    assert!(store.image_config(&store.get(&new.name)?).is_ok());

    // A digest the registry does not have is an error, and names nothing.
    let missing = pinned(&tag, &Digest::of(b"no such manifest"))?;
    let err = store.pull(&missing, &opts(&reg)).await.unwrap_err();
    assert!(err.to_string().contains(&missing), "{err}");
    assert!(store.get(&missing).is_err());
    Ok(())
}
