//! A task's mounts on this node: what the container's `--mount`s need of the
//! host, checked and made before anything else of the task is (a missing
//! bind source fails the task at once, with a message that names it and the
//! node, before an image is pulled or a container made), and the OCI mounts
//! the bundle gets from them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_proto::mounts::DEFAULT_TMPFS_MODE;
use berth_proto::v1::{Mount, ServiceSpec, mount::Kind};
use oci_spec::runtime::MountBuilder;

use crate::volumes::VolumeStore;

/// Each named volume the task mounts, by name: its data directory here.
pub type VolumePaths = BTreeMap<String, PathBuf>;

/// Checks every bind source and makes every volume's data directory (at first
/// use on this node). The error is the task's: it names the mount and `node`.
pub fn prepare(
    spec: &ServiceSpec,
    volumes: &VolumeStore,
    node: &str,
) -> Result<VolumePaths, String> {
    let on_node = if node.is_empty() {
        "on this node".to_string()
    } else {
        format!("on node {node}")
    };
    let mut paths = VolumePaths::new();
    for m in &spec.mounts {
        match Kind::try_from(m.kind) {
            Ok(Kind::Bind) => match std::fs::metadata(&m.source) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(format!("bind source {} does not exist {on_node}", m.source));
                }
                Err(e) => return Err(format!("bind source {} {on_node}: {e}", m.source)),
            },
            Ok(Kind::Volume) => {
                let path = volumes
                    .ensure(&m.source)
                    .map_err(|e| format!("{e} ({on_node})"))?;
                paths.insert(m.source.clone(), path);
            }
            Ok(Kind::Tmpfs) => {}
            Err(_) => return Err(format!("mount kind {} is unknown", m.kind)),
        }
    }
    Ok(paths)
}

/// The OCI mount of one of the spec's mounts.
pub fn oci_mount(m: &Mount, volumes: &VolumePaths) -> Result<oci_spec::runtime::Mount, String> {
    berth_proto::mounts::check_mount(m).map_err(|e| e.to_string())?;
    let ro = if m.read_only { "ro" } else { "rw" };
    let bind = |source: String| {
        (
            "bind",
            source,
            vec!["rbind".to_string(), "rprivate".into(), ro.into()],
        )
    };
    let (typ, source, options) = match Kind::try_from(m.kind) {
        Ok(Kind::Bind) => bind(m.source.clone()),
        Ok(Kind::Volume) => {
            let path = volumes
                .get(&m.source)
                .ok_or_else(|| format!("volume {} was not prepared", m.source))?;
            bind(path.to_string_lossy().into_owned())
        }
        Ok(Kind::Tmpfs) => {
            let mode = m.tmpfs_mode.unwrap_or(DEFAULT_TMPFS_MODE);
            let mut options = vec![
                "nosuid".to_string(),
                "nodev".into(),
                format!("mode={mode:o}"),
                ro.into(),
            ];
            if m.tmpfs_size_bytes > 0 {
                options.push(format!("size={}", m.tmpfs_size_bytes));
            }
            ("tmpfs", "tmpfs".to_string(), options)
        }
        Err(_) => return Err(format!("mount kind {} is unknown", m.kind)),
    };
    MountBuilder::default()
        .destination(&m.target)
        .typ(typ)
        .source(source)
        .options(options)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(kind: Kind, source: &str, target: &str) -> Mount {
        Mount {
            kind: kind as i32,
            source: source.into(),
            target: target.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_bind_source_is_named_with_the_node() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = VolumeStore::new(dir.path());
        let spec = ServiceSpec {
            mounts: vec![mount(Kind::Bind, "/nonexistent/berth-test", "/x")],
            ..Default::default()
        };
        assert_eq!(
            prepare(&spec, &store, "n1").unwrap_err(),
            "bind source /nonexistent/berth-test does not exist on node n1"
        );
    }

    #[test]
    fn volumes_are_made_and_bound_and_tmpfs_takes_size_and_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = VolumeStore::new(dir.path());
        let spec = ServiceSpec {
            mounts: vec![
                Mount {
                    read_only: true,
                    ..mount(Kind::Volume, "data", "/data")
                },
                Mount {
                    tmpfs_size_bytes: 1 << 20,
                    tmpfs_mode: Some(0o700),
                    ..mount(Kind::Tmpfs, "", "/run")
                },
            ],
            ..Default::default()
        };
        let paths = prepare(&spec, &store, "n1").expect("prepare");
        let data = dir.path().join("volumes/data/_data");
        assert!(data.is_dir());
        let volume = oci_mount(&spec.mounts[0], &paths).expect("volume");
        assert_eq!(volume.source().as_deref(), Some(data.as_path()));
        assert_eq!(
            volume.options().as_deref(),
            Some(&["rbind".to_string(), "rprivate".into(), "ro".into()][..])
        );
        let tmpfs = oci_mount(&spec.mounts[1], &paths).expect("tmpfs");
        let options = tmpfs.options().clone().unwrap_or_default();
        assert!(options.contains(&"mode=700".to_string()), "{options:?}");
        assert!(options.contains(&"size=1048576".to_string()), "{options:?}");
        assert!(oci_mount(&spec.mounts[0], &VolumePaths::new()).is_err());
    }
}
