//! Real parts for the image tests: Debian's docker-registry on a loopback port of
//! its own, images built by umoci from busybox-static and pushed by skopeo, and
//! a fault-injecting HTTP relay in front of the registry.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_testhost::wait_until;

const TEST_ROOT: &str = "/tmp/berth-image-tests";

/// A per-test scratch directory, removed on drop (also on panic). Directories of
/// earlier runs whose process is gone are removed on creation.
pub struct Workdir {
    pub path: PathBuf,
}

impl Workdir {
    pub fn new(test: &str) -> Result<Workdir> {
        std::fs::create_dir_all(TEST_ROOT)?;
        for entry in std::fs::read_dir(TEST_ROOT)?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let path = PathBuf::from(TEST_ROOT).join(format!("{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(Workdir { path })
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub use berth_testhost::command::run;

/// A free port on 127.0.0.1 (the registry retries if another test took it).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Kills a child when the test process dies, however it dies.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Debian's docker-registry on its own loopback port, killed on drop.
pub struct Registry {
    pub port: u16,
    child: Child,
    log: PathBuf,
}

impl Registry {
    /// Starts a registry storing in `dir`; `htpasswd` turns on basic auth.
    pub fn start(dir: &Path, htpasswd: Option<&Path>) -> Result<Registry> {
        let auth = match htpasswd {
            Some(p) => format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                p.display()
            ),
            None => String::new(),
        };
        Registry::start_with(dir, &auth, "")
    }

    /// Starts a registry that speaks only HTTPS with this certificate and key.
    pub fn start_tls(dir: &Path, cert: &Path, key: &Path) -> Result<Registry> {
        let tls = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        );
        Registry::start_with(dir, "", &tls)
    }

    fn start_with(dir: &Path, auth: &str, http_extra: &str) -> Result<Registry> {
        let mut last = None;
        for _ in 0..5 {
            match Registry::try_start(dir, auth, http_extra) {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("registry did not start")))
    }

    fn try_start(dir: &Path, auth: &str, http_extra: &str) -> Result<Registry> {
        let port = free_port()?;
        let storage = dir.join("registry-storage");
        std::fs::create_dir_all(&storage)?;
        let config = dir.join(format!("registry-{port}.yml"));
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n{http_extra}log:\n  level: info\n  accesslog:\n    disabled: false\n{auth}",
                storage.display()
            ),
        )?;
        let log = dir.join(format!("registry-{port}.log"));
        let logf = std::fs::File::create(&log)?;
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().context("failed to start docker-registry")?;
        let mut reg = Registry { port, child, log };
        // Ours listens once its log says so (another test may have taken the
        // port meanwhile: then ours exits and the next port is tried).
        let listening = format!("listening on 127.0.0.1:{port}");
        let ready = wait_until("the registry to listen", Duration::from_secs(20), || {
            if let Ok(Some(_)) = reg.child.try_wait() {
                return Some(false);
            }
            let log = std::fs::read_to_string(&reg.log).unwrap_or_default();
            (log.contains(&listening) && http_status(port, "/v2/").is_some()).then_some(true)
        });
        match ready {
            Ok(true) => Ok(reg),
            Ok(false) => bail!("registry exited: {}", std::fs::read_to_string(&reg.log)?),
            Err(e) => Err(e),
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits until the access log caught up with every request answered so far:
    /// the registry writes a line after it answered, so a marker request is sent
    /// and its line awaited.
    fn settled_log(&self) -> String {
        static MARKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = MARKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = format!("/v2/settle-{n}/tags/list");
        let _ = http_status(self.port, &path);
        let seen = wait_until("the registry's access log", Duration::from_secs(10), || {
            let log = std::fs::read_to_string(&self.log).ok()?;
            log.contains(&path).then_some(log)
        });
        seen.unwrap_or_else(|_| std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// How many successful GETs of `digest` as a blob the access log shows.
    pub fn blob_gets(&self, digest: &str) -> usize {
        let log = self.settled_log();
        let needle = format!("/blobs/{digest} ");
        log.lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains(&needle) && l.contains("\" 200 "))
            .count()
    }

    /// Every blob GET in the access log.
    pub fn all_blob_gets(&self) -> usize {
        let log = self.settled_log();
        log.lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
            .count()
    }

    /// Pushes `layout:tag` as `repo:tag` with skopeo.
    pub fn push(&self, layout: &Path, tag: &str, repo_tag: &str) -> Result<()> {
        let src = format!("oci:{}:{tag}", layout.display());
        let dst = format!("docker://{}/{repo_tag}", self.addr());
        run(
            "skopeo",
            &[
                "copy",
                "--all",
                "--dest-tls-verify=false",
                "--quiet",
                &src,
                &dst,
            ],
        )?;
        Ok(())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA and a server certificate for 127.0.0.1 signed by it, made with
/// openssl: returns (ca.pem, server.pem, server.key).
pub fn test_certificates(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let p = |n: &str| dir.join(n).display().to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    let (ca_key, ca, key, csr, cert, ext) = (
        p("ca.key"),
        p("ca.pem"),
        p("server.key"),
        p("server.csr"),
        p("server.pem"),
        p("ext.cnf"),
    );
    args.extend([
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-days",
        "2",
        "-subj",
        "/CN=berth-test-ca",
    ]);
    run("openssl", &args)?;
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]);
    run("openssl", &args)?;
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )?;
    run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    )?;
    Ok((ca.into(), cert.into(), key.into()))
}

/// Status code of a plain GET to 127.0.0.1:port.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub use berth_testhost::images::busybox_layout;

/// Adds a layer on top of `from` as `to`: `change` edits the unpacked rootfs.
pub fn derive_layer(
    work: &Path,
    layout: &Path,
    from: &str,
    to: &str,
    change: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let bundle = work.join(format!("bundle-{to}"));
    run(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:{from}", layout.display()),
            &bundle.display().to_string(),
        ],
    )?;
    change(&bundle.join("rootfs"))?;
    run(
        "umoci",
        &[
            "repack",
            "--image",
            &format!("{}:{to}", layout.display()),
            &bundle.display().to_string(),
        ],
    )?;
    std::fs::remove_dir_all(&bundle)?;
    Ok(())
}

/// Digests of the layers of `layout:tag`, bottom first, read from the layout.
pub fn layout_layers(layout: &Path, tag: &str) -> Result<Vec<String>> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let entry = index["manifests"]
        .as_array()
        .context("manifests")?
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .context("tag not in the layout")?;
    let digest = entry["digest"].as_str().context("digest")?;
    let hex = digest.trim_start_matches("sha256:");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex))?)?;
    Ok(manifest["layers"]
        .as_array()
        .context("layers")?
        .iter()
        .filter_map(|l| l["digest"].as_str().map(str::to_string))
        .collect())
}

/// What the relay does to a request whose path contains `path_part`.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and an empty body.
    Status(u16),
    /// Relay the answer but cut the body in half (the Content-Length stays).
    Truncate,
    /// Relay the answer with one byte of the body changed.
    Corrupt,
}

/// An HTTP/1.1 relay in front of the registry that injects faults, for as long
/// as it lives (its thread ends when the listener is dropped).
pub struct Relay {
    pub port: u16,
    rules: Arc<Mutex<Vec<(String, Fault)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    token: Arc<Mutex<Option<String>>>,
    /// Requests to the token endpoint so far.
    pub token_requests: Arc<std::sync::atomic::AtomicUsize>,
    /// Blob requests held until enough are in flight at once.
    pub gate: Arc<Gate>,
}

/// Holds blob requests until `want` of them wait together (or a generous
/// fallback passes, so that a sequential client is slow, not stuck), and
/// records the most that were ever in flight at once.
#[derive(Default)]
pub struct Gate {
    state: Mutex<(usize, usize, usize)>, // (want, in flight, max in flight)
    blobs: Mutex<Vec<String>>,
    cv: std::sync::Condvar,
}

impl Gate {
    /// Holds GETs of these blobs until `want` of them are in flight.
    pub fn hold_until(&self, want: usize, blobs: &[String]) {
        if let Ok(mut b) = self.blobs.lock() {
            *b = blobs.to_vec();
        }
        if let Ok(mut g) = self.state.lock() {
            g.0 = want;
        }
    }

    fn covers(&self, path: &str) -> bool {
        self.blobs
            .lock()
            .map(|b| b.iter().any(|d| path.contains(&format!("/blobs/{d}"))))
            .unwrap_or(false)
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.lock().map(|g| g.2).unwrap_or(0)
    }

    fn enter(&self) {
        let Ok(mut g) = self.state.lock() else { return };
        g.1 += 1;
        g.2 = g.2.max(g.1);
        self.cv.notify_all();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while g.0 > 1 && g.1 < g.0 && g.2 < g.0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match self.cv.wait_timeout(g, left) {
                Ok((next, _)) => g = next,
                Err(_) => return,
            }
        }
    }

    fn leave(&self) {
        if let Ok(mut g) = self.state.lock() {
            g.1 = g.1.saturating_sub(1);
        }
    }
}

/// What the relay needs to know of itself for one connection.
#[derive(Clone)]
struct RelayCtx {
    gate: Arc<Gate>,
    port: u16,
    upstream: u16,
    rules: Vec<(String, Fault)>,
    token: Option<String>,
    token_requests: Arc<std::sync::atomic::AtomicUsize>,
}

impl Relay {
    pub fn start(upstream: u16) -> Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let rules: Arc<Mutex<Vec<(String, Fault)>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let token: Arc<Mutex<Option<String>>> = Arc::default();
        let token_requests: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let gate: Arc<Gate> = Arc::default();
        let gt = gate.clone();
        let (r, st, tk, tr) = (
            rules.clone(),
            stop.clone(),
            token.clone(),
            token_requests.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let ctx = RelayCtx {
                    port,
                    upstream,
                    rules: r.lock().map(|g| g.clone()).unwrap_or_default(),
                    token: tk.lock().map(|g| g.clone()).unwrap_or_default(),
                    token_requests: tr.clone(),
                    gate: gt.clone(),
                };
                std::thread::spawn(move || {
                    let _ = relay_one(conn, &ctx);
                });
            }
        });
        Ok(Relay {
            port,
            rules,
            stop,
            token,
            token_requests,
            gate,
        })
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// From now on every request needs `Authorization: Bearer TOKEN`; the token is
    /// handed out anonymously at `/token`, as Docker Hub does.
    pub fn require_token(&self, token: &str) {
        if let Ok(mut g) = self.token.lock() {
            *g = Some(token.to_string());
        }
    }

    pub fn set(&self, rules: Vec<(String, Fault)>) {
        if let Ok(mut g) = self.rules.lock() {
            *g = rules;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Relays the one request of a client connection (answers say `Connection: close`).
fn relay_one(client: TcpStream, ctx: &RelayCtx) -> Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.push(line);
        }
    }
    let path = head
        .first()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    if let Some(token) = &ctx.token {
        if path.starts_with("/token") {
            ctx.token_requests
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = format!(r#"{{"token":"{token}","expires_in":300}}"#);
            write!(
                client,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return Ok(());
        }
        let wanted = format!("authorization: bearer {}", token.to_ascii_lowercase());
        if !head.iter().any(|h| h.trim().to_ascii_lowercase() == wanted) {
            write!(
                client,
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://127.0.0.1:{}/token\",service=\"berth-test\"\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n",
                ctx.port
            )?;
            return Ok(());
        }
    }
    let fault = ctx
        .rules
        .iter()
        .find(|(p, _)| path.contains(p))
        .map(|(_, f)| f);
    if let Some(Fault::Status(code)) = fault {
        write!(
            client,
            "HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    }
    let is_blob = ctx.gate.covers(&path);
    if is_blob {
        ctx.gate.enter();
    }
    let relayed = relay_upstream(&mut client, &head, fault, ctx.upstream);
    if is_blob {
        ctx.gate.leave();
    }
    relayed
}

fn relay_upstream(
    client: &mut TcpStream,
    head: &[String],
    fault: Option<&Fault>,
    upstream: u16,
) -> Result<()> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut req = head.concat();
    req.push_str("Connection: close\r\n\r\n");
    up.write_all(req.as_bytes())?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(resp.len(), |p| p + 4);
    let (h, body) = resp.split_at(split);
    let mut headers = String::from_utf8_lossy(h).replace("Connection: close\r\n", "");
    headers = headers.trim_end_matches("\r\n").to_string() + "\r\nConnection: close\r\n\r\n";
    let mut body = body.to_vec();
    match fault {
        Some(Fault::Truncate) => body.truncate(body.len() / 2),
        Some(Fault::Corrupt) => {
            let mid = body.len() / 2;
            if let Some(b) = body.get_mut(mid) {
                *b ^= 0xff;
            }
        }
        _ => {}
    }
    client.write_all(headers.as_bytes())?;
    client.write_all(&body)?;
    Ok(())
}

/// PUTs a manifest or index to `repo:tag` with plain HTTP; returns the status.
pub fn put_manifest(port: u16, repo_tag: &str, media_type: &str, body: &[u8]) -> Result<u16> {
    let (repo, tag) = repo_tag.split_once(':').context("repo:tag")?;
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "PUT /v2/{repo}/manifests/{tag} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {media_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status line")
}

/// The manifest of `layout:tag` as bytes, with its media type.
pub fn layout_manifest(layout: &Path, tag: &str) -> Result<(String, Vec<u8>)> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let entry = index["manifests"]
        .as_array()
        .context("manifests")?
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .context("tag not in the layout")?;
    let digest = entry["digest"].as_str().context("digest")?.to_string();
    let data = std::fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )?;
    Ok((digest, data))
}
