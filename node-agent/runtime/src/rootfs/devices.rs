//! The nodes and links of a fresh /dev tmpfs.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, fchmodat, makedev, mknodat};
use nix::unistd::{Gid, Uid, fchownat, symlinkat};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::resolve;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("failed to create device {}: {source}", path.display())]
    Node { path: PathBuf, source: Errno },
    #[error("failed to create link {}: {source}", path.display())]
    Link { path: PathBuf, source: Errno },
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
}

/// name, major, minor: what every container's /dev holds.
const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const LINKS: &[(&str, &str)] = &[
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("pts/ptmx", "ptmx"),
];

/// Makes the device node `name` in `dev`; where mknod is refused, binds the
/// host's node `host` instead.
fn node(
    dev: &OwnedFd,
    name: &Path,
    kind: SFlag,
    (major, minor): (u64, u64),
    mode: u32,
    host: Option<&Path>,
) -> Result<Made, DeviceError> {
    let err = |source| DeviceError::Node {
        path: Path::new("/dev").join(name),
        source,
    };
    let _ = nix::unistd::unlinkat(dev.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
    match mknodat(
        dev.as_fd(),
        name,
        kind,
        Mode::from_bits_truncate(mode),
        makedev(major, minor),
    ) {
        Ok(()) => {}
        // In a user namespace nobody may make device nodes: bind the host's
        // (as runc does), which keeps the host's owner and mode (the node is
        // the host's: neither chmod nor chown it).
        Err(Errno::EPERM) => match host {
            Some(host) => {
                bind_host_device(dev, name, host).map_err(err)?;
                return Ok(Made::Bound);
            }
            None => return Err(err(Errno::EPERM)),
        },
        Err(e) => return Err(err(e)),
    }
    fchmodat(
        dev.as_fd(),
        name,
        Mode::from_bits_truncate(mode),
        FchmodatFlags::NoFollowSymlink,
    )
    .map_err(err)?;
    Ok(Made::Node)
}

/// How a device got into the container.
#[derive(Debug, PartialEq, Eq)]
enum Made {
    Node,
    Bound,
}

/// Binds the host's device `host` onto a new empty file `name` in `dev`.
fn bind_host_device(dev: &OwnedFd, name: &Path, host: &Path) -> Result<(), Errno> {
    let target = nix::fcntl::openat(
        dev.as_fd(),
        name,
        nix::fcntl::OFlag::O_CREAT
            | nix::fcntl::OFlag::O_WRONLY
            | nix::fcntl::OFlag::O_CLOEXEC
            | nix::fcntl::OFlag::O_NOFOLLOW,
        Mode::from_bits_truncate(0o644),
    )?;
    nix::mount::mount(
        Some(host),
        &resolve::fd_path(&target),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
}

/// Fills `dev` (the opened /dev of the rootfs) with the default nodes and links.
pub fn populate(dev: &OwnedFd) -> Result<(), DeviceError> {
    for (name, major, minor) in DEFAULT_DEVICES {
        let host = Path::new("/dev").join(name);
        node(
            dev,
            Path::new(name),
            SFlag::S_IFCHR,
            (*major, *minor),
            0o666,
            Some(&host),
        )?;
    }
    for (target, name) in LINKS {
        match symlinkat(*target, dev.as_fd(), *name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(source) => {
                return Err(DeviceError::Link {
                    path: Path::new("/dev").join(name),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Creates the spec's `linux.devices` below the rootfs.
pub fn create_spec_devices(root: &OwnedFd, devices: &[LinuxDevice]) -> Result<(), DeviceError> {
    for d in devices {
        let path = d.path();
        let kind = match d.typ() {
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        };
        let parent = path.parent().unwrap_or(Path::new("/"));
        let Some(name) = path.file_name() else {
            continue;
        };
        // An O_PATH fd serves as the directory of the *at calls.
        let dir = resolve::open_or_create(root, parent, resolve::Kind::Dir)?;
        let mode = d.file_mode().unwrap_or(0o666);
        // The same path on the host, where a user namespace needs a bind.
        let host = (kind != SFlag::S_IFIFO).then_some(path.as_path());
        let made = node(
            &dir,
            Path::new(name),
            kind,
            (d.major() as u64, d.minor() as u64),
            mode,
            host,
        )?;
        if made == Made::Node && (d.uid().is_some() || d.gid().is_some()) {
            fchownat(
                dir.as_fd(),
                Path::new(name),
                d.uid().map(Uid::from_raw),
                d.gid().map(Gid::from_raw),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|source| DeviceError::Node {
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(())
}
