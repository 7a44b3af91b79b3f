//! Resolving mount targets inside the rootfs without following a symlink out of
//! it: every lookup is an openat2(RESOLVE_BENEATH) from the rootfs fd, and the
//! mount then goes onto the opened fd (`/proc/self/fd/N`), so nothing can swap a
//! path component in between.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, mkdirat};

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("mount target {} escapes the rootfs through a symlink or '..'", .0.display())]
    Escape(PathBuf),
    #[error("cannot resolve {} in the rootfs: {source}", path.display())]
    Open { path: PathBuf, source: Errno },
    #[error("cannot create {} in the rootfs: {source}", path.display())]
    Create { path: PathBuf, source: Errno },
}

type Result<T> = std::result::Result<T, ResolveError>;

/// What to create when the target is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

fn open_beneath(root: &impl AsFd, rel: &Path, full: &Path) -> Result<Option<OwnedFd>> {
    let rel: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    match openat2(root.as_fd(), rel, how(OFlag::O_PATH)) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(Errno::EXDEV) | Err(Errno::ELOOP) => Err(ResolveError::Escape(full.to_path_buf())),
        Err(source) => Err(ResolveError::Open {
            path: full.to_path_buf(),
            source,
        }),
    }
}

/// The target's components below the root; a `..` is an escape attempt.
fn components(target: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for comp in target.components() {
        match comp {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(c) => out.push(PathBuf::from(c)),
            _ => return Err(ResolveError::Escape(target.to_path_buf())),
        }
    }
    Ok(out)
}

/// Opens `target` (a path inside the container) below `root` as an O_PATH fd,
/// creating missing directories (and the last component as `kind`).
pub fn open_or_create(root: &impl AsFd, target: &Path, kind: Kind) -> Result<OwnedFd> {
    let comps = components(target)?;
    let mut rel = PathBuf::new();
    let mut parent = open_beneath(root, &rel, target)?.ok_or_else(|| ResolveError::Open {
        path: target.to_path_buf(),
        source: Errno::ENOENT,
    })?;
    for (i, comp) in comps.iter().enumerate() {
        rel.push(comp);
        if let Some(fd) = open_beneath(root, &rel, target)? {
            parent = fd;
            continue;
        }
        let last = i + 1 == comps.len();
        let created = if last && kind == Kind::File {
            nix::fcntl::openat(
                parent.as_fd(),
                comp.as_path(),
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop)
        } else {
            mkdirat(
                parent.as_fd(),
                comp.as_path(),
                Mode::from_bits_truncate(0o755),
            )
        };
        match created {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(source) => {
                return Err(ResolveError::Create {
                    path: target.to_path_buf(),
                    source,
                });
            }
        }
        // A dangling symlink makes EEXIST above and ENOENT here.
        parent = open_beneath(root, &rel, target)?
            .ok_or_else(|| ResolveError::Escape(target.to_path_buf()))?;
    }
    Ok(parent)
}

/// The path through which a syscall taking a path reaches the fd's file.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_fd(dir: &Path) -> OwnedFd {
        nix::fcntl::open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).expect("open")
    }

    #[test]
    fn creates_missing_dirs_and_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = root_fd(tmp.path());
        open_or_create(&root, Path::new("/a/b/c"), Kind::Dir).expect("dir");
        assert!(tmp.path().join("a/b/c").is_dir());
        open_or_create(&root, Path::new("/a/f"), Kind::File).expect("file");
        assert!(tmp.path().join("a/f").is_file());
    }

    #[test]
    fn symlink_escapes_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir(&rootfs).expect("mkdir");
        std::os::unix::fs::symlink("../..", rootfs.join("up")).expect("symlink");
        std::os::unix::fs::symlink("/etc", rootfs.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("sub", rootfs.join("inside")).expect("symlink");
        let root = root_fd(&rootfs);
        for bad in ["/up/x", "/abs/x", "/../x"] {
            let err = open_or_create(&root, Path::new(bad), Kind::Dir).unwrap_err();
            assert!(matches!(err, ResolveError::Escape(_)), "{bad}: {err}");
        }
        assert!(!tmp.path().join("x").exists());
        // A relative symlink that stays inside is fine.
        open_or_create(&root, Path::new("/inside/y"), Kind::Dir).unwrap_err();
        std::fs::create_dir(rootfs.join("sub")).expect("mkdir");
        open_or_create(&root, Path::new("/inside/y"), Kind::Dir).expect("inside");
        assert!(rootfs.join("sub/y").is_dir());
    }
}
