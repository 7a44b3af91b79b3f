//! Namespace plumbing: holder processes that keep namespaces alive, and spawning
//! programs inside them.
//!
//! The test process is multithreaded, so it can never unshare or join a mount
//! namespace itself. Everything that needs a namespace is done in the child of a
//! `fork`, between fork and exec (`pre_exec`), where only async-signal-safe calls
//! are allowed: every path and fd is prepared before the fork.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

/// Namespaces a spawned program enters before exec.
#[derive(Clone, Copy)]
pub struct NsFds {
    pub mnt: RawFd,
    pub net: RawFd,
}

/// A `sleep` process whose only job is to keep a set of namespaces alive. The
/// namespaces die with it (nothing is bind-mounted on the machine), and it dies
/// with the test process (PDEATHSIG), so a crashed test leaves nothing behind.
pub struct Holder {
    child: Child,
    mnt: File,
    net: File,
}

/// What a new holder unshares.
pub enum HolderKind<'a> {
    /// A fresh mount + network namespace with private propagation and its own
    /// tmpfs on /run: the sandbox (its network namespace is the fabric).
    Sandbox,
    /// A host inside the sandbox: its own network namespace and its own mount
    /// namespace (a copy of the sandbox's) with a private /run of its own.
    Host { sandbox: &'a Holder },
}

impl Holder {
    pub fn start(kind: HolderKind<'_>) -> Result<Holder> {
        let root = c("/")?;
        let run = c("/run")?;
        let tmpfs = c("tmpfs")?;
        let run_opts = c("mode=755")?;
        let enter_mnt = match &kind {
            HolderKind::Sandbox => None,
            HolderKind::Host { sandbox } => Some(sandbox.mnt.as_raw_fd()),
        };
        let mut cmd = Command::new("sleep");
        cmd.arg("infinity")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the closure only makes raw syscalls on data prepared before the
        // fork (no allocation, no locks).
        unsafe {
            cmd.pre_exec(move || {
                die_with_parent()?;
                if let Some(fd) = enter_mnt {
                    check(libc::setns(fd, libc::CLONE_NEWNS))?;
                }
                check(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWNET))?;
                // Nothing mounted in here may propagate back to the machine.
                check(libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                check(libc::mount(
                    tmpfs.as_ptr(),
                    run.as_ptr(),
                    tmpfs.as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    run_opts.as_ptr().cast(),
                ))?;
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .context("failed to start a namespace holder (sleep)")?;
        let pid = child.id();
        let open = |what: &str| -> Result<File> {
            let path = format!("/proc/{pid}/ns/{what}");
            File::open(&path).with_context(|| format!("failed to open {path}"))
        };
        // The namespaces exist once the child has exec'd; until then /proc shows
        // the parent's. Wait until its mount namespace differs from ours.
        let ours = std::fs::read_link("/proc/self/ns/mnt")?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                .with_context(|| format!("holder {pid} died while starting"))?;
            if theirs != ours && is_sleeping_holder(pid) {
                break;
            }
            if std::time::Instant::now() > deadline {
                bail!("holder {pid} did not enter its namespaces within 5 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Ok(Holder {
            mnt: open("mnt")?,
            net: open("net")?,
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn fds(&self) -> NsFds {
        NsFds {
            mnt: self.mnt.as_raw_fd(),
            net: self.net.as_raw_fd(),
        }
    }

    /// The network namespace, for threads of the test process that want to open
    /// sockets inside it.
    pub fn net_file(&self) -> &File {
        &self.net
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_sleeping_holder(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|comm| comm.trim() == "sleep")
        .unwrap_or(false)
}

/// Makes `cmd` enter `ns` (mount first, then network) and start in `cwd`, and die
/// with the test process.
pub fn enter_before_exec(cmd: &mut Command, ns: NsFds, cwd: &Path) -> Result<()> {
    let cwd = c(cwd.to_str().context("working directory is not UTF-8")?)?;
    // SAFETY: raw syscalls on fds and strings prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            die_with_parent()?;
            check(libc::setns(ns.mnt, libc::CLONE_NEWNS))?;
            check(libc::setns(ns.net, libc::CLONE_NEWNET))?;
            // setns(CLONE_NEWNS) moved us to the namespace's root directory.
            check(libc::chdir(cwd.as_ptr()))?;
            Ok(())
        });
    }
    Ok(())
}

/// Runs `f` on a new thread of this process that has joined `net`, and returns its
/// result. Sockets opened there stay in that namespace after the thread ends.
pub fn in_netns<F, R>(net: &File, f: F) -> Result<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let net = net.try_clone().context("failed to duplicate a netns fd")?;
    std::thread::spawn(move || -> Result<R> {
        // SAFETY: setns on a valid fd; a network namespace is per thread.
        check(unsafe { libc::setns(net.as_raw_fd(), libc::CLONE_NEWNET) })
            .context("failed to join a host's network namespace")?;
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread inside the network namespace panicked"))?
}

fn die_with_parent() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) })
}

fn check(ret: libc::c_int) -> std::io::Result<()> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn c(s: &str) -> Result<CString> {
    CString::new(s).with_context(|| format!("{s:?} contains a NUL byte"))
}
