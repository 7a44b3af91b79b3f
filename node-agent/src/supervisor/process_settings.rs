//! What a Compose service says about its container's process beyond the
//! command: ulimits as OCI `process.rlimits`, `--init` (tini bind-mounted as
//! Docker's `/sbin/docker-init` and put before the command as PID 1), and
//! container labels as OCI annotations.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use berth_proto::v1::ServiceSpec;
use oci_spec::runtime::{Mount, MountBuilder, PosixRlimit, PosixRlimitBuilder, PosixRlimitType};

/// Where the init is in the container (Docker's path).
pub const INIT_TARGET: &str = "/sbin/docker-init";
/// The init on the host: tini's static build (Debian package `tini`), which
/// needs nothing of the image.
pub const DEFAULT_INIT_BINARY: &str = "/usr/bin/tini-static";

/// The service's ulimits as OCI rlimits (`RLIMIT_NOFILE`; -1: unlimited).
/// The controller checked them; a name oci-spec does not know is still an
/// error here, never a limit silently left out.
pub fn rlimits(spec: &ServiceSpec) -> Result<Vec<PosixRlimit>, String> {
    spec.ulimits
        .iter()
        .map(|u| {
            berth_proto::ulimits::check(u).map_err(|e| e.to_string())?;
            let typ: PosixRlimitType = berth_proto::ulimits::oci_name(&u.name)
                .parse()
                .map_err(|_| format!("ulimit {}: unknown to oci-spec", u.name))?;
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(berth_proto::ulimits::as_rlim(u.soft))
                .hard(berth_proto::ulimits::as_rlim(u.hard))
                .build()
                .map_err(|e| format!("ulimit {}: {e}", u.name))
        })
        .collect()
}

/// The init of an `--init` task on this host, or why there is none.
pub fn find_init(binary: &Path) -> Result<PathBuf, String> {
    match std::fs::metadata(binary) {
        Ok(m) if m.is_file() => Ok(binary.to_path_buf()),
        Ok(_) => Err(format!(
            "--init: {} is not a file (install the Debian package tini)",
            binary.display()
        )),
        Err(e) => Err(format!(
            "--init: the init {} is missing on this node ({e}): install the Debian package \
             tini (deploy/install-deps.sh does)",
            binary.display()
        )),
    }
}

/// The read-only bind of the init (executable: no `noexec`).
pub fn init_mount(binary: &Path) -> Result<Mount, String> {
    MountBuilder::default()
        .destination(INIT_TARGET)
        .typ("bind")
        .source(binary)
        .options(
            ["rbind", "ro", "nosuid", "nodev"]
                .map(String::from)
                .to_vec(),
        )
        .build()
        .map_err(|e| e.to_string())
}

/// The process under the init: `/sbin/docker-init -- ARGS...`.
pub fn under_init(args: Vec<String>) -> Vec<String> {
    [INIT_TARGET.to_string(), "--".to_string()]
        .into_iter()
        .chain(args)
        .collect()
}

/// The container's annotations: its labels, then berth's own (which a label
/// cannot replace).
pub fn annotations(spec: &ServiceSpec, own: HashMap<String, String>) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = spec
        .container_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.extend(own);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::Ulimit;

    #[test]
    fn ulimits_become_rlimits_with_unlimited_as_infinity() {
        let spec = ServiceSpec {
            ulimits: vec![
                Ulimit {
                    name: "nofile".into(),
                    soft: 123,
                    hard: 456,
                },
                Ulimit {
                    name: "core".into(),
                    soft: -1,
                    hard: -1,
                },
            ],
            ..Default::default()
        };
        let limits = rlimits(&spec).expect("rlimits");
        assert_eq!(limits[0].typ(), PosixRlimitType::RlimitNofile);
        assert_eq!((limits[0].soft(), limits[0].hard()), (123, 456));
        assert_eq!(limits[1].typ(), PosixRlimitType::RlimitCore);
        assert_eq!(limits[1].hard(), u64::MAX);
        // Every name the controller accepts has an OCI type.
        for name in berth_proto::ulimits::NAMES {
            let one = ServiceSpec {
                ulimits: vec![Ulimit {
                    name: name.to_string(),
                    soft: 1,
                    hard: 1,
                }],
                ..Default::default()
            };
            rlimits(&one).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let bad = ServiceSpec {
            ulimits: vec![Ulimit {
                name: "nofile".into(),
                soft: 2,
                hard: 1,
            }],
            ..Default::default()
        };
        assert!(rlimits(&bad).is_err());
    }

    #[test]
    fn the_init_is_found_mounted_and_put_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("tini-static");
        let err = find_init(&missing).expect_err("missing");
        assert!(err.contains("install the Debian package tini"), "{err}");
        std::fs::write(&missing, b"").expect("write");
        assert_eq!(find_init(&missing), Ok(missing.clone()));
        let mount = init_mount(&missing).expect("mount");
        assert_eq!(mount.destination(), Path::new(INIT_TARGET));
        let options = mount.options().clone().unwrap_or_default();
        assert!(options.contains(&"ro".to_string()));
        assert!(!options.contains(&"noexec".to_string()));
        assert_eq!(
            under_init(vec!["sh".into(), "-c".into(), "x".into()]),
            ["/sbin/docker-init", "--", "sh", "-c", "x"]
        );
    }

    #[test]
    fn labels_are_annotations_that_cannot_replace_berths() {
        let spec = ServiceSpec {
            container_labels: [
                ("team".to_string(), "a".to_string()),
                ("berth.task.id".to_string(), "forged".to_string()),
            ]
            .into(),
            ..Default::default()
        };
        let own = [("berth.task.id".to_string(), "t1".to_string())].into();
        let out = annotations(&spec, own);
        assert_eq!(out["team"], "a");
        assert_eq!(out["berth.task.id"], "t1");
    }
}
