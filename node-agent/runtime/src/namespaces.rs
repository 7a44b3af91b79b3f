//! Which namespaces a container gets: new ones are unshared, ones with a path
//! are joined (the agent pre-creates network namespaces and passes their path).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("cannot open {kind} namespace {}: {source}", path.display())]
    Open {
        kind: &'static str,
        path: PathBuf,
        source: nix::Error,
    },
    #[error("failed to join {kind} namespace {}: {source}", path.display())]
    Join {
        kind: &'static str,
        path: PathBuf,
        source: nix::Error,
    },
    #[error("failed to create namespaces ({flags:?}): {source}")]
    Unshare {
        flags: CloneFlags,
        source: nix::Error,
    },
    #[error("{0} namespaces are not supported")]
    Unsupported(&'static str),
}

type Result<T> = std::result::Result<T, NamespaceError>;

/// A namespace to join: its kind and an open fd of it.
#[derive(Debug)]
pub struct Join {
    pub kind: LinuxNamespaceType,
    pub path: PathBuf,
    pub fd: OwnedFd,
}

/// What to do with namespaces, split into the pid part (done before the fork of
/// init, since it applies to children) and the rest (done by init itself).
#[derive(Debug)]
pub struct Plan {
    pub new_pid: bool,
    pub join_pid: Option<Join>,
    /// New namespaces init unshares (mount, uts, ipc, net, cgroup).
    pub unshare: CloneFlags,
    /// Existing namespaces init joins, in this order, before unsharing.
    pub join: Vec<Join>,
}

pub fn name(kind: LinuxNamespaceType) -> &'static str {
    match kind {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

fn flag(kind: LinuxNamespaceType) -> Result<CloneFlags> {
    Ok(match kind {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::User => return Err(NamespaceError::Unsupported("user")),
        LinuxNamespaceType::Time => return Err(NamespaceError::Unsupported("time")),
    })
}

impl Plan {
    /// Opens every namespace to join now, so a missing path fails create early.
    pub fn new(namespaces: &[LinuxNamespace]) -> Result<Plan> {
        let mut plan = Plan {
            new_pid: false,
            join_pid: None,
            unshare: CloneFlags::empty(),
            join: Vec::new(),
        };
        for ns in namespaces {
            let kind = ns.typ();
            let flag = flag(kind)?;
            match ns.path() {
                Some(path) if !path.as_os_str().is_empty() => {
                    let fd = open(
                        path.as_path(),
                        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|source| NamespaceError::Open {
                        kind: name(kind),
                        path: path.clone(),
                        source,
                    })?;
                    let join = Join {
                        kind,
                        path: path.clone(),
                        fd,
                    };
                    if kind == LinuxNamespaceType::Pid {
                        plan.join_pid = Some(join);
                    } else {
                        plan.join.push(join);
                    }
                }
                _ if kind == LinuxNamespaceType::Pid => plan.new_pid = true,
                _ => plan.unshare |= flag,
            }
        }
        // Join the mount namespace last: the other paths are host paths.
        plan.join
            .sort_by_key(|j| j.kind == LinuxNamespaceType::Mount);
        Ok(plan)
    }

    pub fn new_mount_ns(&self) -> bool {
        self.unshare.contains(CloneFlags::CLONE_NEWNS)
    }

    pub fn joins_mount_ns(&self) -> bool {
        self.join
            .iter()
            .any(|j| j.kind == LinuxNamespaceType::Mount)
    }

    pub fn new_uts(&self) -> bool {
        self.unshare.contains(CloneFlags::CLONE_NEWUTS)
    }

    /// Before forking init: the pid namespace its children-to-be will live in.
    pub fn enter_pid(&self) -> Result<()> {
        if let Some(j) = &self.join_pid {
            setns(&j.fd, CloneFlags::CLONE_NEWPID).map_err(|source| NamespaceError::Join {
                kind: "pid",
                path: j.path.clone(),
                source,
            })?;
        } else if self.new_pid {
            unshare(CloneFlags::CLONE_NEWPID).map_err(|source| NamespaceError::Unshare {
                flags: CloneFlags::CLONE_NEWPID,
                source,
            })?;
        }
        Ok(())
    }

    /// In init: join the given namespaces, then unshare the new ones except the
    /// cgroup namespace, which waits until init is in its cgroup.
    pub fn enter_rest(&self) -> Result<()> {
        for j in &self.join {
            setns(&j.fd, CloneFlags::empty()).map_err(|source| NamespaceError::Join {
                kind: name(j.kind),
                path: j.path.clone(),
                source,
            })?;
        }
        let flags = self.unshare - CloneFlags::CLONE_NEWCGROUP;
        if !flags.is_empty() {
            unshare(flags).map_err(|source| NamespaceError::Unshare { flags, source })?;
        }
        Ok(())
    }

    pub fn new_cgroup_ns(&self) -> bool {
        self.unshare.contains(CloneFlags::CLONE_NEWCGROUP)
    }

    /// In init, once it is in its cgroup.
    pub fn enter_cgroup_ns(&self) -> Result<()> {
        if self.new_cgroup_ns() {
            unshare(CloneFlags::CLONE_NEWCGROUP).map_err(|source| NamespaceError::Unshare {
                flags: CloneFlags::CLONE_NEWCGROUP,
                source,
            })?;
        }
        Ok(())
    }
}
