//! The files a task gets from the controller: its secrets on a tmpfs of its
//! own, its configs as read-only files.
//!
//! Secret values live in the agent's memory ([`Payloads`], kept current from
//! the session's assignments) and, while the task runs, in the task's tmpfs
//! `<secrets root>/<task id>` (nodev, nosuid, noexec, `noswap` when the kernel
//! has it), bind-mounted read-only at `/run/secrets` in the container. Never on
//! disk, in an environment, an argument or a log. The tmpfs is unmounted and
//! its directory removed when the task's container is cleaned up.
//!
//! Config data is written under the task's state directory and each file is
//! bind-mounted read-only at its target.
//!
//! A service's registry-auth secret (`ServiceSpec.registry_auth`) is never
//! mounted: the image pull takes it from [`Payloads`], in memory.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_proto::v1::{ConfigValue, SecretValue, Task};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use tracing::warn;

use crate::image::RegistryCredentials;

/// Where secrets appear in the container.
pub const SECRETS_TARGET: &str = "/run/secrets";
/// Default mode of a secret or config file (Docker's).
const DEFAULT_MODE: u32 = 0o444;
/// Room on a secrets tmpfs beyond its files (directory entries).
const TMPFS_SLACK: usize = 64 * 1024;
const PAGE: usize = 4096;

/// The secret values and config data this node's tasks use, by id.
#[derive(Default)]
pub(crate) struct Payloads {
    secrets: HashMap<String, SecretValue>,
    configs: HashMap<String, ConfigValue>,
}

impl Payloads {
    /// Exactly these (the node's current assignment set).
    pub fn replace(&mut self, secrets: Vec<SecretValue>, configs: Vec<ConfigValue>) {
        self.secrets = secrets.into_iter().map(|s| (s.id.clone(), s)).collect();
        self.configs = configs.into_iter().map(|c| (c.id.clone(), c)).collect();
    }
}

impl Payloads {
    /// The credentials `task`'s image is pulled with: its service's
    /// registry-auth secret as delivered (`None`: the service has none).
    pub fn registry_credentials(&self, task: &Task) -> Result<Option<RegistryCredentials>, String> {
        let Some(r) = task.spec.as_ref().and_then(|s| s.registry_auth.as_ref()) else {
            return Ok(None);
        };
        let value = self.secrets.get(&r.secret_id).ok_or_else(|| {
            format!(
                "registry credentials secret {} was not delivered to this node (the controller sends it with the task)",
                r.secret_name
            )
        })?;
        Ok(Some(RegistryCredentials::new(
            format!("registry credentials secret {}", r.secret_name),
            value.data.clone(),
        )))
    }
}

/// The directory of task `task_id`'s secrets tmpfs.
fn secrets_dir(root: &Path, task_id: &str) -> PathBuf {
    root.join(task_id)
}

/// A file's mode: the reference's, 0444 when unset.
fn mode_of(mode: u32) -> u32 {
    if mode == 0 {
        DEFAULT_MODE
    } else {
        mode & 0o777
    }
}

/// Mounts task's secrets tmpfs and writes its secrets there; returns the
/// directory to bind at /run/secrets (`None`: the task uses no secret).
pub(crate) fn mount_secrets(
    root: &Path,
    task: &Task,
    payloads: &Payloads,
) -> Result<Option<PathBuf>, String> {
    let refs = task
        .spec
        .as_ref()
        .map(|s| s.secrets.as_slice())
        .unwrap_or(&[]);
    if refs.is_empty() {
        return Ok(None);
    }
    let mut values = Vec::with_capacity(refs.len());
    for r in refs {
        let value = payloads.secrets.get(&r.secret_id).ok_or_else(|| {
            format!(
                "secret {} was not delivered to this node (the controller sends it with the task)",
                r.secret_name
            )
        })?;
        if r.target.is_empty() || r.target.contains('/') || r.target == "." || r.target == ".." {
            return Err(format!(
                "secret {}: target {:?} is not a file name",
                r.secret_name, r.target
            ));
        }
        values.push((r, value));
    }
    let dir = secrets_dir(root, &task.id);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let size: usize = values
        .iter()
        .map(|(_, v)| v.data.len().div_ceil(PAGE) * PAGE)
        .sum::<usize>()
        + TMPFS_SLACK;
    mount_tmpfs(&dir, size).map_err(|e| format!("secrets tmpfs on {}: {e}", dir.display()))?;
    for (r, value) in values {
        let path = dir.join(&r.target);
        write_file(&path, &value.data, r.uid, r.gid, mode_of(r.mode))
            .map_err(|e| format!("secret {}: {e}", r.secret_name))?;
    }
    Ok(Some(dir))
}

/// A tmpfs only for these files: no devices, no setuid, no execution, never
/// swapped out where the kernel knows `noswap` (6.4 and later).
fn mount_tmpfs(dir: &Path, size: usize) -> Result<(), Errno> {
    let flags = MsFlags::MS_NODEV | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    let base = format!("mode=0755,size={size}");
    let with_noswap = format!("{base},noswap");
    match nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        flags,
        Some(with_noswap.as_str()),
    ) {
        Err(Errno::EINVAL) => nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            flags,
            Some(base.as_str()),
        ),
        other => other,
    }
}

/// Unmounts and removes task `task_id`'s secrets tmpfs, if it has one.
pub(crate) fn unmount_secrets(root: &Path, task_id: &str) {
    let dir = secrets_dir(root, task_id);
    if !dir.exists() {
        return;
    }
    // Detached: a process still holding a file keeps only its own reference.
    match nix::mount::umount2(&dir, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) => {}
        Err(e) => warn!(task = task_id, error = %e, "unmounting the secrets tmpfs failed"),
    }
    if let Err(e) = std::fs::remove_dir(&dir) {
        warn!(task = task_id, error = %e, dir = %dir.display(), "removing the secrets directory failed");
    }
}

/// Writes task's configs under `dir`; returns (target, host file) pairs to
/// bind-mount read-only.
pub(crate) fn write_configs(
    dir: &Path,
    task: &Task,
    payloads: &Payloads,
) -> Result<Vec<(String, PathBuf)>, String> {
    let refs = task
        .spec
        .as_ref()
        .map(|s| s.configs.as_slice())
        .unwrap_or(&[]);
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    let dir = dir.join("configs");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut out = Vec::with_capacity(refs.len());
    for (i, r) in refs.iter().enumerate() {
        let value = payloads.configs.get(&r.config_id).ok_or_else(|| {
            format!(
                "config {} was not delivered to this node (the controller sends it with the task)",
                r.config_name
            )
        })?;
        if value.digest != r.digest {
            return Err(format!(
                "config {} changed since this task was made (a task with the new data replaces it)",
                r.config_name
            ));
        }
        let path = dir.join(i.to_string());
        write_file(&path, &value.data, r.uid, r.gid, mode_of(r.mode))
            .map_err(|e| format!("config {}: {e}", r.config_name))?;
        out.push((r.target.clone(), path));
    }
    Ok(out)
}

/// Writes `data` to a new file owned by uid:gid with `mode`.
fn write_file(path: &Path, data: &[u8], uid: u32, gid: u32, mode: u32) -> Result<(), String> {
    let err = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| err("creating", e))?;
    file.write_all(data).map_err(|e| err("writing", e))?;
    std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|e| err("chown", e))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| err("chmod", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use berth_proto::v1::{ConfigReference, ServiceSpec};

    use super::*;

    #[test]
    fn configs_are_written_with_their_mode_and_checked_against_the_task() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut payloads = Payloads::default();
        payloads.replace(
            Vec::new(),
            vec![ConfigValue {
                id: "c1".into(),
                name: "app".into(),
                data: b"listen 80".to_vec(),
                digest: "d1".into(),
            }],
        );
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let task = |digest: &str| Task {
            id: "t1".into(),
            spec: Some(ServiceSpec {
                configs: vec![ConfigReference {
                    config_id: "c1".into(),
                    config_name: "app".into(),
                    target: "/etc/app.conf".into(),
                    uid,
                    gid,
                    mode: 0o440,
                    digest: digest.into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let files = write_configs(dir.path(), &task("d1"), &payloads).expect("written");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, "/etc/app.conf");
        assert_eq!(std::fs::read(&files[0].1).expect("read"), b"listen 80");
        let mode = std::fs::metadata(&files[0].1)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o440);
        let stale = write_configs(dir.path(), &task("d0"), &payloads).expect_err("stale");
        assert!(
            stale.contains("changed since this task was made"),
            "{stale}"
        );
        payloads.replace(Vec::new(), Vec::new());
        let missing = write_configs(dir.path(), &task("d1"), &payloads).expect_err("missing");
        assert!(missing.contains("was not delivered"), "{missing}");
    }
}
