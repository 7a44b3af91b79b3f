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

fn node(
    dev: &OwnedFd,
    name: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
) -> Result<(), DeviceError> {
    let err = |source| DeviceError::Node {
        path: Path::new("/dev").join(name),
        source,
    };
    let _ = nix::unistd::unlinkat(dev.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
    mknodat(
        dev.as_fd(),
        name,
        kind,
        Mode::from_bits_truncate(mode),
        makedev(major, minor),
    )
    .map_err(err)?;
    fchmodat(
        dev.as_fd(),
        name,
        Mode::from_bits_truncate(mode),
        FchmodatFlags::NoFollowSymlink,
    )
    .map_err(err)
}

/// Fills `dev` (the opened /dev of the rootfs) with the default nodes and links.
pub fn populate(dev: &OwnedFd) -> Result<(), DeviceError> {
    for (name, major, minor) in DEFAULT_DEVICES {
        node(dev, Path::new(name), SFlag::S_IFCHR, *major, *minor, 0o666)?;
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
        node(
            &dir,
            Path::new(name),
            kind,
            d.major() as u64,
            d.minor() as u64,
            mode,
        )?;
        if d.uid().is_some() || d.gid().is_some() {
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
