//! The rules a service's mounts keep, shared by the CLI (which parses
//! `--mount`/`-v`), the controller (which refuses a bad spec at create and
//! update, so nothing changes) and the agent (which builds the container's
//! mounts from them): absolute targets without `..`, one mount per target,
//! volume names as Docker takes them, tmpfs options only on a tmpfs.

use std::collections::BTreeSet;
use std::fmt;

use crate::v1::{Mount, ServiceSpec, mount::Kind};

/// Default permission bits of a tmpfs (Docker's).
pub const DEFAULT_TMPFS_MODE: u32 = 0o1777;
/// Longest volume name (a directory name on the node).
pub const MAX_VOLUME_NAME: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    #[error("mount {mount}: the target must be an absolute path")]
    RelativeTarget { mount: String },
    #[error("mount {mount}: the target must not contain '..'")]
    DotDotTarget { mount: String },
    #[error("mount {mount}: the target must not be /")]
    RootTarget { mount: String },
    #[error("mount {mount}: target {target} is already mounted by {other}")]
    DuplicateTarget {
        mount: String,
        target: String,
        other: String,
    },
    #[error("mount {mount}: a bind needs an absolute source path on the host")]
    RelativeBindSource { mount: String },
    #[error("mount {mount}: the source must not contain '..'")]
    DotDotSource { mount: String },
    #[error("mount {mount}: {why}")]
    VolumeName { mount: String, why: String },
    #[error("mount {mount}: a tmpfs takes no source")]
    TmpfsSource { mount: String },
    #[error("mount {mount}: tmpfs mode {mode:o} is not a permission mode (0 to 7777 octal)")]
    TmpfsMode { mount: String, mode: u32 },
    #[error("mount {mount}: {option} is only for type=tmpfs")]
    TmpfsOption { mount: String, option: &'static str },
    #[error("mount {mount}: volume labels are only for type=volume")]
    VolumeLabels { mount: String },
    #[error("mount {mount}: mount type {kind} is unknown")]
    UnknownKind { mount: String, kind: i32 },
}

/// A mount as Docker's `--mount` writes it: `type=volume,source=data,target=/data,readonly`.
pub struct Described<'a>(pub &'a Mount);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        let kind = match Kind::try_from(m.kind) {
            Ok(Kind::Bind) => "bind",
            Ok(Kind::Tmpfs) => "tmpfs",
            Ok(Kind::Volume) => "volume",
            Err(_) => "unknown",
        };
        write!(f, "type={kind}")?;
        if !m.source.is_empty() {
            write!(f, ",source={}", m.source)?;
        }
        write!(f, ",target={}", m.target)?;
        if m.read_only {
            f.write_str(",readonly")?;
        }
        if m.tmpfs_size_bytes > 0 {
            write!(f, ",tmpfs-size={}", m.tmpfs_size_bytes)?;
        }
        if let Some(mode) = m.tmpfs_mode {
            write!(f, ",tmpfs-mode={mode:o}")?;
        }
        for (k, v) in &m.volume_labels {
            write!(f, ",volume-label={k}={v}")?;
        }
        Ok(())
    }
}

/// Why `name` cannot name a volume: Docker's rule (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`,
/// a directory name on the node), and never `..` anywhere.
pub fn check_volume_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a volume needs a name (source=NAME)".into());
    }
    if name.contains("..") {
        return Err(format!("volume name {name:?} must not contain '..'"));
    }
    if name.len() > MAX_VOLUME_NAME {
        return Err(format!(
            "volume name {name:?} is longer than {MAX_VOLUME_NAME} characters"
        ));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok {
        return Err(format!(
            "volume name {name:?} is not valid: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        ));
    }
    Ok(())
}

fn has_dot_dot(path: &str) -> bool {
    path.split('/').any(|part| part == "..")
}

/// A target as it is compared for duplicates: without trailing slashes and
/// empty or `.` components (`/data/` and `/data/./` are `/data`).
fn clean(target: &str) -> String {
    let parts: Vec<&str> = target
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Checks one mount alone.
pub fn check_mount(m: &Mount) -> Result<(), MountError> {
    let mount = Described(m).to_string();
    if !m.target.starts_with('/') {
        return Err(MountError::RelativeTarget { mount });
    }
    if has_dot_dot(&m.target) {
        return Err(MountError::DotDotTarget { mount });
    }
    if clean(&m.target) == "/" {
        return Err(MountError::RootTarget { mount });
    }
    let kind = Kind::try_from(m.kind).map_err(|_| MountError::UnknownKind {
        mount: mount.clone(),
        kind: m.kind,
    })?;
    if kind != Kind::Tmpfs {
        if m.tmpfs_size_bytes > 0 {
            return Err(MountError::TmpfsOption {
                mount,
                option: "tmpfs-size",
            });
        }
        if m.tmpfs_mode.is_some() {
            return Err(MountError::TmpfsOption {
                mount,
                option: "tmpfs-mode",
            });
        }
    }
    if kind != Kind::Volume && !m.volume_labels.is_empty() {
        return Err(MountError::VolumeLabels { mount });
    }
    match kind {
        Kind::Bind => {
            if !m.source.starts_with('/') {
                return Err(MountError::RelativeBindSource { mount });
            }
            if has_dot_dot(&m.source) {
                return Err(MountError::DotDotSource { mount });
            }
        }
        Kind::Volume => {
            check_volume_name(&m.source).map_err(|why| MountError::VolumeName { mount, why })?;
        }
        Kind::Tmpfs => {
            if !m.source.is_empty() {
                return Err(MountError::TmpfsSource { mount });
            }
            if let Some(mode) = m.tmpfs_mode
                && mode > 0o7777
            {
                return Err(MountError::TmpfsMode { mount, mode });
            }
        }
    }
    Ok(())
}

/// Checks a list of mounts: each alone, then no target twice.
pub fn check_mounts(mounts: &[Mount]) -> Result<(), MountError> {
    let mut seen: Vec<(String, &Mount)> = Vec::new();
    for m in mounts {
        check_mount(m)?;
        let target = clean(&m.target);
        if let Some((_, other)) = seen.iter().find(|(t, _)| *t == target) {
            return Err(MountError::DuplicateTarget {
                mount: Described(m).to_string(),
                target,
                other: Described(other).to_string(),
            });
        }
        seen.push((target, m));
    }
    Ok(())
}

/// Whether two targets name the same place in the container (`--mount-rm`).
pub fn same_target(a: &str, b: &str) -> bool {
    clean(a) == clean(b)
}

/// The names of the named volumes a spec mounts, each once, sorted.
pub fn volume_names(spec: &ServiceSpec) -> BTreeSet<&str> {
    spec.mounts
        .iter()
        .filter(|m| m.kind == Kind::Volume as i32)
        .map(|m| m.source.as_str())
        .collect()
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
    fn good_mounts_pass() {
        let mounts = vec![
            mount(Kind::Volume, "data", "/data"),
            mount(Kind::Bind, "/srv/conf", "/etc/app"),
            Mount {
                tmpfs_size_bytes: 64 << 20,
                tmpfs_mode: Some(0o700),
                ..mount(Kind::Tmpfs, "", "/run")
            },
        ];
        assert_eq!(check_mounts(&mounts), Ok(()));
    }

    #[test]
    fn targets_must_be_absolute_without_dot_dot_and_unique() {
        let err = check_mount(&mount(Kind::Volume, "data", "data")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mount type=volume,source=data,target=data: the target must be an absolute path"
        );
        let err = check_mount(&mount(Kind::Volume, "data", "/a/../etc")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mount type=volume,source=data,target=/a/../etc: the target must not contain '..'"
        );
        assert!(matches!(
            check_mount(&mount(Kind::Tmpfs, "", "/")),
            Err(MountError::RootTarget { .. })
        ));
        let err = check_mounts(&[
            mount(Kind::Volume, "a", "/data"),
            mount(Kind::Tmpfs, "", "/data/"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "mount type=tmpfs,target=/data/: target /data is already mounted by \
             type=volume,source=a,target=/data"
        );
    }

    #[test]
    fn volume_names_follow_docker_and_never_hold_dot_dot() {
        for good in ["data", "a.b", "web_1-data", "9"] {
            assert_eq!(check_volume_name(good), Ok(()), "{good}");
        }
        for bad in ["", "..", "a..b", "-x", ".x", "a/b", "a b", &"x".repeat(256)] {
            assert!(check_volume_name(bad).is_err(), "{bad:?}");
        }
        let err = check_mount(&mount(Kind::Volume, "a..b", "/d")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mount type=volume,source=a..b,target=/d: volume name \"a..b\" must not contain '..'"
        );
    }

    #[test]
    fn bind_sources_are_absolute_and_tmpfs_options_only_on_tmpfs() {
        assert!(matches!(
            check_mount(&mount(Kind::Bind, "srv", "/x")),
            Err(MountError::RelativeBindSource { .. })
        ));
        assert!(matches!(
            check_mount(&mount(Kind::Bind, "/srv/../etc", "/x")),
            Err(MountError::DotDotSource { .. })
        ));
        let sized_volume = Mount {
            tmpfs_size_bytes: 1,
            ..mount(Kind::Volume, "v", "/x")
        };
        assert!(matches!(
            check_mount(&sized_volume),
            Err(MountError::TmpfsOption {
                option: "tmpfs-size",
                ..
            })
        ));
        let bad_mode = Mount {
            tmpfs_mode: Some(0o17777),
            ..mount(Kind::Tmpfs, "", "/x")
        };
        assert_eq!(
            check_mount(&bad_mode).unwrap_err().to_string(),
            "mount type=tmpfs,target=/x,tmpfs-mode=17777: tmpfs mode 17777 is not a \
             permission mode (0 to 7777 octal)"
        );
        assert!(matches!(
            check_mount(&mount(Kind::Tmpfs, "x", "/x")),
            Err(MountError::TmpfsSource { .. })
        ));
        let labelled_bind = Mount {
            volume_labels: [("a".to_string(), "b".to_string())].into(),
            ..mount(Kind::Bind, "/x", "/x")
        };
        assert!(matches!(
            check_mount(&labelled_bind),
            Err(MountError::VolumeLabels { .. })
        ));
        let unknown = Mount {
            kind: 9,
            ..mount(Kind::Bind, "/x", "/x")
        };
        assert!(matches!(
            check_mount(&unknown),
            Err(MountError::UnknownKind { kind: 9, .. })
        ));
    }

    #[test]
    fn volume_names_of_a_spec_are_listed_once() {
        let spec = ServiceSpec {
            mounts: vec![
                mount(Kind::Volume, "b", "/b"),
                mount(Kind::Volume, "a", "/a"),
                mount(Kind::Volume, "b", "/b2"),
                mount(Kind::Bind, "/c", "/c"),
            ],
            ..Default::default()
        };
        assert_eq!(
            volume_names(&spec).into_iter().collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(same_target("/data/", "/data"));
    }
}
