//! Safe unpacking of one layer tar into an empty snapshot directory.
//!
//! Every path is resolved component by component from a directory fd with
//! `O_NOFOLLOW`, so no entry can leave the snapshot: absolute paths and `..` are
//! refused, a symlink or a file in the middle of a path is refused, a hard link
//! must point to a file of the same layer. OCI whiteouts become overlayfs
//! whiteouts (`.wh.NAME` → a 0/0 character device, `.wh..wh..opq` → the
//! `trusted.overlay.opaque` xattr). Owners, modes, xattrs, hard links and mtimes
//! are kept. The uncompressed stream is hashed on the way: the result is the DiffID.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, futimens, makedev, mkdirat, mknodat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, symlinkat, unlinkat};
use sha2::{Digest as _, Sha256};
use tar::EntryType;

use super::digest::Digest;
use super::fsmeta::{Meta, apply_fd_meta, apply_nofollow_meta, set_xattr_fd};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("entry {path:?} escapes the snapshot: {reason}")]
    Escape { path: String, reason: &'static str },
    #[error("entry {path:?}: unsupported tar entry type {kind}")]
    Unsupported { path: String, kind: String },
    #[error("entry {path:?}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("reading the layer tar: {0}")]
    Tar(#[source] io::Error),
}

/// What unpacking produced.
#[derive(Debug)]
pub struct Unpacked {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    pub entries: u64,
    /// Directories the layer has files in but no entry for: made 0755 root, they
    /// take owner and mode from the layers below (`copy_dir_owner_mode`).
    pub implicit_dirs: Vec<PathBuf>,
}

/// Decompresses by magic number: gzip, zstd or a plain tar.
pub fn decompressed(mut blob: impl Read + Send + 'static) -> io::Result<Box<dyn Read + Send>> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        let n = blob.read(&mut magic[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let head = io::Cursor::new(magic[..got].to_vec());
    let whole = head.chain(blob);
    let reader = io::BufReader::with_capacity(256 << 10, whole);
    Ok(match &magic[..got] {
        [0x1f, 0x8b, ..] => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
        _ => Box::new(reader),
    })
}

/// Hashes everything read through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks the uncompressed tar `tar` into `dest` (an existing, empty directory).
pub fn unpack_layer(tar: impl Read, dest: &Path) -> Result<Unpacked, UnpackError> {
    let root = open_dir_at(None, dest.as_os_str()).map_err(|source| UnpackError::Io {
        path: dest.display().to_string(),
        op: "open the snapshot directory",
        source,
    })?;
    let mut archive = tar::Archive::new(Hashing {
        inner: tar,
        hasher: Sha256::new(),
    });
    let mut state = State {
        root,
        cached: None,
        dirs: Vec::new(),
        implicit: Vec::new(),
    };
    let mut entries = 0u64;
    for entry in archive.entries().map_err(UnpackError::Tar)? {
        let mut entry = entry.map_err(UnpackError::Tar)?;
        state.entry(&mut entry)?;
        entries += 1;
    }
    let explicit: std::collections::HashSet<Vec<OsString>> =
        state.dirs.iter().map(|(p, _)| p.clone()).collect();
    let implicit_dirs = state
        .implicit
        .iter()
        .filter(|p| !explicit.contains(*p))
        .map(|p| p.iter().collect::<PathBuf>())
        .collect();
    state.finish_dirs()?;
    // The DiffID covers the whole stream, including the end-of-archive blocks.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(UnpackError::Tar)?;
    Ok(Unpacked {
        diff_id: Digest::from_hasher(rest.hasher),
        entries,
        implicit_dirs,
    })
}

/// A tar path split into safe components.
pub(super) struct SafePath {
    pub(super) display: String,
    parents: Vec<OsString>,
    name: Option<OsString>,
}

fn safe_path(raw: &Path) -> Result<SafePath, UnpackError> {
    let display = raw.display().to_string();
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_os_string()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(UnpackError::Escape {
                    path: display,
                    reason: "absolute path",
                });
            }
            Component::ParentDir => {
                return Err(UnpackError::Escape {
                    path: display,
                    reason: "\"..\" in the path",
                });
            }
        }
    }
    let name = parts.pop();
    Ok(SafePath {
        display,
        parents: parts,
        name,
    })
}

struct State {
    root: OwnedFd,
    /// The last parent directory opened, to spare a walk per file.
    cached: Option<(Vec<OsString>, OwnedFd)>,
    /// Directories whose mtime is set at the end (writing into them changes it).
    dirs: Vec<(Vec<OsString>, i64)>,
    /// Parent directories made because the layer has no entry for them.
    implicit: Vec<Vec<OsString>>,
}

pub(super) fn open_dir_at(dir: Option<&OwnedFd>, name: &OsStr) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match dir {
        Some(d) => openat(d, name, flags, Mode::empty()),
        None => nix::fcntl::open(name, flags, Mode::empty()),
    };
    fd.map_err(io::Error::from)
}

pub(super) fn io_err<'a>(
    path: &'a SafePath,
    op: &'static str,
) -> impl FnOnce(Errno) -> UnpackError + 'a {
    move |e| UnpackError::Io {
        path: path.display.clone(),
        op,
        source: e.into(),
    }
}

impl State {
    /// Opens the directory `parts` below the root, creating missing ones, never
    /// following a symlink.
    fn open_parents(
        &mut self,
        parts: &[OsString],
        display: &str,
        create: bool,
    ) -> Result<OwnedFd, UnpackError> {
        if let Some((p, fd)) = &self.cached
            && p.as_slice() == parts
        {
            return fd.try_clone().map_err(|source| UnpackError::Io {
                path: display.to_string(),
                op: "dup a directory fd",
                source,
            });
        }
        let mut cur = self.root.try_clone().map_err(|source| UnpackError::Io {
            path: display.to_string(),
            op: "dup a directory fd",
            source,
        })?;
        for (depth, part) in parts.iter().enumerate() {
            let next = match open_dir_at(Some(&cur), part) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                    match mkdirat(&cur, part.as_os_str(), Mode::from_bits_truncate(0o755)) {
                        Ok(()) => self.implicit.push(parts[..=depth].to_vec()),
                        Err(Errno::EEXIST) => {}
                        Err(e) => {
                            return Err(UnpackError::Io {
                                path: display.to_string(),
                                op: "create a parent directory",
                                source: e.into(),
                            });
                        }
                    }
                    open_dir_at(Some(&cur), part).map_err(|source| UnpackError::Io {
                        path: display.to_string(),
                        op: "open a parent directory",
                        source,
                    })?
                }
                Err(e)
                    if e.raw_os_error() == Some(libc::ELOOP)
                        || e.raw_os_error() == Some(libc::ENOTDIR) =>
                {
                    return Err(UnpackError::Escape {
                        path: display.to_string(),
                        reason: "a parent is a symlink or not a directory",
                    });
                }
                Err(source) => {
                    return Err(UnpackError::Io {
                        path: display.to_string(),
                        op: "open a parent directory",
                        source,
                    });
                }
            };
            cur = next;
        }
        let keep = cur.try_clone().map_err(|source| UnpackError::Io {
            path: display.to_string(),
            op: "dup a directory fd",
            source,
        })?;
        self.cached = Some((parts.to_vec(), keep));
        Ok(cur)
    }

    /// Removes whatever this layer already has at `name` (unless it is a directory
    /// and `keep_dir`). Returns true if a directory was kept.
    fn clear(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        keep_dir: bool,
        path: &SafePath,
    ) -> Result<bool, UnpackError> {
        let st = match nix::sys::stat::fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(io_err(path, "stat an existing entry")(e)),
        };
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if is_dir && keep_dir {
            return Ok(true);
        }
        if is_dir {
            // std's remove_dir_all does not follow symlinks; the parent is reached
            // through its fd, so no path component is resolved again.
            let through_fd =
                PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd())).join(name);
            std::fs::remove_dir_all(&through_fd).map_err(|source| UnpackError::Io {
                path: path.display.clone(),
                op: "replace a directory",
                source,
            })?;
            self.cached = None;
        } else {
            unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)
                .map_err(io_err(path, "replace a file"))?;
        }
        Ok(false)
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        if entry.header().entry_type() == EntryType::XGlobalHeader {
            // pax global headers (`git archive` writes one) describe no file.
            return Ok(());
        }
        let raw = entry.path().map_err(UnpackError::Tar)?.into_owned();
        let path = safe_path(&raw)?;
        let kind = entry.header().entry_type();
        let meta = Meta::of(entry)?;

        let Some(name) = path.name.clone() else {
            // "./": the layer's root directory itself.
            if kind.is_dir() {
                apply_fd_meta(&self.root, &meta, &path)?;
                self.dirs.push((Vec::new(), meta.mtime));
            }
            return Ok(());
        };
        let name_str = name.to_string_lossy();
        if name_str == OPAQUE_MARKER {
            let parent = self.open_parents(&path.parents, &path.display, true)?;
            return set_xattr_fd(&parent, OPAQUE_XATTR, b"y").map_err(|source| UnpackError::Io {
                path: path.display.clone(),
                op: "mark the directory opaque",
                source,
            });
        }
        if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(WHITEOUT_PREFIX) {
                // AUFS bookkeeping (.wh..wh.plnk and friends): nothing to do.
                return Ok(());
            }
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(UnpackError::Escape {
                    path: path.display.clone(),
                    reason: "whiteout of an invalid name",
                });
            }
            let hidden = OsString::from(hidden);
            let parent = self.open_parents(&path.parents, &path.display, true)?;
            self.clear(&parent, &hidden, false, &path)?;
            mknodat(
                &parent,
                hidden.as_os_str(),
                SFlag::S_IFCHR,
                Mode::empty(),
                makedev(0, 0),
            )
            .map_err(io_err(&path, "create a whiteout"))?;
            fchownat(
                &parent,
                hidden.as_os_str(),
                Some(Uid::from_raw(0)),
                Some(Gid::from_raw(0)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(io_err(&path, "chown a whiteout"))?;
            return Ok(());
        }

        let parent = self.open_parents(&path.parents, &path.display, true)?;
        match kind {
            EntryType::Directory => {
                self.clear(&parent, &name, true, &path)?;
                match mkdirat(&parent, name.as_os_str(), Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io_err(&path, "create a directory")(e)),
                }
                let dir = open_dir_at(Some(&parent), &name).map_err(|source| UnpackError::Io {
                    path: path.display.clone(),
                    op: "open a directory",
                    source,
                })?;
                apply_fd_meta(&dir, &meta, &path)?;
                let mut parts = path.parents.clone();
                parts.push(name);
                self.dirs.push((parts, meta.mtime));
            }
            EntryType::Regular | EntryType::Continuous => {
                self.clear(&parent, &name, false, &path)?;
                let fd = openat(
                    &parent,
                    name.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(io_err(&path, "create a file"))?;
                let mut file = File::from(fd);
                io::copy(entry, &mut file).map_err(|source| UnpackError::Io {
                    path: path.display.clone(),
                    op: "write the file",
                    source,
                })?;
                apply_fd_meta(file.as_fd(), &meta, &path)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Tar)?
                    .ok_or_else(|| UnpackError::Unsupported {
                        path: path.display.clone(),
                        kind: "symlink without a target".into(),
                    })?
                    .into_owned();
                self.clear(&parent, &name, false, &path)?;
                // The target is stored as text; nothing here ever follows it.
                symlinkat(target.as_os_str(), &parent, name.as_os_str())
                    .map_err(io_err(&path, "create a symlink"))?;
                apply_nofollow_meta(&parent, &name, &meta, &path, false)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Tar)?
                    .ok_or_else(|| UnpackError::Unsupported {
                        path: path.display.clone(),
                        kind: "hard link without a target".into(),
                    })?
                    .into_owned();
                let tpath = safe_path(&target).map_err(|e| match e {
                    UnpackError::Escape { reason, .. } => UnpackError::Escape {
                        path: format!("{} (hard link to {})", path.display, target.display()),
                        reason,
                    },
                    other => other,
                })?;
                let Some(tname) = tpath.name.clone() else {
                    return Err(UnpackError::Escape {
                        path: path.display.clone(),
                        reason: "hard link to the root",
                    });
                };
                let tparent = self.open_parents(&tpath.parents, &tpath.display, false)?;
                let parent = self.open_parents(&path.parents, &path.display, true)?;
                self.clear(&parent, &name, false, &path)?;
                linkat(
                    &tparent,
                    tname.as_os_str(),
                    &parent,
                    name.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(io_err(
                    &path,
                    "create a hard link (the target must be in the same layer)",
                ))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                self.clear(&parent, &name, false, &path)?;
                mknodat(
                    &parent,
                    name.as_os_str(),
                    sflag,
                    Mode::from_bits_truncate(0o600),
                    makedev(major.into(), minor.into()),
                )
                .map_err(io_err(&path, "create a device node"))?;
                apply_nofollow_meta(&parent, &name, &meta, &path, true)?;
            }
            other => {
                return Err(UnpackError::Unsupported {
                    path: path.display.clone(),
                    kind: format!("{other:?}"),
                });
            }
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        let dirs = std::mem::take(&mut self.dirs);
        self.cached = None;
        for (parts, mtime) in dirs.into_iter().rev() {
            let display = parts
                .iter()
                .map(|p| p.to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            // A later entry may have replaced the directory: then it is not ours.
            let Ok(fd) = self.open_parents(&parts, &display, false) else {
                continue;
            };
            let t = TimeSpec::new(mtime, 0);
            futimens(&fd, &t, &t).map_err(|e| UnpackError::Io {
                path: display.clone(),
                op: "set the mtime",
                source: e.into(),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::super::lower::{LowerDir, lower_dir, set_dir_owner_mode};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn header(kind: EntryType, path: &str, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        // set_path refuses "..": write the raw name as a hostile tool would.
        let bytes = path.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_cksum();
        h
    }

    fn tar_of(entries: &[(EntryType, &str, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (kind, path, data, link) in entries {
            let mut h = header(*kind, path, data.len() as u64);
            if let Some(l) = link {
                let bytes = l.as_bytes();
                h.as_old_mut().linkname[..bytes.len()].copy_from_slice(bytes);
                h.set_cksum();
            }
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn unpack(data: &[u8]) -> (tempfile::TempDir, Result<Unpacked, UnpackError>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("snap")).unwrap();
        let r = unpack_layer(data, &dir.path().join("snap"));
        (dir, r)
    }

    #[test]
    fn files_dirs_links_whiteouts_and_the_diff_id() {
        let mut b = tar::Builder::new(Vec::new());
        let mut d = header(EntryType::Directory, "etc/", 0);
        d.set_mode(0o750);
        d.set_uid(1000);
        d.set_gid(1001);
        d.set_cksum();
        b.append(&d, &[][..]).unwrap();
        let mut f = header(EntryType::Regular, "etc/passwd", 5);
        f.set_mode(0o4755);
        f.set_uid(7);
        f.set_cksum();
        b.append_pax_extensions([("SCHILY.xattr.user.test", &b"v"[..])])
            .unwrap();
        b.append(&f, &b"root\n"[..]).unwrap();
        let entries = [
            (EntryType::Link, "etc/hard", &b""[..], Some("etc/passwd")),
            (EntryType::Symlink, "etc/abs", &b""[..], Some("/etc/passwd")),
            (EntryType::Regular, "usr/bin/.wh.old", &b""[..], None),
            (EntryType::Regular, "var/.wh..wh..opq", &b""[..], None),
            (EntryType::Fifo, "./run/fifo", &b""[..], None),
        ];
        for (kind, path, data, link) in entries {
            let mut h = header(kind, path, data.len() as u64);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
                h.set_cksum();
            }
            b.append(&h, data).unwrap();
        }
        let data = b.into_inner().unwrap();
        let (dir, r) = unpack(&data);
        let got = r.unwrap();
        assert_eq!(got.diff_id, Digest::of(&data));
        let root = dir.path().join("snap");
        let etc = std::fs::metadata(root.join("etc")).unwrap();
        assert_eq!(
            (etc.mode() & 0o7777, etc.uid(), etc.gid()),
            (0o750, 1000, 1001)
        );
        assert_eq!(etc.mtime(), 1_600_000_000);
        let passwd = std::fs::metadata(root.join("etc/passwd")).unwrap();
        assert_eq!(passwd.permissions().mode() & 0o7777, 0o4755);
        assert_eq!(passwd.uid(), 7);
        assert_eq!(passwd.nlink(), 2);
        assert_eq!(std::fs::read(root.join("etc/hard")).unwrap(), b"root\n");
        let mut v = [0u8; 8];
        let p = std::ffi::CString::new(root.join("etc/passwd").as_os_str().as_bytes()).unwrap();
        let k = std::ffi::CString::new("user.test").unwrap();
        // SAFETY: valid C strings and buffer.
        let n = unsafe { libc::getxattr(p.as_ptr(), k.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert_eq!(n, 1, "xattr kept");
        assert_eq!(
            std::fs::read_link(root.join("etc/abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        let wh = std::fs::symlink_metadata(root.join("usr/bin/old")).unwrap();
        assert_eq!(wh.mode() & libc::S_IFMT, libc::S_IFCHR);
        assert_eq!(wh.rdev(), 0);
        let p = std::ffi::CString::new(root.join("var").as_os_str().as_bytes()).unwrap();
        let k = std::ffi::CString::new(OPAQUE_XATTR).unwrap();
        // SAFETY: valid C strings and buffer.
        let n = unsafe { libc::getxattr(p.as_ptr(), k.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert_eq!((n, v[0]), (1, b'y'), "opaque marker");
        assert!(!root.join("var/.wh..wh..opq").exists());
        let fifo = std::fs::symlink_metadata(root.join("run/fifo")).unwrap();
        assert_eq!(fifo.mode() & libc::S_IFMT, libc::S_IFIFO);
    }

    #[test]
    fn directories_without_an_entry_are_reported_and_found_below() {
        let data = tar_of(&[
            (EntryType::Regular, "a/b/file", b"x", None),
            (EntryType::Directory, "c/", b"", None),
            (EntryType::Regular, "c/d/file", b"x", None),
            (EntryType::Directory, "c/d/", b"", None),
        ]);
        let (dir, r) = unpack(&data);
        let mut got = r.unwrap().implicit_dirs;
        got.sort();
        assert_eq!(got, vec![PathBuf::from("a"), PathBuf::from("a/b")]);

        // A lower snapshot: a/ is 0700 1000:1000; x is a symlink; w is a whiteout.
        let lower = dir.path().join("lower");
        std::fs::create_dir_all(lower.join("a/b")).unwrap();
        std::os::unix::fs::chown(lower.join("a"), Some(1000), Some(1000)).unwrap();
        std::fs::set_permissions(lower.join("a"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("/etc", lower.join("x")).unwrap();
        assert!(matches!(
            lower_dir(&lower, Path::new("a")).unwrap(),
            LowerDir::Found(1000, 1000, 0o700)
        ));
        assert!(matches!(
            lower_dir(&lower, Path::new("x/ssl")).unwrap(),
            LowerDir::Hidden
        ));
        assert!(matches!(
            lower_dir(&lower, Path::new("nope/deeper")).unwrap(),
            LowerDir::Absent
        ));
        let snap = dir.path().join("snap");
        set_dir_owner_mode(&snap, Path::new("a"), 1000, 1000, 0o700).unwrap();
        let meta = std::fs::metadata(snap.join("a")).unwrap();
        assert_eq!(
            (meta.uid(), meta.permissions().mode() & 0o7777),
            (1000, 0o700)
        );
    }

    #[test]
    fn a_gzip_or_zstd_layer_is_recognised_by_its_magic() {
        let data = tar_of(&[(EntryType::Regular, "a", b"hi", None)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &data).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&data[..], 1).unwrap();
        for blob in [data.clone(), gz, zst] {
            let dir = tempfile::tempdir().unwrap();
            let r = unpack_layer(decompressed(io::Cursor::new(blob)).unwrap(), dir.path()).unwrap();
            assert_eq!(r.diff_id, Digest::of(&data));
            assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"hi");
        }
    }

    fn assert_refused(entries: &[(EntryType, &str, &[u8], Option<&str>)], reason: &str) {
        let outside = tempfile::tempdir().unwrap();
        let data = tar_of(entries);
        let (dir, r) = unpack(&data);
        let err = r.expect_err("hostile layer accepted");
        assert!(err.to_string().contains(reason), "{err}");
        // Nothing was written next to the snapshot nor in the other temp dir.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("snap")]);
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    }

    #[test]
    fn hostile_paths_are_refused() {
        assert_refused(
            &[(EntryType::Regular, "../evil", b"x", None)],
            "\"..\" in the path",
        );
        assert_refused(
            &[(EntryType::Regular, "a/../../evil", b"x", None)],
            "\"..\" in the path",
        );
        assert_refused(
            &[(EntryType::Regular, "/evil", b"x", None)],
            "absolute path",
        );
        // A symlink to outside, then a file through it.
        assert_refused(
            &[
                (EntryType::Symlink, "link", b"", Some("..")),
                (EntryType::Regular, "link/evil", b"x", None),
            ],
            "a parent is a symlink",
        );
        assert_refused(
            &[
                (EntryType::Symlink, "link", b"", Some("/")),
                (EntryType::Directory, "link/tmp/", b"", None),
            ],
            "a parent is a symlink",
        );
        // Hard links out of the layer.
        assert_refused(
            &[(EntryType::Link, "h", b"", Some("../../etc/passwd"))],
            "hard link to",
        );
        assert_refused(
            &[(EntryType::Link, "h", b"", Some("/etc/passwd"))],
            "absolute path",
        );
        assert_refused(
            &[
                (EntryType::Symlink, "link", b"", Some("/etc")),
                (EntryType::Link, "h", b"", Some("link/passwd")),
            ],
            "a parent is a symlink",
        );
        assert_refused(
            &[(EntryType::Regular, "x/.wh...", b"", None)],
            "whiteout of an invalid name",
        );
    }

    #[test]
    fn a_symlink_target_is_replaced_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"safe").unwrap();
        let target = victim.to_str().unwrap();
        let data = tar_of(&[
            (EntryType::Symlink, "f", b"", Some(target)),
            (EntryType::Regular, "f", b"owned", None),
        ]);
        let (dir, r) = unpack(&data);
        r.unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"safe");
        assert_eq!(std::fs::read(dir.path().join("snap/f")).unwrap(), b"owned");
    }

    /// Random archives of hostile names, symlinks and hard links: whatever
    /// unpacking makes of them, nothing outside the snapshot changes.
    #[test]
    fn random_hostile_archives_never_write_outside() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("victim"), b"safe").unwrap();
        let out = outside.path().to_str().unwrap().to_string();
        let names = [
            "a",
            "b",
            "..",
            ".",
            "a/b",
            "../a",
            "link",
            "link/x",
            "/abs",
            "a/../..",
            ".wh.a",
            ".wh..wh..opq",
        ];
        let targets = ["..", "/", "a", "../..", out.as_str(), "link", "victim"];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..400 {
            let mut entries = Vec::new();
            for _ in 0..1 + next(5) {
                let kinds = [
                    EntryType::Regular,
                    EntryType::Directory,
                    EntryType::Symlink,
                    EntryType::Link,
                ];
                let kind = kinds[next(kinds.len())];
                let name = format!(
                    "{}{}",
                    names[next(names.len())],
                    if next(3) == 0 { "/victim" } else { "" }
                );
                let link = matches!(kind, EntryType::Symlink | EntryType::Link).then(|| {
                    let t = targets[next(targets.len())];
                    if next(2) == 0 {
                        format!("{t}/victim")
                    } else {
                        t.to_string()
                    }
                });
                entries.push((kind, name, link));
            }
            let refs: Vec<(EntryType, &str, &[u8], Option<&str>)> = entries
                .iter()
                .map(|(k, n, l)| (*k, n.as_str(), &b"owned"[..], l.as_deref()))
                .collect();
            let (dir, _) = unpack(&tar_of(&refs));
            let names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert_eq!(names, vec![OsString::from("snap")], "{entries:?}");
            let left: Vec<_> = std::fs::read_dir(outside.path())
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert_eq!(left, vec![OsString::from("victim")], "{entries:?}");
            assert_eq!(
                std::fs::read(outside.path().join("victim")).unwrap(),
                b"safe",
                "{entries:?}"
            );
        }
    }

    #[test]
    fn a_pax_global_header_is_skipped() {
        let data = tar_of(&[
            (EntryType::XGlobalHeader, "pax_global_header", b"", None),
            (EntryType::Regular, "a", b"hi", None),
        ]);
        let (dir, r) = unpack(&data);
        r.unwrap();
        assert!(!dir.path().join("snap/pax_global_header").exists());
        assert_eq!(std::fs::read(dir.path().join("snap/a")).unwrap(), b"hi");
    }

    #[test]
    fn a_truncated_tar_is_an_error() {
        let data = tar_of(&[(EntryType::Regular, "a", &[7u8; 5000], None)]);
        let (_dir, r) = unpack(&data[..1500]);
        assert!(r.is_err());
    }
}
