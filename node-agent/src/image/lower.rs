//! Looking into lower snapshots without following symlinks: what a layer below
//! says about a directory path, for directories a layer only implies.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::sys::stat::{Mode, fchmod};
use nix::unistd::{Gid, Uid, fchown};

use super::unpack::open_dir_at;

/// Opens `rel` below `root` as a directory, never following a symlink; `None`
/// if a component is missing or not a directory.
fn open_dir_below(root: &Path, rel: &Path) -> io::Result<Option<OwnedFd>> {
    let mut cur = open_dir_at(None, root.as_os_str())?;
    for c in rel.components() {
        let Component::Normal(name) = c else {
            return Ok(None);
        };
        match open_dir_at(Some(&cur), name) {
            Ok(fd) => cur = fd,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Some(cur))
}

/// What a lower layer says about a directory path.
pub enum LowerDir {
    /// It has the directory: (uid, gid, mode).
    Found(u32, u32, u32),
    /// It hides whatever is below it (a whiteout, a file, a symlink, an opaque parent).
    Hidden,
    /// It says nothing about the path.
    Absent,
}

/// Looks up `rel` in the snapshot `root` without following symlinks.
pub fn lower_dir(root: &Path, rel: &Path) -> io::Result<LowerDir> {
    if let Some(fd) = open_dir_below(root, rel)? {
        let st = nix::sys::stat::fstat(&fd).map_err(io::Error::from)?;
        return Ok(LowerDir::Found(st.st_uid, st.st_gid, st.st_mode & 0o7777));
    }
    // Missing, or shadowed by something that is not a directory?
    let mut prefix = PathBuf::new();
    for c in rel.components() {
        let Component::Normal(name) = c else {
            return Ok(LowerDir::Absent);
        };
        let Some(parent) = open_dir_below(root, &prefix)? else {
            return Ok(LowerDir::Absent);
        };
        if is_opaque(&parent) {
            return Ok(LowerDir::Hidden);
        }
        match nix::sys::stat::fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & libc::S_IFMT != libc::S_IFDIR => return Ok(LowerDir::Hidden),
            Ok(_) => {}
            Err(_) => return Ok(LowerDir::Absent),
        }
        prefix.push(name);
    }
    Ok(LowerDir::Absent)
}

fn is_opaque(dir: &OwnedFd) -> bool {
    let mut v = [0u8; 1];
    // SAFETY: valid fd, NUL-terminated name, buffer and length from a slice.
    let n = unsafe {
        libc::fgetxattr(
            dir.as_raw_fd(),
            c"trusted.overlay.opaque".as_ptr(),
            v.as_mut_ptr().cast(),
            v.len(),
        )
    };
    n == 1 && v[0] == b'y'
}

/// Gives the directory `rel` below `root` this owner and mode.
pub fn set_dir_owner_mode(
    root: &Path,
    rel: &Path,
    uid: u32,
    gid: u32,
    mode: u32,
) -> io::Result<()> {
    let Some(fd) = open_dir_below(root, rel)? else {
        return Ok(());
    };
    fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(io::Error::from)?;
    fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(io::Error::from)
}
