//! Import, prune and container rootfs mounts, with images made by umoci and skopeo.
//! Mounts happen only on a thread that entered a private mount namespace of its
//! own, so nothing leaks onto the machine, also when a test panics.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use berth_agent::image::{Digest, Image, ImageStore, ImportOptions};
use support::{Workdir, busybox_layout, derive_layer, run};

/// Runs `f` on a thread in a new, private mount namespace (which dies with the
/// thread and takes every mount made in it along).
fn in_private_mounts<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    std::thread::spawn(move || -> Result<T> {
        // SAFETY: plain syscalls on this thread only.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error()).context("unshare(CLONE_NEWNS)");
            }
            let none = c"none";
            let root = c"/";
            if libc::mount(
                none.as_ptr(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error()).context("make / private");
            }
        }
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the mount namespace thread panicked"))?
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f))
}

/// Imports `layout` into a store in `data`, then runs `f` on it on a thread in
/// a private mount namespace.
fn with_imported<F, Fut>(data: PathBuf, layout: PathBuf, f: F) -> Result<()>
where
    F: FnOnce(ImageStore) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>>,
{
    in_private_mounts(move || {
        block_on(async move {
            let store = ImageStore::open(&data)?;
            store.import(&layout, &ImportOptions::default()).await?;
            f(store).await
        })?
    })
}

/// base (busybox), app (base + etc/app.conf, without etc/base-release).
fn two_images(work: &Workdir) -> Result<std::path::PathBuf> {
    let layout = work.join("layout");
    busybox_layout(&work.path, &layout, "base")?;
    derive_layer(&work.path, &layout, "base", "app", |root| {
        std::fs::write(root.join("etc/app.conf"), "port=8080\n")?;
        std::fs::remove_file(root.join("etc/base-release"))?;
        Ok(())
    })?;
    Ok(layout)
}

fn blobs_on_disk(store: &ImageStore) -> Result<BTreeSet<String>> {
    Ok(std::fs::read_dir(store.root().join("blobs/sha256"))?
        .flatten()
        .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
        .collect())
}

fn blobs_of(images: &[&Image]) -> BTreeSet<String> {
    images
        .iter()
        .flat_map(|i| i.blobs().map(Digest::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn imports_an_oci_layout_dir_its_tar_and_a_docker_save_archive() -> Result<()> {
    let work = Workdir::new("import")?;
    let layout = two_images(&work)?;

    // The layout directory: both tags, named after the directory.
    let store = ImageStore::open(&work.join("agent"))?;
    let mut images = store.import(&layout, &ImportOptions::default()).await?;
    images.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<_> = images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["localhost/layout:app", "localhost/layout:base"]);
    let (app, base) = (&images[0], &images[1]);
    assert_eq!(app.layers[0].chain_id, base.layers[0].chain_id);
    let app_top = store
        .snapshot_path(&app.layers[1].chain_id)?
        .context("app snapshot")?;
    assert_eq!(
        std::fs::read_to_string(app_top.join("etc/app.conf"))?,
        "port=8080\n"
    );
    // umoci wrote the deletion as an OCI whiteout: now an overlay whiteout.
    let wh = std::fs::symlink_metadata(app_top.join("etc/base-release"))?;
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &wh.file_type()
    ));
    assert_eq!(store.image_config(app)?.argv(), ["sh"]);

    // The same layout as a tar, into another store, through the CLI.
    let tar = work.join("layout.tar");
    run(
        "tar",
        &[
            "-C",
            &layout.display().to_string(),
            "-cf",
            &tar.display().to_string(),
            ".",
        ],
    )?;
    let agent = env!("CARGO_BIN_EXE_berth-agent");
    let data2 = work.join("agent2");
    let out = run(
        agent,
        &[
            "image",
            "import",
            "--data-dir",
            &data2.display().to_string(),
            &tar.display().to_string(),
        ],
    )?;
    assert!(
        out.contains("localhost/layout:app") && out.contains("localhost/layout:base"),
        "{out}"
    );
    let store2 = ImageStore::open(&data2)?;
    assert_eq!(
        store2.get("localhost/layout:app")?.manifest_digest,
        app.manifest_digest
    );

    // A docker-save archive written by skopeo (uncompressed layers, its own manifest.json).
    let archive = work.join("app-docker.tar");
    run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("oci:{}:app", layout.display()),
            &format!("docker-archive:{}:busybox:app", archive.display()),
        ],
    )?;
    let store3 = ImageStore::open(&work.join("agent3"))?;
    let imported = store3.import(&archive, &ImportOptions::default()).await?;
    assert_eq!(imported.len(), 1);
    let docker = &imported[0];
    assert_eq!(docker.name, "docker.io/library/busybox:app");
    assert_eq!(docker.layers.len(), 2);
    // Different blobs (uncompressed), the same content: the same ChainIDs.
    assert_eq!(docker.layers[1].chain_id, app.layers[1].chain_id);
    assert_eq!(docker.config_digest, app.config_digest);
    let top = store3
        .snapshot_path(&docker.layers[1].chain_id)?
        .context("snapshot")?;
    assert_eq!(
        std::fs::read_to_string(top.join("etc/app.conf"))?,
        "port=8080\n"
    );

    // With a name of our choosing; and a broken archive is a clear error.
    let named = store3
        .import(
            &archive,
            &ImportOptions {
                name: Some("team/app:v2".into()),
            },
        )
        .await?;
    assert_eq!(named[0].name, "docker.io/team/app:v2");
    let junk = work.join("junk.tar");
    std::fs::write(&junk, b"not a tar at all")?;
    let err = store3
        .import(&junk, &ImportOptions::default())
        .await
        .expect_err("junk imported");
    assert!(err.to_string().contains("junk.tar"), "{err}");
    Ok(())
}

#[test]
fn prune_removes_exactly_what_nothing_references() -> Result<()> {
    let work = Workdir::new("prune")?;
    let layout = two_images(&work)?;
    let data = work.join("agent");
    with_imported(data, layout, |store| async move {
        let base = store.get("localhost/layout:base")?;
        let app = store.get("localhost/layout:app")?;
        assert_eq!(blobs_on_disk(&store)?, blobs_of(&[&base, &app]));
        let refs = store.references()?;
        assert_eq!(refs.snapshots.get(&base.layers[0].chain_id), Some(&2));

        // Nothing to prune while both are named.
        let report = store.prune().await?;
        assert!(
            report.blobs.is_empty() && report.snapshots.is_empty(),
            "{report:?}"
        );

        // A container on app holds it after its name is gone.
        let rootfs = store.prepare_rootfs(&app, "c1").await?;
        store.remove("localhost/layout:app")?;
        let report = store.prune().await?;
        assert!(
            report.blobs.is_empty() && report.snapshots.is_empty(),
            "{report:?}"
        );
        assert!(rootfs.path.join("etc/app.conf").exists());

        // Released: exactly app's own blobs and its top snapshot go.
        store.release_rootfs("c1").await?;
        assert!(!rootfs.path.exists());
        let report = store.prune().await?;
        let only_app: BTreeSet<String> = blobs_of(&[&app])
            .difference(&blobs_of(&[&base]))
            .cloned()
            .collect();
        let removed: BTreeSet<String> = report.blobs.iter().map(Digest::to_string).collect();
        assert_eq!(removed, only_app);
        assert_eq!(report.snapshots, vec![app.layers[1].chain_id.clone()]);
        assert_eq!(blobs_on_disk(&store)?, blobs_of(&[&base]));
        assert!(store.snapshot_path(&base.layers[0].chain_id)?.is_some());
        assert!(store.snapshot_path(&app.layers[1].chain_id)?.is_none());
        let snapshot_dirs = std::fs::read_dir(store.root().join("snapshots"))?.count();
        assert_eq!(snapshot_dirs, 1);

        // The base image is untouched and still mounts.
        let again = store.prepare_rootfs(&base, "c2").await?;
        assert!(again.path.join("bin/busybox").exists());
        store.release_rootfs("c2").await?;
        Ok(())
    })
}

#[test]
fn a_rootfs_is_an_overlay_of_the_snapshots_with_its_own_upper_dir() -> Result<()> {
    let work = Workdir::new("rootfs")?;
    let layout = two_images(&work)?;
    let data = work.join("agent");
    with_imported(data, layout, |store| async move {
        let app = store.get("localhost/layout:app")?;
        let r = store.prepare_rootfs(&app, "web-1").await?;
        assert_eq!(r.lower_dirs.len(), 2);
        // Preparing it again (an agent that restarted) keeps the one mount.
        assert_eq!(store.prepare_rootfs(&app, "web-1").await?, r);
        let mounts = std::fs::read_to_string("/proc/thread-self/mountinfo")?;
        let target = format!(" {} ", r.path.display());
        assert_eq!(mounts.matches(&target).count(), 1, "{mounts}");
        let root = &r.path;
        assert!(root.join("bin/busybox").is_file(), "base layer visible");
        assert_eq!(
            std::fs::read_to_string(root.join("etc/app.conf"))?,
            "port=8080\n"
        );
        assert!(
            !root.join("etc/base-release").exists(),
            "the whiteout hides the file"
        );
        // Writes go to the container's upper dir, never to a snapshot.
        std::fs::write(root.join("etc/written"), "x")?;
        assert!(r.upper_dir.join("etc/written").exists());
        for lower in &r.lower_dirs {
            assert!(!lower.join("etc/written").exists());
        }
        // Busybox runs from it.
        let out = std::process::Command::new("chroot")
            .arg(root)
            .args(["/bin/sh", "-c", "cat /etc/app.conf"])
            .output()?;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "port=8080\n");
        store.release_rootfs("web-1").await?;
        let mounts = std::fs::read_to_string("/proc/thread-self/mountinfo")?;
        assert!(
            !mounts.contains(&r.path.display().to_string()),
            "still mounted"
        );
        assert!(!store.container_dir("web-1").exists());
        Ok(())
    })
}

#[test]
fn a_rootfs_spec_lets_the_caller_mount_the_overlay_itself() -> Result<()> {
    let work = Workdir::new("rootfs_spec")?;
    let layout = two_images(&work)?;
    let data = work.join("agent");
    with_imported(data, layout, |store| async move {
        let app = store.get("localhost/layout:app")?;
        let spec = store.rootfs_spec(&app, "ctr-9").await?;
        assert_eq!(store.rootfs_holds()?, vec!["ctr-9".to_string()]);
        let target = spec.path.display().to_string();
        run(
            "mount",
            &[
                "-t",
                "overlay",
                "overlay",
                "-o",
                &spec.mount_options(),
                &target,
            ],
        )?;
        assert!(spec.path.join("etc/app.conf").exists());
        assert!(spec.path.join("bin/sh").exists());
        store.release_rootfs("ctr-9").await?;
        assert!(store.rootfs_holds()?.is_empty());
        assert!(!store.container_dir("ctr-9").exists());
        Ok(())
    })
}

#[test]
fn a_directory_a_layer_only_implies_keeps_the_owner_and_mode_from_below() -> Result<()> {
    let work = Workdir::new("implicit_dirs")?;
    let layout = work.join("layout");
    busybox_layout(&work.path, &layout, "base")?;
    derive_layer(&work.path, &layout, "base", "owned", |root| {
        let srv = root.join("srv");
        std::fs::create_dir_all(&srv)?;
        std::os::unix::fs::chown(&srv, Some(1000), Some(1000))?;
        std::fs::set_permissions(&srv, std::os::unix::fs::PermissionsExt::from_mode(0o750))?;
        Ok(())
    })?;
    // A layer with srv/new but no entry for srv/ itself.
    let tar = work.join("implicit.tar");
    tiny_layer(&tar, "srv/new")?;
    run(
        "umoci",
        &[
            "raw",
            "add-layer",
            "--image",
            &format!("{}:owned", layout.display()),
            "--tag",
            "implicit",
            &tar.display().to_string(),
        ],
    )?;
    let data = work.join("agent");
    with_imported(data, layout, |store| async move {
        let image = store.get("localhost/layout:implicit")?;
        let r = store.prepare_rootfs(&image, "c-implicit").await?;
        let srv = std::fs::metadata(r.path.join("srv"))?;
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (srv.uid(), srv.gid(), srv.mode() & 0o7777),
            (1000, 1000, 0o750)
        );
        assert!(r.path.join("srv/new").is_file());
        store.release_rootfs("c-implicit").await?;
        Ok(())
    })
}

/// One tiny layer tar holding `file`.
fn tiny_layer(path: &Path, file: &str) -> Result<()> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path(file)?;
    h.set_size(file.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    b.append(&h, file.as_bytes())?;
    std::fs::write(path, b.into_inner()?)?;
    Ok(())
}

#[test]
fn an_image_with_more_layers_than_fit_in_one_page_of_mount_options_mounts() -> Result<()> {
    let work = Workdir::new("many_layers")?;
    let layout = work.join("layout");
    busybox_layout(&work.path, &layout, "l0")?;
    let layers = 130;
    for i in 1..layers {
        let tar = work.join(format!("layer-{i}.tar"));
        tiny_layer(&tar, &format!("layer-{i}"))?;
        run(
            "umoci",
            &[
                "raw",
                "add-layer",
                "--no-history",
                "--image",
                &format!("{}:l{}", layout.display(), i - 1),
                "--tag",
                &format!("l{i}"),
                &tar.display().to_string(),
            ],
        )?;
    }
    let data = work.join("agent");
    in_private_mounts(move || {
        block_on(async move {
            let store = ImageStore::open(&data)?;
            let images = store.import(&layout, &ImportOptions::default()).await?;
            let top = images
                .iter()
                .find(|i| i.name == format!("localhost/layout:l{}", layers - 1))
                .context("top image")?;
            assert_eq!(top.layers.len(), layers);
            let r = store.prepare_rootfs(top, "many").await?;
            assert!(
                r.mount_options().len() > 4096,
                "the test needs a long option string"
            );
            for i in 1..layers {
                assert!(
                    r.path.join(format!("layer-{i}")).exists(),
                    "layer {i} missing"
                );
            }
            assert!(r.path.join("bin/busybox").exists());
            store.release_rootfs("many").await?;
            Ok(())
        })?
    })
}
