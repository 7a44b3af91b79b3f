//! The task spec reaches the container: env, workdir, user, hostname, mounts,
//! limits, a network namespace with only loopback; an OOM kill is named.

#[path = "support/supervisor.rs"]
mod fixture;
mod support;

use std::time::Duration;

use anyhow::Result;
use berth_proto::v1::{Mount, ResourceRequirements, Resources, TaskState, mount::Kind};
use fixture::{Env, Rt, Seen, in_private_mounts, is};

const T: Duration = Duration::from_secs(60);

const SCRIPT: &str = "echo env=$GREETING; echo pwd=$(pwd); echo id=$(id -u):$(id -g); \
     echo host=$(hostname); grep -q ' /scratch tmpfs' /proc/mounts && echo tmpfs=yes; \
     echo bind=$(cat /data/hello); echo links=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ,); \
     while [ ! -e /stop ]; do sleep 0.1; done";

fn applies(rt: Rt, name: &str) -> Result<()> {
    let env = std::sync::Arc::new(Env::new(name, rt)?);
    let shared = env.work.join("shared");
    std::fs::create_dir_all(&shared)?;
    std::fs::write(shared.join("hello"), "from the host")?;
    let e = env.clone();
    in_private_mounts(move || async move {
        let (sup, rx) = e.open().await?;
        let mut rx = Seen::new(rx);
        let mut task = e.task("spec", SCRIPT);
        if let Some(s) = task.spec.as_mut() {
            s.env = vec!["GREETING=hi there".into()];
            s.workdir = "/etc".into();
            s.user = "1000:1001".into();
            s.hostname = "web-1".into();
            s.mounts = vec![
                Mount {
                    kind: Kind::Tmpfs as i32,
                    source: String::new(),
                    target: "/scratch".into(),
                    read_only: false,
                    ..Default::default()
                },
                Mount {
                    kind: Kind::Bind as i32,
                    source: shared.display().to_string(),
                    target: "/data".into(),
                    read_only: true,
                    ..Default::default()
                },
            ];
            s.resources = Some(ResourceRequirements {
                reservations: None,
                limits: Some(Resources {
                    milli_cpus: 250,
                    memory_bytes: 64 << 20,
                    pids: 50,
                }),
            });
        }
        sup.reconcile(vec![task.clone()]);
        rx.until(&task.id, T, is(TaskState::Running)).await?;
        let want = [
            "env=hi there",
            "pwd=/etc",
            "id=1000:1001",
            "host=web-1",
            "tmpfs=yes",
            "bind=from the host",
            "links=lo,",
        ];
        let texts = fixture::log_texts(&sup, &task.id, want.len()).await?;
        assert_eq!(texts, want);
        // Limits, in the container's cgroup below the test's parent.
        let cg = |controller: &str, file: &str| {
            let v1 = std::path::Path::new("/sys/fs/cgroup").join(controller);
            let base = if v1.is_dir() {
                v1
            } else {
                "/sys/fs/cgroup".into()
            };
            std::fs::read_to_string(base.join(&e.cgroup).join(&task.id).join(file))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        if std::path::Path::new("/sys/fs/cgroup/memory").is_dir() {
            assert_eq!(
                cg("memory", "memory.limit_in_bytes"),
                (64u64 << 20).to_string()
            );
            assert_eq!(cg("cpu", "cpu.cfs_quota_us"), "25000");
            assert_eq!(cg("pids", "pids.max"), "50");
        }
        std::fs::write(e.rootfs(&task.id).join("stop"), b"")?;
        let end = rx.end(&task.id, T).await?;
        assert_eq!(end.state, TaskState::Complete as i32, "{end:?}");

        // Over its memory limit: OOM-killed, and the status says so.
        let mut hog = e.task("hog", "head -c 256m /dev/zero | tail");
        if let Some(s) = hog.spec.as_mut() {
            s.resources = Some(ResourceRequirements {
                reservations: None,
                limits: Some(Resources {
                    milli_cpus: 0,
                    memory_bytes: 32 << 20,
                    pids: 0,
                }),
            });
        }
        sup.reconcile(vec![task.clone(), hog.clone()]);
        let end = rx.end(&hog.id, T).await?;
        assert_eq!(end.state, TaskState::Failed as i32, "{end:?}");
        assert!(end.error.contains("OOM"), "{end:?}");
        assert_eq!(end.exit_code, Some(137), "{end:?}");
        Ok(())
    })
}

#[test]
fn the_spec_is_applied_with_berth_runtime() -> Result<()> {
    applies(Rt::Berth, "spec_b")
}

#[test]
fn the_spec_is_applied_with_runc() -> Result<()> {
    applies(Rt::Runc, "spec_r")
}
