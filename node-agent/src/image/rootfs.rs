//! A container's rootfs: an overlay mount of the image's snapshots (top layer
//! first) with the container's own upper and work directories.
//!
//! Mount options are limited to one page, which images with many layers exceed
//! with the classic `lowerdir=a:b:...` string. Where the kernel has the new mount
//! API with `lowerdir+` (Linux 6.8+), each layer is passed on its own and there is
//! no limit; otherwise the classic mount is used while it fits.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use super::ImageStore;
use super::error::{ImageError, Result, blocking};
use super::index::{ContainerRef, Image};

/// A prepared container rootfs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rootfs {
    pub container_id: String,
    /// Where the overlay is mounted: the bundle's `root.path`.
    pub path: PathBuf,
    /// Snapshot directories, top layer first.
    pub lower_dirs: Vec<PathBuf>,
    pub upper_dir: PathBuf,
    pub work_dir: PathBuf,
}

impl Rootfs {
    /// The classic mount option string (what `mount -t overlay -o` would take).
    pub fn mount_options(&self) -> String {
        let lower: Vec<_> = self
            .lower_dirs
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            self.upper_dir.display(),
            self.work_dir.display()
        )
    }
}

/// Container ids become directory names: keep them plain.
fn check_container_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ImageError::Rootfs {
            container: id.to_string(),
            reason: "a container id has 1-128 letters, digits, '-', '_' or '.'".into(),
        })
    }
}

impl ImageStore {
    /// Directory of a container's upper, work and rootfs directories.
    pub fn container_dir(&self, container_id: &str) -> PathBuf {
        self.root.join("containers").join(container_id)
    }

    /// Prepares everything a rootfs of `image` for `container_id` needs, short of
    /// mounting it: snapshots unpacked, the container's upper, work and mount
    /// point directories made, and a hold on the image's blobs and snapshots
    /// that `prune` respects until `release_rootfs`. For a caller that mounts
    /// the overlay itself (`Rootfs::mount_options`).
    pub async fn rootfs_spec(&self, image: &Image, container_id: &str) -> Result<Rootfs> {
        check_container_id(container_id)?;
        let _gc = self.gc.read().await;
        self.ensure_snapshots(&image.layers).await?;
        // The index flushes to disk on every write: off the async threads, so
        // concurrent starts wait for the disk together.
        let (index, hold) = (
            self.index.clone(),
            ContainerRef {
                container_id: container_id.to_string(),
                image: image.clone(),
            },
        );
        blocking(format!("rootfs of {container_id}"), move || {
            index.put_container(&hold)?;
            // Garbage collection removes the least recently used images first.
            index.note_start(&hold.image.config_digest, super::now())
        })
        .await?;
        let mut lower_dirs = Vec::new();
        for l in image.layers.iter().rev() {
            let snap = self
                .index
                .snapshot(&l.chain_id)?
                .ok_or_else(|| ImageError::Rootfs {
                    container: container_id.to_string(),
                    reason: format!("snapshot {} is missing", l.chain_id),
                })?;
            lower_dirs.push(self.snapshots.path(snap.id));
        }
        let dir = self.container_dir(container_id);
        if lower_dirs.is_empty() {
            // overlayfs needs a lower directory: an image without layers gets an empty one.
            lower_dirs.push(dir.join("empty"));
        }
        let rootfs = Rootfs {
            container_id: container_id.to_string(),
            path: dir.join("rootfs"),
            lower_dirs,
            upper_dir: dir.join("upper"),
            work_dir: dir.join("work"),
        };
        let mut dirs = vec![
            rootfs.upper_dir.clone(),
            rootfs.work_dir.clone(),
            rootfs.path.clone(),
        ];
        if image.layers.is_empty() {
            dirs.push(dir.join("empty"));
        }
        blocking(format!("rootfs of {container_id}"), move || {
            for d in &dirs {
                std::fs::create_dir_all(d).map_err(|e| ImageError::io("create", d, e))?;
            }
            Ok(())
        })
        .await?;
        Ok(rootfs)
    }

    /// Mounts a rootfs for `container_id` from `image` (see `rootfs_spec`).
    pub async fn prepare_rootfs(&self, image: &Image, container_id: &str) -> Result<Rootfs> {
        let rootfs = self.rootfs_spec(image, container_id).await?;
        let r = rootfs.clone();
        let mounted = blocking(format!("rootfs of {container_id}"), move || {
            if is_mount_point(&r.path)? {
                // Prepared before (e.g. by an agent that restarted): keep it.
                return Ok(false);
            }
            mount_overlay(&r).map(|()| true)
        })
        .await?;
        if !mounted {
            debug!(container = container_id, "rootfs already mounted");
            return Ok(rootfs);
        }
        info!(container = container_id, image = %image.name, layers = image.layers.len(), "rootfs mounted");
        Ok(rootfs)
    }

    /// Containers that hold a rootfs (for the supervisor to reconcile after a restart).
    pub fn rootfs_holds(&self) -> Result<Vec<String>> {
        Ok(self
            .index
            .containers()?
            .into_iter()
            .map(|c| c.container_id)
            .collect())
    }

    /// Unmounts and deletes a container's rootfs and drops its hold on the image.
    pub async fn release_rootfs(&self, container_id: &str) -> Result<()> {
        check_container_id(container_id)?;
        let dir = self.container_dir(container_id);
        let id = container_id.to_string();
        let index = self.index.clone();
        blocking(format!("release of {container_id}"), move || {
            let target = dir.join("rootfs");
            match nix::mount::umount2(&target, MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => {
                    return Err(ImageError::Rootfs {
                        container: id,
                        reason: format!("unmount {}: {e}", target.display()),
                    });
                }
            }
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ImageError::io("remove", dir, e)),
            }
            if let Some(held) = index.remove_container(&id)? {
                // The image of a task that just ended stays a while (see gc_plan).
                let ended = super::now();
                index.update_use(&held.image.config_digest, |u| u.last_ended = Some(ended))?;
            }
            Ok(())
        })
        .await?;
        debug!(container = container_id, "rootfs released");
        Ok(())
    }
}

/// True if `path` is the root of a mount (its device differs from its parent's).
fn is_mount_point(path: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::symlink_metadata(path).map_err(|e| ImageError::io("stat", path, e))?;
    let parent = path.parent().unwrap_or(path);
    let up = std::fs::symlink_metadata(parent).map_err(|e| ImageError::io("stat", parent, e))?;
    Ok(me.dev() != up.dev() || me.ino() == up.ino())
}

fn mount_overlay(r: &Rootfs) -> Result<()> {
    let err = |reason: String| ImageError::Rootfs {
        container: r.container_id.clone(),
        reason,
    };
    match mount_new_api(r) {
        Ok(()) => return Ok(()),
        Err(e)
            if e.raw_os_error() == Some(libc::ENOSYS) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            debug!(container = %r.container_id, error = %e, "no lowerdir+ support, using mount(2)");
        }
        Err(e) => return Err(err(format!("overlay mount on {}: {e}", r.path.display()))),
    }
    let opts = r.mount_options();
    let page = 4096;
    if opts.len() >= page {
        return Err(err(format!(
            "{} layers need {} bytes of mount options, over the one-page limit of this kernel",
            r.lower_dirs.len(),
            opts.len()
        )));
    }
    if r.lower_dirs.iter().any(|p| {
        p.as_os_str()
            .as_bytes()
            .iter()
            .any(|b| *b == b':' || *b == b',')
    }) {
        return Err(err("a snapshot path holds ':' or ','".into()));
    }
    nix::mount::mount(
        Some("overlay"),
        &r.path,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| err(format!("overlay mount on {}: {e}", r.path.display())))
}

fn cstr(s: &[u8]) -> std::io::Result<CString> {
    CString::new(s).map_err(std::io::Error::other)
}

/// fsopen/fsconfig/fsmount/move_mount with one `lowerdir+` per layer.
fn mount_new_api(r: &Rootfs) -> std::io::Result<()> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
    let check = |r: libc::c_long| {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    };
    let fstype = cstr(b"overlay")?;
    // SAFETY: a NUL-terminated name; the returned fd is owned below.
    let fs = check(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: fsopen returned a fresh fd that nothing else owns.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    let set = |key: &str, value: &Path| -> std::io::Result<()> {
        let k = cstr(key.as_bytes())?;
        let v = cstr(value.as_os_str().as_bytes())?;
        // SAFETY: valid fd and NUL-terminated strings.
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_STRING,
                k.as_ptr(),
                v.as_ptr(),
                0,
            )
        })
        .map(drop)
    };
    for lower in &r.lower_dirs {
        set("lowerdir+", lower)?;
    }
    set("upperdir", &r.upper_dir)?;
    set("workdir", &r.work_dir)?;
    // SAFETY: valid fd; CMD_CREATE takes no key or value.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    // SAFETY: valid fd; the returned mount fd is owned below.
    let m = check(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) })?;
    // SAFETY: fsmount returned a fresh fd that nothing else owns.
    let m = unsafe { OwnedFd::from_raw_fd(m as i32) };
    let empty = cstr(b"")?;
    let target = cstr(r.path.as_os_str().as_bytes())?;
    // SAFETY: valid fds and NUL-terminated paths.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            m.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_are_plain_names() {
        for ok in ["c1", "web.1-abc_2"] {
            assert!(check_container_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", "../x", "a/b", ".hidden", &"x".repeat(129)] {
            assert!(check_container_id(bad).is_err(), "{bad}");
        }
    }
}
