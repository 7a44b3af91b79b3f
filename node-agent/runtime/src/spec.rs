//! Reading and checking a bundle: config.json (with oci-spec) and its rootfs.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("bundle {}: {source}", path.display())]
    Bundle {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bundle {}: cannot read config.json: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bundle {}: malformed config.json: {source}", path.display())]
    Malformed {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("bundle {}: unknown namespace type {kind:?} in config.json", path.display())]
    UnknownNamespace { path: PathBuf, kind: String },
    #[error("bundle {}: config.json has no {what}", path.display())]
    Missing { path: PathBuf, what: &'static str },
    #[error("bundle {}: rootfs {} does not exist or is not a directory", bundle.display(), rootfs.display())]
    NoRootfs { bundle: PathBuf, rootfs: PathBuf },
    #[error("bundle {}: {what}", path.display())]
    Unsupported { path: PathBuf, what: String },
    #[error("bundle {}: config.json: {what}", path.display())]
    Invalid { path: PathBuf, what: String },
}

/// A loaded bundle.
#[derive(Debug)]
pub struct Bundle {
    /// Absolute bundle directory.
    pub dir: PathBuf,
    /// Absolute rootfs directory.
    pub rootfs: PathBuf,
    pub spec: Spec,
}

const NAMESPACE_TYPES: &[&str] = &[
    "pid", "network", "net", "mount", "mnt", "ipc", "uts", "user", "cgroup", "time",
];

impl Bundle {
    pub fn load(dir: &Path) -> Result<Bundle, SpecError> {
        let dir = std::fs::canonicalize(dir).map_err(|source| SpecError::Bundle {
            path: dir.to_path_buf(),
            source,
        })?;
        let config = dir.join("config.json");
        let text = std::fs::read(&config).map_err(|source| SpecError::Read {
            path: dir.clone(),
            source,
        })?;
        let spec = parse(&dir, &text)?;
        let root = spec.root().as_ref().ok_or_else(|| SpecError::Missing {
            path: dir.clone(),
            what: "root",
        })?;
        let rootfs = dir.join(root.path());
        if !rootfs.is_dir() {
            return Err(SpecError::NoRootfs {
                bundle: dir,
                rootfs,
            });
        }
        let rootfs = std::fs::canonicalize(&rootfs).map_err(|source| SpecError::Bundle {
            path: rootfs.clone(),
            source,
        })?;
        let process = spec.process().as_ref().ok_or_else(|| SpecError::Missing {
            path: dir.clone(),
            what: "process",
        })?;
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(SpecError::Missing {
                path: dir,
                what: "process.args",
            });
        }
        crate::hooks::check(&spec).map_err(|what| SpecError::Invalid {
            path: dir.clone(),
            what,
        })?;
        check_user_namespace(&spec).map_err(|what| SpecError::Invalid {
            path: dir.clone(),
            what: what.into(),
        })?;
        Ok(Bundle { dir, rootfs, spec })
    }
}

/// A new user namespace needs both maps (without them nobody in it has an
/// id), and maps need a user namespace to apply to.
fn check_user_namespace(spec: &Spec) -> Result<(), &'static str> {
    let Some(linux) = spec.linux().as_ref() else {
        return Ok(());
    };
    let user = linux
        .namespaces()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::User);
    let has = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.as_ref().is_some_and(|m| !m.is_empty())
    };
    let maps = has(linux.uid_mappings()) || has(linux.gid_mappings());
    match user {
        None if maps => Err("linux.uidMappings/gidMappings are given without a user namespace"),
        Some(ns)
            if ns.path().as_ref().is_none_or(|p| p.as_os_str().is_empty())
                && !(has(linux.uid_mappings()) && has(linux.gid_mappings())) =>
        {
            Err("a new user namespace needs linux.uidMappings and linux.gidMappings")
        }
        _ => Ok(()),
    }
}

impl Bundle {
    /// Parts of the spec berth-runtime does not apply yet; create prints them so
    /// nobody mistakes them for being in force.
    pub fn ignored(&self) -> Vec<&'static str> {
        let spec = &self.spec;
        let mut out = Vec::new();
        if let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
            if r.block_io().is_some() {
                out.push("linux.resources.blockIO");
            }
            if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
                out.push("linux.resources.hugepageLimits");
            }
            if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
                out.push("linux.resources.unified");
            }
        }
        if let Some(p) = spec.process()
            && (p.apparmor_profile().is_some() || p.selinux_label().is_some())
        {
            out.push("process.apparmorProfile/selinuxLabel");
        }
        out
    }
}

/// Parses config.json, naming an unknown namespace type plainly instead of serde's
/// "unknown variant" deep in the document.
pub fn parse(dir: &Path, text: &[u8]) -> Result<Spec, SpecError> {
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|source| SpecError::Malformed {
            path: dir.to_path_buf(),
            source,
        })?;
    if let Some(namespaces) = value
        .pointer("/linux/namespaces")
        .and_then(|v| v.as_array())
    {
        for ns in namespaces {
            let kind = ns.get("type").and_then(|t| t.as_str()).unwrap_or("");
            if !NAMESPACE_TYPES.contains(&kind) {
                return Err(SpecError::UnknownNamespace {
                    path: dir.to_path_buf(),
                    kind: kind.to_string(),
                });
            }
        }
    }
    serde_json::from_value(value).map_err(|source| SpecError::Malformed {
        path: dir.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_namespace_is_named() {
        let text =
            br#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"},{"type":"bogus"}]}}"#;
        let err = parse(Path::new("/b"), text).unwrap_err().to_string();
        assert!(err.contains("unknown namespace type \"bogus\""), "{err}");
    }

    #[test]
    fn malformed_json_is_reported() {
        let err = parse(Path::new("/b"), b"{not json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("malformed config.json"), "{err}");
    }

    #[test]
    fn ignored_parts_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().expect("linux");
        linux.set_resources(Some(
            oci_spec::runtime::LinuxResourcesBuilder::default()
                .block_io(oci_spec::runtime::LinuxBlockIo::default())
                .build()
                .expect("resources"),
        ));
        spec.set_linux(Some(linux));
        let bundle = Bundle {
            dir: dir.path().to_path_buf(),
            rootfs: dir.path().to_path_buf(),
            spec,
        };
        assert_eq!(bundle.ignored(), vec!["linux.resources.blockIO"]);
    }

    fn with_user_namespace(path: Option<&str>, uid: bool, gid: bool) -> Spec {
        use oci_spec::runtime::{LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType};
        let map = vec![
            LinuxIdMappingBuilder::default()
                .container_id(0u32)
                .host_id(1000u32)
                .size(10u32)
                .build()
                .expect("mapping"),
        ];
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().expect("linux");
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        let mut ns = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::User);
        if let Some(path) = path {
            ns = ns.path(path);
        }
        namespaces.push(ns.build().expect("namespace"));
        linux.set_namespaces(Some(namespaces));
        linux.set_uid_mappings(uid.then(|| map.clone()));
        linux.set_gid_mappings(gid.then_some(map));
        spec.set_linux(Some(linux));
        spec
    }

    #[test]
    fn a_user_namespace_and_its_mappings_go_together() {
        assert_eq!(
            check_user_namespace(&with_user_namespace(None, true, true)),
            Ok(())
        );
        assert_eq!(
            check_user_namespace(&with_user_namespace(None, true, false)),
            Err("a new user namespace needs linux.uidMappings and linux.gidMappings")
        );
        // A joined namespace has its maps already.
        assert_eq!(
            check_user_namespace(&with_user_namespace(Some("/proc/1/ns/user"), false, false)),
            Ok(())
        );
        let mut spec = with_user_namespace(None, true, true);
        let mut linux = spec.linux().clone().expect("linux");
        linux.set_namespaces(Some(Vec::new()));
        spec.set_linux(Some(linux));
        assert_eq!(
            check_user_namespace(&spec),
            Err("linux.uidMappings/gidMappings are given without a user namespace")
        );
    }

    #[test]
    fn default_spec_roundtrips() {
        let text = serde_json::to_vec(&Spec::default()).expect("serialize");
        let spec = parse(Path::new("/b"), &text).expect("parse");
        assert_eq!(spec.hostname().as_deref(), Some("youki"));
    }
}
