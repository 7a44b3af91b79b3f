//! Owners, modes, times and xattrs of unpacked entries, applied through file
//! descriptors or by name without following symlinks.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::fcntl::AtFlags;
use nix::sys::stat::{Mode, UtimensatFlags, fchmod, futimens, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchown, fchownat};

use super::unpack::{SafePath, UnpackError, io_err};

/// Owner, mode, mtime and xattrs of an entry.
pub(super) struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    pub(super) mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    pub(super) fn of<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, UnpackError> {
        let h = entry.header();
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let bad = |what: &'static str| {
            let path = path.clone();
            move |e: io::Error| UnpackError::Io {
                path,
                op: what,
                source: e,
            }
        };
        let old = h.as_old();
        let mut uid = numeric(&old.uid, h.uid()).map_err(bad("read the uid"))?;
        let mut gid = numeric(&old.gid, h.gid()).map_err(bad("read the gid"))?;
        let mode = numeric(&old.mode, h.mode().map(u64::from)).map_err(bad("read the mode"))?;
        let mode = (mode & 0o7777) as u32;
        let mtime = numeric(&old.mtime, h.mtime()).map_err(bad("read the mtime"))? as i64;
        let mut xattrs = Vec::new();
        if let Some(exts) = entry.pax_extensions().map_err(UnpackError::Tar)? {
            for ext in exts {
                let ext = ext.map_err(UnpackError::Tar)?;
                let Ok(key) = ext.key() else { continue };
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    // A layer must not smuggle overlayfs metadata (opaque, redirect).
                    if name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.") {
                        continue;
                    }
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                } else if key == "uid" {
                    if let Some(v) = ext.value().ok().and_then(|v| v.parse().ok()) {
                        uid = v;
                    }
                } else if key == "gid"
                    && let Some(v) = ext.value().ok().and_then(|v| v.parse().ok())
                {
                    gid = v;
                }
            }
        }
        let to_u32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Ok(Meta {
            uid: to_u32(uid),
            gid: to_u32(gid),
            mode,
            mtime,
            xattrs,
        })
    }
}

/// Like Go's archive/tar (and so containerd and Docker): an empty numeric field is 0.
pub(super) fn numeric(raw: &[u8], parsed: io::Result<u64>) -> io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        other => other,
    }
}

/// Sets an xattr on an open file or directory.
pub(super) fn set_xattr_fd(fd: &impl AsFd, name: &str, value: &[u8]) -> io::Result<()> {
    let cname = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: valid fd, NUL-terminated name, value pointer and length from a slice.
    os_result(unsafe {
        libc::fsetxattr(
            fd.as_fd().as_raw_fd(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// Sets an xattr on `name` in `parent` without following it if it is a symlink.
pub(super) fn set_xattr_nofollow(
    parent: &OwnedFd,
    name: &OsStr,
    key: &str,
    value: &[u8],
) -> io::Result<()> {
    let path = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd())).join(name);
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let ckey = std::ffi::CString::new(key).map_err(io::Error::other)?;
    // SAFETY: NUL-terminated path and name, value pointer and length from a slice.
    os_result(unsafe {
        libc::lsetxattr(
            cpath.as_ptr(),
            ckey.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

pub(super) fn os_result(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Owner, then mode (chown clears set-id bits), then xattrs and mtime, on an open fd.
pub(super) fn apply_fd_meta(
    fd: impl AsFd,
    meta: &Meta,
    path: &SafePath,
) -> Result<(), UnpackError> {
    let fd = fd.as_fd();
    fchown(
        fd,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
    )
    .map_err(io_err(path, "chown"))?;
    fchmod(fd, Mode::from_bits_truncate(meta.mode)).map_err(io_err(path, "chmod"))?;
    for (k, v) in &meta.xattrs {
        set_xattr_fd(&fd, k, v).map_err(|source| UnpackError::Io {
            path: path.display.clone(),
            op: "set an xattr",
            source,
        })?;
    }
    let t = TimeSpec::new(meta.mtime, 0);
    futimens(fd, &t, &t).map_err(io_err(path, "set the mtime"))?;
    Ok(())
}

/// The same for a symlink or device node, by name, never following it.
pub(super) fn apply_nofollow_meta(
    parent: &OwnedFd,
    name: &OsStr,
    meta: &Meta,
    path: &SafePath,
    chmod: bool,
) -> Result<(), UnpackError> {
    fchownat(
        parent,
        name,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(io_err(path, "chown"))?;
    if chmod {
        // A node we just created in a directory we hold: not a symlink.
        let through_fd = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd())).join(name);
        std::fs::set_permissions(
            &through_fd,
            std::os::unix::fs::PermissionsExt::from_mode(meta.mode),
        )
        .map_err(|source| UnpackError::Io {
            path: path.display.clone(),
            op: "chmod",
            source,
        })?;
    }
    for (k, v) in &meta.xattrs {
        set_xattr_nofollow(parent, name, k, v).map_err(|source| UnpackError::Io {
            path: path.display.clone(),
            op: "set an xattr",
            source,
        })?;
    }
    let t = TimeSpec::new(meta.mtime, 0);
    utimensat(parent, name, &t, &t, UtimensatFlags::NoFollowSymlink)
        .map_err(io_err(path, "set the mtime"))?;
    Ok(())
}
