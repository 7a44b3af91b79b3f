//! Docker's container defaults and a service's security choices in real
//! containers (berth-runtime and runc): the default seccomp profile is on and
//! blocks `unshare`, `seccomp=unconfined` lifts it, the capability set is
//! Docker's with cap_add/cap_drop applied, `read_only_rootfs` keeps `/`
//! read-only while mounts and /dev/shm stay writable, and `user` runs the task as that uid
//! with no effective capabilities.

#[path = "support/supervisor.rs"]
mod fixture;
mod support;

use std::time::Duration;

use anyhow::{Context, Result};
use berth_proto::v1::{Mount, Seccomp, ServiceSpec, TaskState, mount::Kind, seccomp::Mode};
use fixture::{Env, Rt, Seen, in_private_mounts};
use futures_util::StreamExt;

const T: Duration = Duration::from_secs(60);

/// What the task sees of its own confinement, one `key=value` a line.
const PROBE: &str = "echo seccomp=$(grep '^Seccomp:' /proc/self/status | cut -f2); \
     echo capeff=$(grep '^CapEff:' /proc/self/status | cut -f2); \
     unshare -U true 2>/dev/null && echo unshare=ok || echo unshare=refused; \
     touch /probe 2>/dev/null && echo root=writable || echo root=refused; \
     touch /scratch/probe 2>/dev/null && echo scratch=writable || echo scratch=refused; \
     touch /dev/shm/probe 2>/dev/null && echo shm=writable || echo shm=refused; \
     chown 1 /scratch/probe 2>/dev/null && echo chown=ok || echo chown=refused; \
     echo uid=$(id -u)";

/// CapEff as /proc prints it for a set of "CAP_*" names.
fn cap_eff(names: &[&str]) -> String {
    let mask = names.iter().fold(0u64, |m, n| {
        let bit = berth_proto::capabilities::ALL
            .iter()
            .position(|c| c == n)
            .expect("a known capability");
        m | 1 << bit
    });
    format!("{mask:016x}")
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The probe's output of a task with `edit` applied to its spec.
async fn probe(
    sup: &berth_agent::supervisor::Supervisor,
    rx: &mut Seen,
    env: &Env,
    name: &str,
    edit: impl FnOnce(&mut ServiceSpec),
) -> Result<Vec<String>> {
    let mut task = env.task(name, PROBE);
    let spec = task.spec.as_mut().context("spec")?;
    spec.mounts = vec![Mount {
        kind: Kind::Tmpfs as i32,
        source: String::new(),
        target: "/scratch".into(),
        read_only: false,
        ..Default::default()
    }];
    edit(spec);
    sup.reconcile(vec![task.clone()]);
    let end = rx.end(&task.id, T).await?;
    assert_eq!(end.state, TaskState::Complete as i32, "{name}: {end:?}");
    let lines: Vec<_> = sup.logs(&task.id, false, None).await?.collect().await;
    Ok(lines
        .into_iter()
        .filter_map(|l| l.ok().map(|l| l.text))
        .collect())
}

fn confines(rt: Rt, name: &str) -> Result<()> {
    let env = std::sync::Arc::new(Env::new(name, rt)?);
    let e = env.clone();
    in_private_mounts(move || async move {
        let (sup, rx) = e.open().await?;
        let mut rx = Seen::new(rx);

        let defaults = probe(&sup, &mut rx, &e, "defaults", |_| {}).await?;
        let docker_default = cap_eff(berth_proto::capabilities::DOCKER_DEFAULT);
        // Docker's well-known CapEff for its default set.
        assert_eq!(docker_default, "00000000a80425fb");
        assert_eq!(
            defaults,
            [
                "seccomp=2".to_string(),
                format!("capeff={docker_default}"),
                "unshare=refused".into(),
                "root=writable".into(),
                "scratch=writable".into(),
                "shm=writable".into(),
                "chown=ok".into(),
                "uid=0".into(),
            ]
        );

        let loose = probe(&sup, &mut rx, &e, "loose", |s| {
            s.seccomp = Some(Seccomp {
                mode: Mode::Unconfined as i32,
                profile_json: String::new(),
            });
            s.cap_add = strings(&["net_admin"]);
            s.cap_drop = strings(&["CHOWN"]);
            s.read_only_rootfs = true;
        })
        .await?;
        let tuned =
            berth_proto::capabilities::effective(&strings(&["NET_ADMIN"]), &strings(&["CHOWN"]))?;
        assert!(tuned.contains(&"CAP_NET_ADMIN") && !tuned.contains(&"CAP_CHOWN"));
        assert_eq!(
            loose,
            [
                "seccomp=0".to_string(),
                format!("capeff={}", cap_eff(&tuned)),
                "unshare=ok".into(),
                "root=refused".into(),
                "scratch=writable".into(),
                "shm=writable".into(),
                "chown=refused".into(),
                "uid=0".into(),
            ]
        );

        let user = probe(&sup, &mut rx, &e, "user", |s| {
            s.user = "1000:1000".into();
        })
        .await?;
        assert_eq!(
            user,
            [
                "seccomp=2",
                "capeff=0000000000000000",
                "unshare=refused",
                "root=refused",
                "scratch=writable",
                "shm=writable",
                "chown=refused",
                "uid=1000",
            ]
        );
        Ok(())
    })
}

#[test]
fn security_defaults_and_choices_apply_with_berth_runtime() -> Result<()> {
    confines(Rt::Berth, "sec_b")
}

#[test]
fn security_defaults_and_choices_apply_with_runc() -> Result<()> {
    confines(Rt::Runc, "sec_r")
}
