//! Bad input from registries and layers: a clear error, nothing half-written in
//! the store, and a later retry works.

mod support;

use std::path::Path;

use anyhow::Result;
use berth_agent::image::{ImageStore, PullOptions};
use support::{
    Fault, Registry, Relay, Workdir, busybox_layout, layout_layers, layout_manifest, put_manifest,
    run,
};

fn opts(addr: &str) -> PullOptions {
    PullOptions {
        insecure_registries: vec![addr.to_string()],
        ..PullOptions::default()
    }
}

/// Nothing half-written: no ingest file, no unfinished snapshot, no name.
fn assert_clean(store: &ImageStore) {
    let ingest: Vec<_> = std::fs::read_dir(store.root().join("ingest"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(ingest.is_empty(), "ingest files left: {ingest:?}");
    let tmp: Vec<_> = std::fs::read_dir(store.root().join("snapshots"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with("tmp-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(tmp.is_empty(), "unfinished snapshots left: {tmp:?}");
    assert!(
        store.list().unwrap_or_default().is_empty(),
        "a failed pull named an image"
    );
}

/// Pulls `reference` expecting a failure; returns the message.
async fn pull_err(store: &ImageStore, reference: &str, registry: &str, why: &str) -> String {
    match store.pull(reference, &opts(registry)).await {
        Ok(image) => panic!("{why}: {reference} pulled as {}", image.manifest_digest),
        Err(e) => e.to_string(),
    }
}

/// Every blob in the store is intact (its name is its digest).
fn assert_blobs_verified(store: &ImageStore) -> Result<()> {
    for e in std::fs::read_dir(store.root().join("blobs/sha256"))?.flatten() {
        let data = std::fs::read(e.path())?;
        let digest = berth_agent::image::Digest::of(&data);
        assert_eq!(
            digest.hex(),
            e.file_name().to_string_lossy(),
            "a corrupt blob was kept"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_errors_truncation_and_corruption_leave_nothing_and_a_retry_works() -> Result<()> {
    let work = Workdir::new("faults")?;
    let layout = work.join("layout");
    busybox_layout(&work.path, &layout, "base")?;
    let layer = layout_layers(&layout, "base")?.remove(0);
    let reg = Registry::start(&work.path, None)?;
    reg.push(&layout, "base", "faulty/busybox:1")?;
    let relay = Relay::start(reg.port)?;
    let reference = format!("{}/faulty/busybox:1", relay.addr());
    let store = ImageStore::open(&work.join("agent"))?;

    let missing = pull_err(
        &store,
        &format!("{}/faulty/busybox:nope", relay.addr()),
        &relay.addr(),
        "an unknown tag pulled",
    )
    .await;
    let msg = missing.to_string();
    assert!(
        msg.contains("faulty/busybox:nope") && msg.contains("manifest"),
        "{msg}"
    );
    assert!(
        msg.to_lowercase().contains("unknown") || msg.contains("404"),
        "{msg}"
    );

    let cases = [
        (Fault::Status(500), "500"),
        (Fault::Status(404), "404"),
        (Fault::Truncate, "layer"),
        (Fault::Corrupt, "sha256"),
    ];
    for (fault, expect) in cases {
        relay.set(vec![(format!("/blobs/{layer}"), fault.clone())]);
        let err = pull_err(&store, &reference, &relay.addr(), "a broken layer pulled").await;
        let msg = err.to_string();
        assert!(msg.contains(&reference), "{fault:?}: {msg}");
        assert!(msg.contains(expect), "{fault:?}: {msg}");
        assert_clean(&store);
        assert_blobs_verified(&store)?;
        assert!(
            !store
                .root()
                .join("blobs/sha256")
                .join(layer.trim_start_matches("sha256:"))
                .exists()
        );
    }
    // A 500 on the manifest too.
    relay.set(vec![("/manifests/".to_string(), Fault::Status(500))]);
    let err = pull_err(&store, &reference, &relay.addr(), "500 pulled").await;
    assert!(err.to_string().contains("500"), "{err}");
    assert_clean(&store);

    relay.set(Vec::new());
    let image = store.pull(&reference, &opts(&relay.addr())).await?;
    assert_eq!(image.layers.len(), 1);
    assert_blobs_verified(&store)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_needs_the_credentials_file() -> Result<()> {
    let work = Workdir::new("auth")?;
    let layout = work.join("layout");
    busybox_layout(&work.path, &layout, "base")?;
    let htpasswd = work.join("htpasswd");
    std::fs::write(&htpasswd, format!("alice:{}\n", bcrypt::hash("s3cret", 4)?))?;
    let reg = Registry::start(&work.path, Some(&htpasswd))?;
    let creds = work.join("auth.json");
    std::fs::write(
        &creds,
        format!(
            r#"{{"auths":{{"{}":{{"username":"alice","password":"s3cret"}}}}}}"#,
            reg.addr()
        ),
    )?;
    let src = format!("oci:{}:base", layout.display());
    let dst = format!("docker://{}/private/busybox:1", reg.addr());
    run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:s3cret",
            &src,
            &dst,
        ],
    )?;
    let reference = format!("{}/private/busybox:1", reg.addr());
    let store = ImageStore::open(&work.join("agent"))?;

    let err = pull_err(
        &store,
        &reference,
        &reg.addr(),
        "pulled without credentials",
    )
    .await;
    let msg = err.to_string();
    assert!(msg.contains(&reference), "{msg}");
    assert!(
        msg.contains("401") || msg.to_lowercase().contains("auth"),
        "{msg}"
    );
    assert_clean(&store);

    let wrong = work.join("wrong.json");
    std::fs::write(
        &wrong,
        format!(
            r#"{{"auths":{{"{}":{{"username":"alice","password":"nope"}}}}}}"#,
            reg.addr()
        ),
    )?;
    let mut o = opts(&reg.addr());
    o.credentials_file = Some(wrong);
    assert!(
        store.pull(&reference, &o).await.is_err(),
        "a wrong password pulled"
    );
    assert_clean(&store);

    o.credentials_file = Some(creds);
    let image = store.pull(&reference, &o).await?;
    assert_eq!(image.name, reference);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn other_platforms_and_unknown_media_types_are_refused() -> Result<()> {
    let work = Workdir::new("platform")?;
    let layout = work.join("layout");
    busybox_layout(&work.path, &layout, "base")?;
    let reg = Registry::start(&work.path, None)?;
    reg.push(&layout, "base", "plat/busybox:1")?;
    let (digest, manifest) = layout_manifest(&layout, "base")?;

    // An index that has only an arm64 and an s390x manifest.
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
             "size": manifest.len(), "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
             "size": manifest.len(), "platform": {"os": "linux", "architecture": "s390x"}},
        ]
    });
    let status = put_manifest(
        reg.port,
        "plat/busybox:foreign",
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&index)?,
    )?;
    assert_eq!(status, 201, "the registry took the index");
    let store = ImageStore::open(&work.join("agent"))?;
    let reference = format!("{}/plat/busybox:foreign", reg.addr());
    let err = pull_err(&store, &reference, &reg.addr(), "a foreign platform pulled").await;
    let msg = err.to_string();
    assert!(msg.contains("no manifest for platform linux/"), "{msg}");
    assert!(msg.contains("linux/arm64, linux/s390x"), "{msg}");
    assert_eq!(
        reg.all_blob_gets(),
        0,
        "layers of a foreign image were fetched"
    );
    assert_clean(&store);

    // The same image with its own platform in the index resolves.
    let (os, arch) = (
        std::env::consts::OS,
        if cfg!(target_arch = "x86_64") {
            "amd64"
        } else {
            "arm64"
        },
    );
    let mut native = index.clone();
    native["manifests"][1]["platform"] = serde_json::json!({"os": os, "architecture": arch});
    put_manifest(
        reg.port,
        "plat/busybox:multi",
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&native)?,
    )?;
    let image = store
        .pull(
            &format!("{}/plat/busybox:multi", reg.addr()),
            &opts(&reg.addr()),
        )
        .await?;
    assert_eq!(image.manifest_digest.as_str(), digest);
    assert!(image.index_digest.is_some());

    // A real s390x image (its config says so), alone and in an index.
    let image_ref = format!("{}:base", layout.display());
    run("umoci", &["tag", "--image", &image_ref, "s390x"])?;
    let s390x_ref = format!("{}:s390x", layout.display());
    run(
        "umoci",
        &["config", "--image", &s390x_ref, "--architecture", "s390x"],
    )?;
    reg.push(&layout, "s390x", "plat/busybox:s390x")?;
    let (s390x_digest, s390x_manifest) = layout_manifest(&layout, "s390x")?;
    let single = format!("{}/plat/busybox:s390x", reg.addr());
    let err = pull_err(&store, &single, &reg.addr(), "an s390x image pulled").await;
    assert!(err.contains("(the image has: linux/s390x)"), "{err}");
    let only_s390x = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": s390x_digest,
             "size": s390x_manifest.len(), "platform": {"os": "linux", "architecture": "s390x"}},
        ]
    });
    put_manifest(
        reg.port,
        "plat/busybox:only-s390x",
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&only_s390x)?,
    )?;
    let indexed = format!("{}/plat/busybox:only-s390x", reg.addr());
    let err = pull_err(&store, &indexed, &reg.addr(), "an s390x-only index pulled").await;
    assert!(err.contains("(the image has: linux/s390x)"), "{err}");
    // Asked for, it pulls: through the CLI's --platform.
    let data = work.join("agent-cli").display().to_string();
    let agent = env!("CARGO_BIN_EXE_berth-agent");
    let out = run(
        agent,
        &[
            "image",
            "pull",
            "--quiet",
            "--data-dir",
            &data,
            "--insecure-registry",
            &reg.addr(),
            "--platform",
            "linux/s390x",
            &indexed,
        ],
    )?;
    assert!(out.contains(&s390x_digest), "{out}");

    // A manifest whose layer has a media type nobody knows.
    let mut weird: serde_json::Value = serde_json::from_slice(&manifest)?;
    weird["layers"][0]["mediaType"] = "application/vnd.example.weird".into();
    let status = put_manifest(
        reg.port,
        "plat/busybox:weird",
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&weird)?,
    )?;
    assert_eq!(status, 201);
    let store2 = ImageStore::open(&work.join("agent2"))?;
    let err = pull_err(
        &store2,
        &format!("{}/plat/busybox:weird", reg.addr()),
        &reg.addr(),
        "an unknown media type pulled",
    )
    .await;
    assert!(
        err.to_string()
            .contains("unknown media type \"application/vnd.example.weird\""),
        "{err}"
    );
    assert_clean(&store2);
    Ok(())
}

/// A tar whose entries try to write outside the snapshot.
fn hostile_layer(path: &Path, outside: &Path, variant: usize) -> Result<()> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add =
        |kind: tar::EntryType, name: &str, link: Option<&str>, data: &[u8]| -> Result<()> {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            let raw = name.as_bytes();
            h.as_old_mut().name[..raw.len()].copy_from_slice(raw);
            if let Some(l) = link {
                let raw = l.as_bytes();
                h.as_old_mut().linkname[..raw.len()].copy_from_slice(raw);
            }
            h.set_cksum();
            b.append(&h, data)?;
            Ok(())
        };
    let target = outside.join("escaped").display().to_string();
    let up = format!("../../../../../../../../..{target}");
    match variant {
        0 => add(tar::EntryType::Regular, &up, None, b"owned")?,
        1 => add(tar::EntryType::Regular, &target, None, b"owned")?,
        2 => {
            add(
                tar::EntryType::Symlink,
                "sneaky",
                Some(&outside.display().to_string()),
                b"",
            )?;
            add(tar::EntryType::Regular, "sneaky/escaped", None, b"owned")?;
        }
        _ => {
            add(
                tar::EntryType::Symlink,
                "sneaky",
                Some(&outside.display().to_string()),
                b"",
            )?;
            add(tar::EntryType::Link, "hard", Some("sneaky/victim"), b"")?;
        }
    }
    std::fs::write(path, b.into_inner()?)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malicious_layer_is_refused_and_writes_nothing_outside() -> Result<()> {
    let work = Workdir::new("malicious")?;
    let layout = work.join("layout");
    busybox_layout(&work.path, &layout, "base")?;
    let outside = work.join("outside");
    std::fs::create_dir_all(&outside)?;
    std::fs::write(outside.join("victim"), "untouched")?;
    let reg = Registry::start(&work.path, None)?;
    reg.push(&layout, "base", "evil/busybox:base")?;
    let store = ImageStore::open(&work.join("agent"))?;
    for variant in 0..4 {
        let tar = work.join(format!("evil-{variant}.tar"));
        hostile_layer(&tar, &outside, variant)?;
        let tag = format!("evil{variant}");
        run(
            "umoci",
            &[
                "raw",
                "add-layer",
                "--image",
                &format!("{}:base", layout.display()),
                "--tag",
                &tag,
                &tar.display().to_string(),
            ],
        )?;
        reg.push(&layout, &tag, &format!("evil/busybox:{tag}"))?;
        let reference = format!("{}/evil/busybox:{tag}", reg.addr());
        let err = pull_err(
            &store,
            &reference,
            &reg.addr(),
            "a malicious layer was accepted",
        )
        .await;
        let msg = err.to_string();
        assert!(
            msg.contains("escapes the snapshot"),
            "variant {variant}: {msg}"
        );
        assert_clean(&store);
        let names: Vec<_> = std::fs::read_dir(&outside)?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("victim")],
            "variant {variant}"
        );
        assert_eq!(
            std::fs::read_to_string(outside.join("victim"))?,
            "untouched"
        );
    }
    // The good base image still pulls (its layer snapshot was kept or redone).
    let base = store
        .pull(
            &format!("{}/evil/busybox:base", reg.addr()),
            &opts(&reg.addr()),
        )
        .await?;
    assert!(store.snapshot_path(&base.layers[0].chain_id)?.is_some());
    Ok(())
}
