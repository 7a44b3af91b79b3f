//! Which namespaces a container gets: new ones are unshared, ones with a path
//! are joined (the agent pre-creates network namespaces and passes their path).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

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
    #[error("{} is a namespace of type {found}, not the {kind} namespace the spec says", path.display())]
    WrongType {
        kind: &'static str,
        path: PathBuf,
        found: String,
    },
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
    /// A new user namespace (made by `userns`, with the spec's mappings).
    pub new_user: bool,
    /// An existing user namespace to join (by `userns`, after the others).
    pub join_user: Option<Join>,
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
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Time => return Err(NamespaceError::Unsupported("time")),
    })
}

/// NS_GET_NSTYPE (linux/nsfs.h): the CLONE_NEW* type of a namespace fd.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// A namespace path must be a namespace of the kind the spec gives it (the
/// runtime spec's MUST): `/proc/self/ns/ipc` as the cgroup namespace is refused.
fn check_type(fd: &OwnedFd, kind: LinuxNamespaceType, want: CloneFlags, path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: an ioctl without arguments on an fd this function borrows.
    let found = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    if found < 0 {
        return Err(NamespaceError::WrongType {
            kind: name(kind),
            path: path.to_path_buf(),
            found: format!("non-namespace file ({})", std::io::Error::last_os_error()),
        });
    }
    let found = CloneFlags::from_bits_truncate(found);
    if found == want {
        return Ok(());
    }
    let found_name = [
        (CloneFlags::CLONE_NEWNS, "mount"),
        (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
        (CloneFlags::CLONE_NEWUTS, "uts"),
        (CloneFlags::CLONE_NEWIPC, "ipc"),
        (CloneFlags::CLONE_NEWUSER, "user"),
        (CloneFlags::CLONE_NEWPID, "pid"),
        (CloneFlags::CLONE_NEWNET, "network"),
    ]
    .iter()
    .find(|(f, _)| *f == found)
    .map_or("another", |(_, n)| n);
    Err(NamespaceError::WrongType {
        kind: name(kind),
        path: path.to_path_buf(),
        found: found_name.to_string(),
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
            new_user: false,
            join_user: None,
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
                    check_type(&fd, kind, flag, path)?;
                    let join = Join {
                        kind,
                        path: path.clone(),
                        fd,
                    };
                    match kind {
                        LinuxNamespaceType::Pid => plan.join_pid = Some(join),
                        LinuxNamespaceType::User => plan.join_user = Some(join),
                        _ => plan.join.push(join),
                    }
                }
                _ if kind == LinuxNamespaceType::Pid => plan.new_pid = true,
                _ if kind == LinuxNamespaceType::User => plan.new_user = true,
                _ => plan.unshare |= flag,
            }
        }
        // Join the mount namespace last: the other paths are host paths.
        plan.join
            .sort_by_key(|j| j.kind == LinuxNamespaceType::Mount);
        Ok(plan)
    }

    /// A user namespace, new or joined: `userns` makes the namespaces.
    pub fn has_user(&self) -> bool {
        self.new_user || self.join_user.is_some()
    }

    pub fn joins_mount_ns(&self) -> bool {
        self.join
            .iter()
            .any(|j| j.kind == LinuxNamespaceType::Mount)
    }

    pub fn new_mount_ns(&self) -> bool {
        self.unshare.contains(CloneFlags::CLONE_NEWNS)
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
            // The type again: the kernel refuses a namespace of another kind.
            setns(&j.fd, flag(j.kind)?).map_err(|source| NamespaceError::Join {
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

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespaceBuilder;

    fn joining(kind: LinuxNamespaceType, path: &str) -> LinuxNamespace {
        LinuxNamespaceBuilder::default()
            .typ(kind)
            .path(PathBuf::from(path))
            .build()
            .expect("namespace")
    }

    #[test]
    fn a_namespace_path_must_be_of_the_kind_the_spec_says() {
        let plan = Plan::new(&[joining(LinuxNamespaceType::Ipc, "/proc/self/ns/ipc")])
            .expect("the right kind");
        assert_eq!(plan.join.len(), 1);
        let err = Plan::new(&[joining(LinuxNamespaceType::Cgroup, "/proc/self/ns/ipc")])
            .expect_err("ipc is not cgroup");
        assert_eq!(
            err.to_string(),
            "/proc/self/ns/ipc is a namespace of type ipc, not the cgroup namespace the spec says"
        );
        let err = Plan::new(&[joining(LinuxNamespaceType::Network, "/proc/self/status")])
            .expect_err("not a namespace");
        assert!(err.to_string().contains("non-namespace file"), "{err}");
    }
}
