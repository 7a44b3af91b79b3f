//! Images made by tools we did not write (umoci from busybox-static) served by
//! Debian's docker-registry running on a test host.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::command::run;
use crate::testnet::TestNet;
use crate::wait_until;

pub const REGISTRY_PORT: u16 = 5000;

/// Builds OCI layout `layout` with tag `tag`: busybox-static with a symlink per
/// applet, cmd `sh`.
pub fn busybox_layout(work: &Path, layout: &Path, tag: &str) -> Result<()> {
    layout_with(work, layout, tag, |_| Ok(()))
}

/// A web image, tag `tag`: busybox, `/www/index.html` holding `version` (for
/// `httpd -f -p 80 -h /www`), and the load generator `berth-loadgen` in
/// `/bin` with the shared libraries it links, at the paths `ldd` names.
pub fn web_layout(work: &Path, layout: &Path, tag: &str, version: &str) -> Result<()> {
    layout_with(work, layout, tag, |rootfs| {
        std::fs::create_dir_all(rootfs.join("www"))?;
        std::fs::write(rootfs.join("www/index.html"), format!("{version}\n"))?;
        let loadgen = crate::bin_path("berth-loadgen");
        std::fs::copy(&loadgen, rootfs.join("bin/berth-loadgen"))?;
        for library in linked_libraries(&loadgen)? {
            let inside = rootfs.join(library.strip_prefix("/")?);
            if let Some(dir) = inside.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::copy(&library, &inside)?;
        }
        Ok(())
    })
}

/// The absolute paths of the shared libraries (and the loader) `binary` links.
fn linked_libraries(binary: &Path) -> Result<Vec<std::path::PathBuf>> {
    let listing = run("ldd", &[&binary.to_string_lossy()])?;
    Ok(listing
        .lines()
        .filter_map(|line| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/')
                .then(|| std::path::PathBuf::from(path))
        })
        .collect())
}

/// busybox_layout, with `fill` adding files to the root filesystem.
fn layout_with(
    work: &Path,
    layout: &Path,
    tag: &str,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let layout_s = layout.to_string_lossy().to_string();
    if !layout.exists() {
        run("umoci", &["init", "--layout", &layout_s])?;
    }
    let image = format!("{layout_s}:{tag}");
    run("umoci", &["new", "--image", &image])?;
    let bundle = work.join(format!("bundle-{tag}"));
    let bundle_s = bundle.to_string_lossy().to_string();
    run("umoci", &["unpack", "--image", &image, &bundle_s])?;
    let bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy("/bin/busybox", bin.join("busybox"))?;
    for applet in run("/bin/busybox", &["--list"])?.lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet))?;
        }
    }
    // A file of the base image's own, for tests that look for it in layers.
    std::fs::create_dir_all(bundle.join("rootfs/etc"))?;
    std::fs::write(bundle.join("rootfs/etc/base-release"), "base\n")?;
    fill(&bundle.join("rootfs"))?;
    run("umoci", &["repack", "--image", &image, &bundle_s])?;
    run(
        "umoci",
        &["config", "--image", &image, "--config.cmd", "sh"],
    )?;
    std::fs::remove_dir_all(&bundle)?;
    Ok(())
}

/// Adds tag `to_tag` to OCI layout `layout`: the image of `from_tag` with
/// the file `path` (inside the image, absolute) holding `content`.
pub fn layout_with_file(
    work: &Path,
    layout: &Path,
    from_tag: &str,
    to_tag: &str,
    path: &str,
    content: &str,
) -> Result<()> {
    let layout_s = layout.to_string_lossy().to_string();
    let bundle = work.join(format!("bundle-{to_tag}"));
    let bundle_s = bundle.to_string_lossy().to_string();
    let from = format!("{layout_s}:{from_tag}");
    run("umoci", &["unpack", "--image", &from, &bundle_s])?;
    let file = bundle.join("rootfs").join(path.trim_start_matches('/'));
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&file, content)?;
    let to = format!("{layout_s}:{to_tag}");
    run("umoci", &["repack", "--image", &to, &bundle_s])?;
    std::fs::remove_dir_all(&bundle)?;
    Ok(())
}

/// Docker's `HEALTHCHECK CMD <shell>` with its timings, as an image config
/// carries it (`Healthcheck`); umoci cannot set it.
#[derive(Clone, Debug)]
pub struct ImageHealthcheck<'a> {
    /// Run by `/bin/sh -c` (`CMD-SHELL`).
    pub shell: &'a str,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

/// Adds tag `to_tag` to OCI layout `layout`: the image of `from_tag` whose
/// config carries `check` as Docker's `Healthcheck`.
pub fn layout_with_healthcheck(
    layout: &Path,
    from_tag: &str,
    to_tag: &str,
    check: &ImageHealthcheck,
) -> Result<()> {
    let from = format!("{}:{from_tag}", layout.display());
    run("umoci", &["tag", "--image", &from, to_tag])?;
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).context("a duration beyond u64 ns");
    let healthcheck = json!({
        "Test": ["CMD-SHELL", check.shell],
        "Interval": nanos(check.interval)?,
        "Timeout": nanos(check.timeout)?,
        "Retries": check.retries,
        "StartPeriod": nanos(check.start_period)?,
    });
    set_runtime_config(layout, to_tag, "Healthcheck", healthcheck)
}

/// Sets `key` of the runtime part (`config`) of the image config that
/// `layout:tag` names, for what umoci cannot set. Blobs are content-addressed,
/// so this writes a new config blob, a new manifest naming it and points the
/// tag in `index.json` at that manifest (the old blobs stay for other tags).
fn set_runtime_config(layout: &Path, tag: &str, key: &str, value: Value) -> Result<()> {
    let index_path = layout.join("index.json");
    let mut index = read_json(&index_path)?;
    let descriptor = index["manifests"]
        .as_array_mut()
        .and_then(|all| {
            all.iter_mut()
                .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        })
        .with_context(|| format!("{}: no manifest tagged {tag:?}", index_path.display()))?;
    let manifest_path = blob_path(layout, &descriptor["digest"])?;
    let mut manifest = read_json(&manifest_path)?;
    let config_path = blob_path(layout, &manifest["config"]["digest"])?;
    let mut config = read_json(&config_path)?;
    let Some(runtime) = config
        .as_object_mut()
        .map(|c| c.entry("config").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    else {
        bail!("{}: not an image config", config_path.display());
    };
    runtime.insert(key.to_string(), value);
    let (digest, size) = write_blob(layout, &config)?;
    manifest["config"]["digest"] = digest.into();
    manifest["config"]["size"] = size.into();
    let (digest, size) = write_blob(layout, &manifest)?;
    descriptor["digest"] = digest.into();
    descriptor["size"] = size.into();
    let text = serde_json::to_vec(&index)?;
    std::fs::write(&index_path, text)
        .with_context(|| format!("failed to write {}", index_path.display()))
}

fn read_json(path: &Path) -> Result<Value> {
    let data = std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
    serde_json::from_slice(&data).with_context(|| format!("{}: bad JSON", path.display()))
}

/// The file of blob `digest` (`sha256:HEX`) in `layout`.
fn blob_path(layout: &Path, digest: &Value) -> Result<PathBuf> {
    let hex = digest
        .as_str()
        .and_then(|d| d.strip_prefix("sha256:"))
        .with_context(|| format!("{}: digest {digest} is not sha256", layout.display()))?;
    Ok(layout.join("blobs/sha256").join(hex))
}

/// Stores `value` as a blob of `layout`; returns its digest and size.
fn write_blob(layout: &Path, value: &Value) -> Result<(String, u64)> {
    let data = serde_json::to_vec(value)?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
    let path = blob_path(layout, &Value::from(digest.as_str()))?;
    std::fs::write(&path, &data).with_context(|| format!("failed to write {}", path.display()))?;
    Ok((digest, data.len() as u64))
}

/// A registry process on test host `host`, listening on its fabric address.
pub struct HostRegistry {
    host: usize,
    /// Its process's name on the host.
    name: String,
    address: String,
    /// User and password every request needs (basic auth), if any.
    credentials: Option<(String, String)>,
}

impl HostRegistry {
    /// The open registry on port 5000: anyone may pull and push.
    pub fn start(net: &mut TestNet, host: usize) -> Result<HostRegistry> {
        Self::start_on(net, host, REGISTRY_PORT, None)
    }

    /// A private registry on `port`: every request needs `user`'s basic auth
    /// (an htpasswd file with a bcrypt hash, as Docker's docs set it up).
    pub fn start_private(
        net: &mut TestNet,
        host: usize,
        port: u16,
        user: &str,
        password: &str,
    ) -> Result<HostRegistry> {
        Self::start_on(net, host, port, Some((user.into(), password.into())))
    }

    fn start_on(
        net: &mut TestNet,
        host: usize,
        port: u16,
        credentials: Option<(String, String)>,
    ) -> Result<HostRegistry> {
        let address = format!("{}:{port}", net.host(host).address());
        let name = if port == REGISTRY_PORT {
            "registry".to_string()
        } else {
            format!("registry-{port}")
        };
        let dir = net.host(host).dir().join(&name);
        std::fs::create_dir_all(&dir)?;
        let auth = match &credentials {
            Some((user, password)) => {
                let htpasswd = dir.join("htpasswd");
                std::fs::write(
                    &htpasswd,
                    format!("{user}:{}\n", bcrypt::hash(password, 4)?),
                )?;
                format!(
                    "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
            None => String::new(),
        };
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {address}\nlog:\n  level: warn\n  accesslog:\n    disabled: false\n{auth}",
                dir.join("storage").display()
            ),
        )?;
        let config_s = config.to_string_lossy().to_string();
        net.host_mut(host)
            .spawn(&name, "docker-registry", &["serve", &config_s])?;
        let registry = HostRegistry {
            host,
            name,
            address,
            credentials,
        };
        registry.wait_answering(net)?;
        Ok(registry)
    }

    /// Waits until the registry answers `GET /v2/` (with its credentials).
    fn wait_answering(&self, net: &TestNet) -> Result<()> {
        let address = &self.address;
        let url = match &self.credentials {
            Some((user, password)) => format!("http://{user}:{password}@{address}/v2/"),
            None => format!("http://{address}/v2/"),
        };
        let h = net.host(self.host);
        wait_until("the registry to answer", Duration::from_secs(20), || {
            let out = h
                .run_unchecked("busybox", &["wget", "-q", "-O", "/dev/null", &url])
                .ok()?;
            out.status.success().then_some(())
        })
    }

    /// HOST:PORT, for image references and --insecure-registry.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Stops the registry (its storage stays for `restart`).
    pub fn stop(&self, net: &mut TestNet) -> Result<()> {
        let proc = net.host_mut(self.host).proc(&self.name)?;
        proc.terminate(Duration::from_secs(5))?;
        Ok(())
    }

    /// Starts the stopped registry again and waits until it answers.
    pub fn restart(&self, net: &mut TestNet) -> Result<()> {
        net.host_mut(self.host).proc(&self.name)?.restart()?;
        self.wait_answering(net)
    }

    /// The digest (`sha256:…`) the registry gives for `name` (repo:tag), as
    /// skopeo reads it.
    pub fn digest(&self, net: &TestNet, name: &str) -> Result<String> {
        let src = format!("docker://{}/{name}", self.address);
        let creds = self
            .credentials
            .as_ref()
            .map(|(user, password)| format!("{user}:{password}"));
        let mut args = vec!["inspect", "--tls-verify=false", "--format", "{{.Digest}}"];
        if let Some(creds) = &creds {
            args.extend(["--creds", creds.as_str()]);
        }
        args.push(src.as_str());
        let out = net.host(self.host).run("skopeo", &args)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Pushes `layout:tag` as `name` (repo:tag) with skopeo, from the registry's host.
    pub fn push(&self, net: &TestNet, layout: &Path, tag: &str, name: &str) -> Result<String> {
        let src = format!("oci:{}:{tag}", layout.display());
        let reference = format!("{}/{name}", self.address);
        let dst = format!("docker://{reference}");
        let creds = self
            .credentials
            .as_ref()
            .map(|(user, password)| format!("{user}:{password}"));
        let mut args = vec!["copy", "--dest-tls-verify=false", "--quiet"];
        if let Some(creds) = &creds {
            args.extend(["--dest-creds", creds.as_str()]);
        }
        args.extend([src.as_str(), dst.as_str()]);
        net.host(self.host).run("skopeo", &args)?;
        Ok(reference)
    }
}
