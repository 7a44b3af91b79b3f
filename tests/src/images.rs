//! Images made by tools we did not write (umoci from busybox-static) served by
//! Debian's docker-registry running on a test host.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

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
