//! Containers with a user namespace (new, with the spec's uid and gid
//! mappings, or joined by path). Every other namespace must then belong to
//! it (a new pid namespace owned by the host's user namespace would refuse
//! the container's /proc mount), and namespaces given by path must be joined
//! while the process is still the host's root. So, as runc's nsexec does, a
//! short-lived intermediate process makes them in order and forks init:
//!
//! 1. the parent (the monitor, or the runtime under `run`) becomes a child
//!    subreaper and forks the intermediate;
//! 2. the intermediate joins the namespaces given by path (the mount one
//!    last), then joins the user namespace, or unshares a new one and waits
//!    while the parent writes its `uid_map` and `gid_map` (as the host's root,
//!    directly; `setgroups` stays `allow`, so the container's root may set
//!    supplementary groups);
//! 3. it becomes root of the user namespace (uid and gid 0 must be mapped),
//!    unshares the new namespaces (pid among them; not the cgroup one, which
//!    init makes once it is in its cgroup), forks init, reports init's pid and
//!    exits;
//! 4. init is reparented to the parent, which reaps the intermediate, stops
//!    being a subreaper and goes on as without a user namespace.
//!
//! The container's cgroup directories are given to the container's root
//! (the host ids of uid and gid 0), as systemd delegates a subtree: the
//! directory and its process files, not its limits.

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork};
use oci_spec::runtime::LinuxIdMapping;

use crate::namespaces::{self, Plan};
use crate::process::setup::{self, Context, exit};
use crate::sync::{self, Msg};

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("failed to write {}: {source}", path.display())]
    Map {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to give the cgroup {} to the container's root ({uid}:{gid}): {source}", path.display())]
    Chown {
        path: PathBuf,
        uid: u32,
        gid: u32,
        source: std::io::Error,
    },
}

/// What the intermediate tells its parent over their pipe.
const TAG_MAP_ME: u8 = b'u';
const TAG_PID: u8 = b'p';
/// What the parent answers once the maps are written.
const TAG_MAPPED: u8 = b'm';

/// The spec's mappings, as `/proc/PID/{uid,gid}_map` take them.
pub struct Mappings {
    pub uid: Vec<LinuxIdMapping>,
    pub gid: Vec<LinuxIdMapping>,
}

impl Mappings {
    pub fn from_spec(linux: &oci_spec::runtime::Linux) -> Mappings {
        Mappings {
            uid: linux.uid_mappings().clone().unwrap_or_default(),
            gid: linux.gid_mappings().clone().unwrap_or_default(),
        }
    }

    /// The host id container id 0 maps to, per kind.
    pub fn root(&self) -> Option<(u32, u32)> {
        let host = |maps: &[LinuxIdMapping]| {
            maps.iter()
                .find(|m| m.container_id() == 0 && m.size() > 0)
                .map(|m| m.host_id())
        };
        Some((host(&self.uid)?, host(&self.gid)?))
    }
}

/// The text of a map file: one `container host size` line per mapping.
pub fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Writes the maps of the (new) user namespace of `pid`.
fn write_maps(pid: Pid, maps: &Mappings) -> Result<(), UsernsError> {
    for (file, list) in [("uid_map", &maps.uid), ("gid_map", &maps.gid)] {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        // One write: the kernel takes a map file's whole content at once.
        std::fs::write(&path, map_text(list))
            .map_err(|source| UsernsError::Map { path, source })?;
    }
    Ok(())
}

/// Gives the container's cgroup directories (and the files that move
/// processes and enable controllers) to the host ids of its root.
pub fn delegate_cgroup(dirs: &[PathBuf], (uid, gid): (u32, u32)) -> Result<(), UsernsError> {
    let files = [
        "",
        "cgroup.procs",
        "tasks",
        "cgroup.threads",
        "cgroup.subtree_control",
    ];
    for dir in dirs {
        for file in files {
            let path = if file.is_empty() {
                dir.clone()
            } else {
                dir.join(file)
            };
            if !path.exists() {
                continue;
            }
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(|source| {
                UsernsError::Chown {
                    path: path.clone(),
                    uid,
                    gid,
                    source,
                }
            })?;
        }
    }
    Ok(())
}

/// Why spawning init failed: a message for the caller to report, or `None`
/// when the intermediate reported it on the sync socket itself.
pub type SpawnError = Option<String>;

/// Forks init through the intermediate (module docs). Returns init's host
/// pid in the parent; `close_in_child` are the parent's fds the container's
/// processes must not keep.
pub fn spawn_init(
    ctx: Context,
    maps: &Mappings,
    close_in_child: &[RawFd],
) -> Result<Pid, SpawnError> {
    let fail = |what: &str, e: nix::Error| Some(format!("user namespace: failed to {what}: {e}"));
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let (up_r, up_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail("make a pipe", e))?;
    let (down_r, down_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail("make a pipe", e))?;
    // SAFETY: this process is single-threaded.
    let stage = match unsafe { fork() } {
        Err(e) => return Err(fail("fork", e)),
        Ok(ForkResult::Child) => {
            for fd in close_in_child {
                // SAFETY: closing the parent's fds in this copy of the process.
                unsafe {
                    libc::close(*fd);
                }
            }
            drop(up_r);
            drop(down_w);
            intermediate(ctx, up_w, down_r)
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    drop(ctx);
    drop(up_w);
    drop(down_r);
    let result = parent_side(stage, maps, &up_r, &down_w);
    drop(down_w);
    if result.is_err() {
        let _ = nix::sys::signal::kill(stage, nix::sys::signal::Signal::SIGKILL);
    }
    let _ = waitpid(stage, None);
    // Init is our child now; later orphans of the container go elsewhere.
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
    }
    result
}

fn parent_side(
    stage: Pid,
    maps: &Mappings,
    up: &OwnedFd,
    down: &OwnedFd,
) -> Result<Pid, SpawnError> {
    loop {
        let mut tag = [0u8; 1];
        if read_exact(up, &mut tag).is_err() {
            // The intermediate ended without a pid: it reported why.
            return Err(None);
        }
        match tag[0] {
            TAG_MAP_ME => {
                write_maps(stage, maps).map_err(|e| Some(e.to_string()))?;
                nix::unistd::write(down, &[TAG_MAPPED])
                    .map_err(|e| Some(format!("user namespace: {e}")))?;
            }
            TAG_PID => {
                let mut pid = [0u8; 4];
                read_exact(up, &mut pid).map_err(|_| None::<String>)?;
                return Ok(Pid::from_raw(i32::from_le_bytes(pid)));
            }
            _ => return Err(Some("user namespace: garbled report".into())),
        }
    }
}

fn read_exact(fd: &OwnedFd, buf: &mut [u8]) -> Result<(), ()> {
    let mut got = 0;
    while got < buf.len() {
        match nix::unistd::read(fd, &mut buf[got..]) {
            Ok(0) => return Err(()),
            Ok(n) => got += n,
            Err(nix::Error::EINTR) => continue,
            Err(_) => return Err(()),
        }
    }
    Ok(())
}

/// The intermediate's body (module docs, steps 2 and 3); never returns.
fn intermediate(mut ctx: Context, up: OwnedFd, down: OwnedFd) -> ! {
    match enter(ctx.plan, &up, &down) {
        Ok(()) => {}
        Err(message) => {
            let _ = sync::send(&ctx.sync, &Msg::Error(message));
            exit(1);
        }
    }
    ctx.namespaces_entered = true;
    // SAFETY: this process is single-threaded.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(up);
            drop(down);
            setup::run_init(ctx)
        }
        Ok(ForkResult::Parent { child }) => {
            let mut report = vec![TAG_PID];
            report.extend_from_slice(&child.as_raw().to_le_bytes());
            let _ = nix::unistd::write(&up, &report);
            exit(0)
        }
        Err(e) => {
            let _ = sync::send(&ctx.sync, &Msg::Error(format!("fork init: {e}")));
            exit(1)
        }
    }
}

fn enter(plan: &Plan, up: &OwnedFd, down: &OwnedFd) -> Result<(), String> {
    // As the host's root: every namespace given by path but the user one.
    for j in plan.join.iter().chain(plan.join_pid.as_ref()) {
        setns(&j.fd, CloneFlags::empty()).map_err(|e| {
            format!(
                "failed to join {} namespace {}: {e}",
                namespaces::name(j.kind),
                j.path.display()
            )
        })?;
    }
    if let Some(j) = &plan.join_user {
        setns(&j.fd, CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("failed to join user namespace {}: {e}", j.path.display()))?;
    } else {
        unshare(CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("failed to create the user namespace: {e}"))?;
        nix::unistd::write(up, &[TAG_MAP_ME]).map_err(|e| format!("user namespace: {e}"))?;
        let mut answer = [0u8; 1];
        if read_exact(down, &mut answer).is_err() || answer[0] != TAG_MAPPED {
            return Err("user namespace: the runtime did not write the id maps".into());
        }
    }
    become_root()?;
    let mut flags = plan.unshare - CloneFlags::CLONE_NEWCGROUP;
    if plan.new_pid {
        flags |= CloneFlags::CLONE_NEWPID;
    }
    if !flags.is_empty() {
        unshare(flags).map_err(|e| format!("failed to create namespaces ({flags:?}): {e}"))?;
    }
    Ok(())
}

/// Uid and gid 0 of the user namespace, no supplementary groups.
fn become_root() -> Result<(), String> {
    let root_err =
        |e| format!("cannot become root of the user namespace (are uid 0 and gid 0 mapped?): {e}");
    nix::unistd::setgroups(&[]).map_err(root_err)?;
    let (gid, uid) = (Gid::from_raw(0), Uid::from_raw(0));
    nix::unistd::setresgid(gid, gid, gid).map_err(root_err)?;
    nix::unistd::setresuid(uid, uid, uid).map_err(root_err)
}

/// True when `path` holds a user namespace other than ours (for exec).
pub fn differs_from_own(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        std::fs::metadata("/proc/self/ns/user"),
    ) {
        (Ok(a), Ok(b)) => a.ino() != b.ino() || a.dev() != b.dev(),
        _ => false,
    }
}

/// Joins the user namespace `fd` (exec's child, after its other joins).
pub fn join(fd: &impl AsFd) -> nix::Result<()> {
    setns(fd, CloneFlags::CLONE_NEWUSER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxIdMappingBuilder;

    fn map(container: u32, host: u32, size: u32) -> LinuxIdMapping {
        LinuxIdMappingBuilder::default()
            .container_id(container)
            .host_id(host)
            .size(size)
            .build()
            .expect("mapping")
    }

    #[test]
    fn maps_are_written_as_the_kernel_reads_them() {
        assert_eq!(
            map_text(&[map(0, 100_000, 1000), map(1000, 1000, 1)]),
            "0 100000 1000\n1000 1000 1\n"
        );
    }

    #[test]
    fn the_root_of_the_container_is_found_in_the_maps() {
        let maps = Mappings {
            uid: vec![map(1, 5000, 10), map(0, 1000, 1)],
            gid: vec![map(0, 2000, 3000)],
        };
        assert_eq!(maps.root(), Some((1000, 2000)));
        let unmapped = Mappings {
            uid: vec![map(1, 5000, 10)],
            gid: vec![map(0, 2000, 3000)],
        };
        assert_eq!(unmapped.root(), None);
    }
}
