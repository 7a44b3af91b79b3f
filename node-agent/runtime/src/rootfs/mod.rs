//! The container's root filesystem: private propagation, the spec's mounts (each
//! target resolved inside the rootfs), a populated /dev, pivot_root, then the
//! read-only root, masked paths and read-only paths.

mod devices;
mod options;
pub mod resolve;

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::unistd::{chdir, fchdir, pivot_root};
use oci_spec::runtime::{Mount, Spec};

pub use devices::DeviceError;
pub use resolve::ResolveError;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("failed to {what} {}: {source}", path.display())]
    Sys {
        what: &'static str,
        path: PathBuf,
        source: Errno,
    },
    #[error("failed to mount {kind} on {}: {source}", target.display())]
    Mount {
        kind: String,
        target: PathBuf,
        source: Errno,
    },
    #[error("/dev/null in the container is not the null device; refusing to mask with it")]
    FakeDevNull,
    #[error("bind mount source {} does not exist", .0.display())]
    NoSource(PathBuf),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Device(#[from] DeviceError),
}

type Result<T> = std::result::Result<T, RootfsError>;

fn sys<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> RootfsError + 'a {
    move |source| RootfsError::Sys {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A cgroup hierarchy as the container should see it under its cgroup mount.
#[derive(Debug, Clone)]
pub struct CgroupView {
    /// Directory name under the mount (`memory`, `systemd`, `unified`; empty for v2).
    pub name: String,
    /// Filesystem type and data for a fresh mount in a cgroup namespace.
    pub fstype: &'static str,
    pub data: String,
    /// The container's cgroup directory on the host (bound without a cgroup ns).
    pub host_dir: PathBuf,
}

/// Everything the rootfs setup needs besides the spec.
pub struct Setup<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub cgroups: &'a [CgroupView],
    pub new_cgroup_ns: bool,
}

/// Before pivot_root: propagation, mounts, /dev.
pub fn prepare(s: &Setup) -> Result<()> {
    let linux = s.spec.linux().as_ref();
    let mut propagation =
        options::propagation(linux.and_then(|l| l.rootfs_propagation().as_deref()));
    // An unbindable tree cannot give the rootfs bind mount below: private
    // until then, `pivot` makes the new root unbindable.
    if propagation.contains(MsFlags::MS_UNBINDABLE) {
        propagation = MsFlags::MS_PRIVATE | MsFlags::MS_REC;
    }
    mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
        .map_err(sys("set propagation of", Path::new("/")))?;
    // pivot_root refuses a new root whose parent mount is shared (as it is
    // after `rootfsPropagation: shared`): that one mount goes private, as in
    // runc; `pivot` gives the new root the asked propagation afterwards.
    if propagation.contains(MsFlags::MS_SHARED) {
        let parent = mount_point_of(s.rootfs);
        mount(
            None::<&str>,
            &parent,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(sys("make private the parent mount", &parent))?;
    }
    // The rootfs must be a mount point for pivot_root.
    mount(
        Some(s.rootfs),
        s.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys("bind mount the rootfs", s.rootfs))?;
    let root = open(
        s.rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open", s.rootfs))?;
    let mut dev_is_tmpfs = false;
    for m in s.spec.mounts().as_deref().unwrap_or_default() {
        mount_one(s, &root, m)?;
        if m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("tmpfs") {
            dev_is_tmpfs = true;
        }
    }
    if dev_is_tmpfs {
        let dev = resolve::open_or_create(&root, Path::new("/dev"), resolve::Kind::Dir)?;
        devices::populate(&dev)?;
    }
    if let Some(devs) = linux.and_then(|l| l.devices().as_deref()) {
        devices::create_spec_devices(&root, devs)?;
    }
    Ok(())
}

fn mount_one(s: &Setup, root: &OwnedFd, m: &Mount) -> Result<()> {
    let opts = options::parse(m.options().as_deref().unwrap_or_default());
    let fstype = m
        .typ()
        .as_deref()
        .unwrap_or(if opts.is_bind() { "bind" } else { "" });
    let dest = m.destination();
    if fstype == "cgroup" || fstype == "cgroup2" {
        return mount_cgroups(s, root, dest, &opts);
    }
    if opts.is_bind() || fstype == "bind" {
        let source = m.source().as_deref().unwrap_or(Path::new(""));
        let source = if source.is_relative() {
            s.bundle.join(source)
        } else {
            source.to_path_buf()
        };
        let meta = std::fs::metadata(&source).map_err(|_| RootfsError::NoSource(source.clone()))?;
        let kind = if meta.is_dir() {
            resolve::Kind::Dir
        } else {
            resolve::Kind::File
        };
        let target = resolve::open_or_create(root, dest, kind)?;
        let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
        mount(
            Some(&source),
            &resolve::fd_path(&target),
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(|source| RootfsError::Mount {
            kind: "bind".into(),
            target: dest.to_path_buf(),
            source,
        })?;
        // Flags other than bind/rec take a remount; keep what the source has
        // locked (nosuid/nodev/noexec from an outer mount).
        let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            let target = resolve::open_or_create(root, dest, kind)?;
            remount_bind(&resolve::fd_path(&target), dest, extra)?;
        }
        return propagate(root, dest, opts.propagation);
    }
    let target = resolve::open_or_create(root, dest, resolve::Kind::Dir)?;
    let source = m.source().as_deref().unwrap_or(Path::new(fstype));
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    let result = mount(
        Some(source),
        &resolve::fd_path(&target),
        Some(fstype),
        opts.flags,
        data,
    );
    match result {
        Ok(()) => {}
        // Without its own network (or ipc) namespace the kernel refuses a fresh
        // sysfs (or mqueue): bind the host's, as runc does.
        Err(Errno::EPERM) if fstype == "sysfs" || fstype == "mqueue" => {
            let host = if fstype == "sysfs" {
                "/sys"
            } else {
                "/dev/mqueue"
            };
            mount(
                Some(host),
                &resolve::fd_path(&target),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|source| RootfsError::Mount {
                kind: fstype.into(),
                target: dest.to_path_buf(),
                source,
            })?;
            remount_bind(&resolve::fd_path(&target), dest, opts.flags)?;
        }
        Err(source) => {
            return Err(RootfsError::Mount {
                kind: fstype.into(),
                target: dest.to_path_buf(),
                source,
            });
        }
    }
    propagate(root, dest, opts.propagation)
}

fn propagate(root: &OwnedFd, dest: &Path, propagation: MsFlags) -> Result<()> {
    if propagation.is_empty() {
        return Ok(());
    }
    let target = resolve::open_or_create(root, dest, resolve::Kind::Dir)?;
    mount(
        None::<&str>,
        &resolve::fd_path(&target),
        None::<&str>,
        propagation,
        None::<&str>,
    )
    .map_err(sys("set propagation of", dest))
}

/// Remounts a bind mount with `flags`, keeping the locked flags it already has.
fn remount_bind(path: &Path, shown: &Path, flags: MsFlags) -> Result<()> {
    let mut all = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags;
    if let Ok(st) = statvfs(path) {
        let f = st.flags();
        for (fs, ms) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(fs) {
                all |= ms;
            }
        }
    }
    mount(None::<&str>, path, None::<&str>, all, None::<&str>).map_err(sys("remount", shown))
}

/// The spec's cgroup mount: a tmpfs with one directory per hierarchy, each a
/// fresh cgroup mount (in a cgroup namespace) or a bind of the container's own
/// cgroup directory (without one), so the container sees its own limits.
fn mount_cgroups(s: &Setup, root: &OwnedFd, dest: &Path, opts: &options::Options) -> Result<()> {
    let ro = opts.flags.contains(MsFlags::MS_RDONLY);
    let base = (opts.flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC)
        & !(MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC);
    let single_v2 = s.cgroups.len() == 1 && s.cgroups[0].name.is_empty();
    if !single_v2 {
        let target = resolve::open_or_create(root, dest, resolve::Kind::Dir)?;
        mount(
            Some("tmpfs"),
            &resolve::fd_path(&target),
            Some("tmpfs"),
            base,
            Some("mode=755"),
        )
        .map_err(|source| RootfsError::Mount {
            kind: "tmpfs".into(),
            target: dest.to_path_buf(),
            source,
        })?;
    }
    for view in s.cgroups {
        let sub = dest.join(&view.name);
        let target = resolve::open_or_create(root, &sub, resolve::Kind::Dir)?;
        let path = resolve::fd_path(&target);
        let flags = base
            | if ro {
                MsFlags::MS_RDONLY
            } else {
                MsFlags::empty()
            };
        let result = if s.new_cgroup_ns {
            let data = (!view.data.is_empty()).then_some(view.data.as_str());
            // Named hierarchies show their name as the source (as under runc).
            let source = view.data.strip_prefix("name=").unwrap_or("cgroup");
            mount(Some(source), &path, Some(view.fstype), flags, data)
        } else {
            mount(
                Some(&view.host_dir),
                &path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .and_then(|()| {
                let target = resolve::open_or_create(root, &sub, resolve::Kind::Dir)
                    .map_err(|_| Errno::ENOENT)?;
                let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags;
                mount(
                    None::<&str>,
                    &resolve::fd_path(&target),
                    None::<&str>,
                    remount,
                    None::<&str>,
                )
            })
        };
        result.map_err(|source| RootfsError::Mount {
            kind: view.fstype.into(),
            target: sub.clone(),
            source,
        })?;
    }
    if ro && !single_v2 {
        let target = resolve::open_or_create(root, dest, resolve::Kind::Dir)?;
        remount_bind(&resolve::fd_path(&target), dest, MsFlags::MS_RDONLY).or_else(|_| {
            mount(
                None::<&str>,
                &resolve::fd_path(&target),
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
                Some("mode=755"),
            )
            .map_err(sys("remount read-only", dest))
        })?;
    }
    Ok(())
}

/// pivot_root into the rootfs and drop the old root.
/// The mount point of the mount `path` is on: the longest mount point in
/// /proc/self/mountinfo that contains it ("/" when none is read).
fn mount_point_of(path: &Path) -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    longest_mount_point(&info, path)
}

fn longest_mount_point(mountinfo: &str, path: &Path) -> PathBuf {
    mountinfo
        .lines()
        // Field 5 is the mount point (octal escapes for spaces and the like
        // never match a bundle path that has none).
        .filter_map(|line| line.split(' ').nth(4))
        .map(Path::new)
        .filter(|point| path.starts_with(point))
        .max_by_key(|point| point.components().count())
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

/// pivot_root into `rootfs`, detach the old root, and give "/" the spec's
/// propagation when it asks for shared or slave.
pub fn pivot(rootfs: &Path, propagation: Option<&str>) -> Result<()> {
    let old = open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open", Path::new("/")))?;
    let new = open(
        rootfs,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open", rootfs))?;
    fchdir(new.as_fd()).map_err(sys("chdir to", rootfs))?;
    pivot_root(".", ".").map_err(sys("pivot_root to", rootfs))?;
    fchdir(old.as_fd()).map_err(sys("chdir to", Path::new("old root")))?;
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys("make the old root a slave:", Path::new(".")))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys("unmount the old root", Path::new(".")))?;
    chdir("/").map_err(sys("chdir to", Path::new("/")))?;
    let wanted = options::propagation(propagation);
    if wanted.intersects(MsFlags::MS_SHARED | MsFlags::MS_SLAVE | MsFlags::MS_UNBINDABLE) {
        mount(None::<&str>, "/", None::<&str>, wanted, None::<&str>)
            .map_err(sys("set propagation of the new", Path::new("/")))?;
    }
    Ok(())
}

/// After pivot_root: read-only root, masked paths, read-only paths.
pub fn finalize(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    for path in linux
        .and_then(|l| l.readonly_paths().as_deref())
        .unwrap_or_default()
    {
        let path = Path::new(path);
        match mount(
            Some(path),
            path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => remount_bind(path, path, MsFlags::MS_RDONLY | MsFlags::MS_REC)?,
            Err(Errno::ENOENT) => {}
            Err(source) => {
                return Err(RootfsError::Sys {
                    what: "bind",
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    for path in linux
        .and_then(|l| l.masked_paths().as_deref())
        .unwrap_or_default()
    {
        mask(Path::new(path))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        remount_bind(Path::new("/"), Path::new("/"), MsFlags::MS_RDONLY)?;
    }
    Ok(())
}

/// Hides a path: /dev/null over a file, an empty read-only tmpfs over a directory.
fn mask(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    if meta.is_dir() {
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(sys("mask", path))
    } else {
        check_dev_null()?;
        mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys("mask", path))
    }
}

/// The image could make /dev/null a symlink or a file (CVE-2025-31133): bind
/// only the real character device 1:3.
fn check_dev_null() -> Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let path = Path::new("/dev/null");
    let meta = std::fs::symlink_metadata(path).map_err(|e| RootfsError::Sys {
        what: "inspect",
        path: path.to_path_buf(),
        source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    let rdev = meta.rdev();
    if meta.file_type().is_char_device() && libc::major(rdev) == 1 && libc::minor(rdev) == 3 {
        Ok(())
    } else {
        Err(RootfsError::FakeDevNull)
    }
}

#[cfg(test)]
mod mount_point_tests {
    use super::*;

    #[test]
    fn the_mount_point_of_a_path_is_the_longest_that_contains_it() {
        let info = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    30 22 0:26 / /tmp rw shared:5 - tmpfs tmpfs rw\n\
                    31 30 0:27 / /tmp/b rw shared:6 - tmpfs tmpfs rw\n";
        assert_eq!(
            longest_mount_point(info, Path::new("/tmp/bundle/rootfs")),
            Path::new("/tmp")
        );
        assert_eq!(
            longest_mount_point(info, Path::new("/tmp/b/rootfs")),
            Path::new("/tmp/b")
        );
        assert_eq!(
            longest_mount_point(info, Path::new("/var/x")),
            Path::new("/")
        );
        assert_eq!(longest_mount_point("", Path::new("/var/x")), Path::new("/"));
    }
}
