//! A task's secrets and configs reach its container: secrets on a tmpfs of the
//! task's own at /run/secrets (gone when the task ends), configs as read-only
//! files; a secret the agent does not hold fails the task.

#[path = "support/supervisor.rs"]
mod fixture;
mod support;

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use berth_proto::v1::{ConfigReference, ConfigValue, SecretReference, SecretValue, TaskState};
use fixture::{Env, Rt, Seen, in_private_mounts, is};

const T: Duration = Duration::from_secs(60);

/// Checks the container makes, one line each; the secret itself is compared
/// inside the container, never printed.
const SCRIPT: &str = "[ \"$(cat /run/secrets/pw)\" = hunter2 ] && echo secret=ok; \
     echo config=$(cat /etc/app.conf); echo mode=$(stat -c '%a %u' /run/secrets/pw); \
     grep ' /run/secrets ' /proc/mounts | cut -d' ' -f3,4 | tr ',' ' ' | \
       awk '{printf \"mount=%s\", $1; for (i = 2; i <= NF; i++) if ($i ~ /^(ro|nosuid|nodev|noexec)$/) printf \" %s\", $i; print \"\"}'; \
     echo x 2>/dev/null > /etc/app.conf || echo config=read-only";

/// The mountinfo line of the mount at `path` in this thread's mount namespace.
fn mount_at(path: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap_or_default();
    let path = path.to_string_lossy();
    mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(path.as_ref()))
        .map(str::to_string)
}

fn mounted(path: &Path) -> bool {
    mount_at(path).is_some()
}

/// Whether this kernel's tmpfs takes `noswap` (Linux 6.4 and later).
fn kernel_has_noswap() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 4)
}

fn delivered(rt: Rt, name: &str) -> Result<()> {
    let env = std::sync::Arc::new(Env::new(name, rt)?);
    let secrets_root = env.work.join("secrets");
    let e = env.clone();
    in_private_mounts(move || async move {
        let root = secrets_root.clone();
        let (sup, rx) = e.open_with(move |cfg| cfg.secrets_root = root).await?;
        let mut rx = Seen::new(rx);
        sup.set_payloads(
            vec![SecretValue {
                id: "s1".into(),
                name: "pw".into(),
                data: b"hunter2".to_vec(),
            }],
            vec![ConfigValue {
                id: "c1".into(),
                name: "conf".into(),
                data: b"listen 80".to_vec(),
                digest: "d1".into(),
            }],
        );
        let mut task = e.task(
            "files",
            &format!("{SCRIPT}; while [ ! -e /stop ]; do sleep 0.1; done"),
        );
        if let Some(s) = task.spec.as_mut() {
            s.secrets = vec![SecretReference {
                secret_id: "s1".into(),
                secret_name: "pw".into(),
                target: "pw".into(),
                uid: 1000,
                gid: 0,
                mode: 0o400,
                ..Default::default()
            }];
            s.configs = vec![ConfigReference {
                config_id: "c1".into(),
                config_name: "conf".into(),
                target: "/etc/app.conf".into(),
                digest: "d1".into(),
                ..Default::default()
            }];
        }
        sup.reconcile(vec![task.clone()]);
        rx.until(&task.id, T, is(TaskState::Running)).await?;
        let tmpfs = secrets_root.join(&task.id);
        let line = mount_at(&tmpfs).unwrap_or_default();
        assert!(
            line.contains(" - tmpfs "),
            "no tmpfs at {}: {line}",
            tmpfs.display()
        );
        for option in ["nosuid", "nodev", "noexec"] {
            assert!(line.contains(option), "{option} missing: {line}");
        }
        assert_eq!(line.contains("noswap"), kernel_has_noswap(), "{line}");
        let want = [
            "secret=ok",
            "config=listen 80",
            "mode=400 1000",
            "mount=tmpfs ro nosuid nodev noexec",
            "config=read-only",
        ];
        let texts = fixture::log_texts(&sup, &task.id, want.len()).await?;
        assert_eq!(texts, want);
        std::fs::write(e.rootfs(&task.id).join("stop"), b"")?;
        let end = rx.end(&task.id, T).await?;
        assert_eq!(end.state, TaskState::Complete as i32, "{end:?}");
        assert!(!mounted(&tmpfs), "the tmpfs outlived its task");
        assert!(!tmpfs.exists(), "{} is left", tmpfs.display());

        // A secret this agent was not given: the task fails and says which.
        let mut lost = e.task("lost", "true");
        if let Some(s) = lost.spec.as_mut() {
            s.secrets = vec![SecretReference {
                secret_id: "s2".into(),
                secret_name: "other".into(),
                target: "other".into(),
                ..Default::default()
            }];
        }
        sup.reconcile(vec![lost.clone()]);
        let end = rx.end(&lost.id, T).await?;
        assert_eq!(end.state, TaskState::Failed as i32, "{end:?}");
        assert!(
            end.error.contains("secret other was not delivered"),
            "{end:?}"
        );
        assert!(!secrets_root.join(&lost.id).exists());
        Ok(())
    })
}

#[test]
fn secrets_and_configs_reach_the_container_with_berth_runtime() -> Result<()> {
    delivered(Rt::Berth, "files_b")
}

#[test]
fn secrets_and_configs_reach_the_container_with_runc() -> Result<()> {
    delivered(Rt::Runc, "files_r")
}
