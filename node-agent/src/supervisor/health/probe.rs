//! The seam between the health monitor and the host ([`HealthProbe`]), and the
//! real probes: `exec` runs the command in the container through the OCI
//! runtime's `exec` (its namespaces and cgroup); `http` and `tcp` connect to
//! 127.0.0.1 from inside the container's network namespace, entered by a
//! thread of their own (setns changes only the calling thread, which ends
//! with the probe).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use berth_runtime::proc;
use nix::sched::{CloneFlags, setns};

use super::config::Probe;
use crate::supervisor::container_runtime::Init;

/// The container a probe checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    pub container_id: String,
    pub init: Init,
}

/// Runs one probe of a container; `Err` says why it failed (its output).
#[async_trait]
pub trait HealthProbe: Send + Sync + 'static {
    async fn check(
        &self,
        target: &ProbeTarget,
        probe: &Probe,
        timeout: Duration,
    ) -> Result<(), String>;
}

/// The probes of real containers: `exec` through the OCI runtime.
pub struct ContainerProbe {
    /// The OCI runtime binary and its `--root`.
    pub runtime: PathBuf,
    pub runtime_root: PathBuf,
}

#[async_trait]
impl HealthProbe for ContainerProbe {
    async fn check(
        &self,
        target: &ProbeTarget,
        probe: &Probe,
        timeout: Duration,
    ) -> Result<(), String> {
        match probe {
            Probe::Exec { command } => self.exec(&target.container_id, command, timeout).await,
            Probe::Http { port, path } => {
                let (port, path) = (*port, path.clone());
                in_netns(target.init, timeout, move || http_get(port, &path, timeout)).await
            }
            Probe::Tcp { port } => {
                let port = *port;
                in_netns(target.init, timeout, move || {
                    connect(port, timeout).map(drop)
                })
                .await
            }
        }
    }
}

/// The last non-empty line of a command's output, for the failure message.
fn last_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().chars().take(200).collect())
}

impl ContainerProbe {
    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<(), String> {
        let mut cmd = tokio::process::Command::new(&self.runtime);
        cmd.arg("--root")
            .arg(&self.runtime_root)
            .arg("exec")
            .arg(id)
            .args(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(timeout, cmd.output())
            .await
            .map_err(|_| format!("{command:?} timed out after {timeout:?}"))?
            .map_err(|e| format!("cannot run {}: {e}", self.runtime.display()))?;
        if out.status.success() {
            return Ok(());
        }
        let said = last_line(&out.stderr).or_else(|| last_line(&out.stdout));
        Err(match said {
            Some(line) => format!("{command:?}: {}: {line}", out.status),
            None => format!("{command:?}: {}", out.status),
        })
    }
}

/// Runs `f` on a new thread inside the network namespace of `init`.
async fn in_netns<F>(init: Init, timeout: Duration, f: F) -> Result<(), String>
where
    F: FnOnce() -> Result<(), String> + Send + 'static,
{
    let path = format!("/proc/{}/ns/net", init.pid);
    let ns = std::fs::File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
    // Opened before the check: the namespace is the container's, not a
    // process's that reused its pid.
    if !proc::alive(init.pid, init.start) {
        return Err("the container's process is gone".into());
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("health-probe".into())
        .spawn(move || {
            let r = setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("entering the container's network namespace: {e}"))
                .and_then(|()| f());
            let _ = tx.send(r);
        })
        .map_err(|e| format!("cannot start a probe thread: {e}"))?;
    // The thread's own timeouts end it; this one only bounds the wait.
    match tokio::time::timeout(timeout + Duration::from_secs(1), rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err("the probe thread died".into()),
        Err(_) => Err(format!("no answer in {timeout:?}")),
    }
}

fn connect(port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect to {addr}: {e}"))
}

/// `GET path` on 127.0.0.1:port; 2xx and 3xx pass.
fn http_get(port: u16, path: &str, timeout: Duration) -> Result<(), String> {
    let mut s = connect(port, timeout)?;
    let io = |e: std::io::Error| format!("http 127.0.0.1:{port}{path}: {e}");
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: localhost:{port}\r\nUser-Agent: berth-health\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).map_err(io)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        match s.read(&mut buf).map_err(io)? {
            0 => break,
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    let code = status_code(&head)
        .ok_or_else(|| format!("http 127.0.0.1:{port}{path}: no HTTP status line"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("http 127.0.0.1:{port}{path}: status {code}"))
    }
}

/// The code of an `HTTP/1.x CODE reason` status line.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn status_lines_are_parsed() {
        assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code(b"HTTP/1.0 500 oops\r\nx"), Some(500));
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b""), None);
    }

    fn serve_once(answer: &'static str) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer.as_bytes());
            }
        });
        port
    }

    #[test]
    fn http_passes_on_2xx_and_3xx_only() {
        let t = Duration::from_secs(5);
        let ok = serve_once("HTTP/1.0 200 OK\r\n\r\nfine");
        assert_eq!(http_get(ok, "/health", t), Ok(()));
        let moved = serve_once("HTTP/1.1 302 Found\r\nLocation: /\r\n\r\n");
        assert_eq!(http_get(moved, "health", t), Ok(()));
        let bad = serve_once("HTTP/1.1 503 Unavailable\r\n\r\n");
        let e = http_get(bad, "/", t).unwrap_err();
        assert!(e.contains("status 503"), "{e}");
    }

    #[tokio::test]
    async fn tcp_and_http_run_in_the_containers_network_namespace() {
        // Our own namespace stands in for the container's.
        let me = Init {
            pid: std::process::id() as i32,
            start: proc::start_time(std::process::id() as i32),
        };
        let probe = ContainerProbe {
            runtime: PathBuf::from("/nonexistent"),
            runtime_root: PathBuf::from("/nonexistent"),
        };
        let target = ProbeTarget {
            container_id: "c".into(),
            init: me,
        };
        let t = Duration::from_secs(5);
        let open = serve_once("HTTP/1.0 200 OK\r\n\r\n");
        assert_eq!(
            probe.check(&target, &Probe::Tcp { port: open }, t).await,
            Ok(())
        );
        let http = serve_once("HTTP/1.0 200 OK\r\n\r\n");
        let p = Probe::Http {
            port: http,
            path: "/".into(),
        };
        assert_eq!(probe.check(&target, &p, t).await, Ok(()));
        // A port nobody listens on (bound, then closed).
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = probe
            .check(&target, &Probe::Tcp { port: closed }, t)
            .await
            .unwrap_err();
        assert!(e.contains("connect to 127.0.0.1"), "{e}");
        // Exec through a runtime that is not there fails with a reason.
        let e = probe
            .check(
                &target,
                &Probe::Exec {
                    command: vec!["true".into()],
                },
                t,
            )
            .await
            .unwrap_err();
        assert!(e.contains("cannot run"), "{e}");
    }
}
