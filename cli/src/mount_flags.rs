//! Docker's mount flags, for every verb that starts containers (`service
//! create`, `service update --mount-add`, `berth run`): `--mount` in Docker's
//! `key=value,...` form and the short `-v SOURCE:TARGET[:ro]`. Only the syntax
//! is checked here (keys, sizes, modes); the controller checks the rest
//! (absolute targets, `..`, duplicates, names) when the spec is written, so
//! every client gets the same answer.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use berth_proto::v1::{Mount, mount::Kind};
use clap::Args;

/// `--mount` and `-v`, as `service create` and `berth run` take them
/// (`#[command(flatten)]`), turned into the spec's mounts by [`MountFlags::mounts`].
#[derive(Debug, Clone, Default, Args)]
pub struct MountFlags {
    /// A mount: type=volume,source=NAME,target=/data[,readonly][,volume-label=K=V];
    /// type=bind,source=/host/path,target=/x[,readonly]; or
    /// type=tmpfs,target=/run[,tmpfs-size=64m][,tmpfs-mode=1777]. Also src,
    /// dst/destination, ro, readonly=true|false; repeatable.
    #[arg(long = "mount", value_name = "type=...,target=...")]
    pub mount: Vec<String>,
    /// Docker's short form: NAME:/data (a named volume) or /host/path:/x (a
    /// bind), with :ro for read-only; repeatable.
    #[arg(long = "volume", short = 'v', value_name = "SOURCE:TARGET[:ro]")]
    pub volume: Vec<String>,
}

impl MountFlags {
    /// Every `--mount`, then every `-v`, in the order given.
    pub fn mounts(&self) -> Result<Vec<Mount>> {
        let mut out = Vec::new();
        for text in &self.mount {
            out.push(parse_mount(text)?);
        }
        for text in &self.volume {
            out.push(parse_volume(text)?);
        }
        Ok(out)
    }
}

fn parse_bool(flag: &str, key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => bail!("--mount {flag:?}: {key}={value:?} is not true or false"),
    }
}

/// One `--mount` value in Docker's form. Without `type=`, a volume (Docker's
/// default).
pub fn parse_mount(text: &str) -> Result<Mount> {
    let mut kind = None;
    let mut mount = Mount::default();
    let mut labels = BTreeMap::new();
    for field in text.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (field.to_ascii_lowercase(), None),
        };
        let needs = |value: Option<&str>| match value {
            Some(v) => Ok(v.to_string()),
            None => Err(anyhow::anyhow!(
                "--mount {text:?}: {key} needs a value ({key}=...)"
            )),
        };
        match key.as_str() {
            "type" => {
                kind = Some(match needs(value)?.as_str() {
                    "volume" => Kind::Volume,
                    "bind" => Kind::Bind,
                    "tmpfs" => Kind::Tmpfs,
                    other => {
                        bail!("--mount {text:?}: type {other:?} is unknown (volume, bind or tmpfs)")
                    }
                });
            }
            "source" | "src" => mount.source = needs(value)?,
            "target" | "destination" | "dst" => mount.target = needs(value)?,
            "readonly" | "ro" => {
                mount.read_only = match value {
                    None => true,
                    Some(v) => parse_bool(text, &key, v)?,
                }
            }
            "tmpfs-size" => {
                let value = needs(value)?;
                mount.tmpfs_size_bytes = crate::units::parse_size(&value).map_err(|e| {
                    anyhow::anyhow!("--mount {text:?}: tmpfs-size {value:?} is not a size: {e}")
                })?;
            }
            "tmpfs-mode" => {
                let value = needs(value)?;
                let mode = u32::from_str_radix(&value, 8).map_err(|_| {
                    anyhow::anyhow!(
                        "--mount {text:?}: tmpfs-mode {value:?} is not an octal mode (like 1777)"
                    )
                })?;
                mount.tmpfs_mode = Some(mode);
            }
            "volume-label" => {
                let value = needs(value)?;
                let Some((k, v)) = value.split_once('=') else {
                    bail!("--mount {text:?}: volume-label {value:?} is not KEY=VALUE");
                };
                labels.insert(k.to_string(), v.to_string());
            }
            "volume-driver" if value == Some("local") => {}
            "volume-driver" | "volume-opt" | "volume-nocopy" | "volume-subpath"
            | "bind-propagation" | "bind-recursive" | "bind-nonrecursive" | "consistency"
            | "tmpfs-options" => {
                bail!("--mount {text:?}: berth does not support {key}")
            }
            _ => bail!("--mount {text:?}: unknown key {key:?}"),
        }
    }
    let kind = kind.unwrap_or(Kind::Volume);
    if mount.target.is_empty() {
        bail!("--mount {text:?}: a target is required (target=/path)");
    }
    if kind == Kind::Volume && mount.source.is_empty() {
        bail!(
            "--mount {text:?}: a volume needs a name (source=NAME); berth has no anonymous volumes"
        );
    }
    mount.kind = kind as i32;
    mount.volume_labels = labels;
    Ok(mount)
}

/// One `-v` value: `NAME:/data`, `/host/path:/x`, each with `:ro` or `:rw`.
/// A source that starts with `/` is a bind, any other a named volume.
pub fn parse_volume(text: &str) -> Result<Mount> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [source, target] => (*source, *target, ""),
        [source, target, options] => (*source, *target, *options),
        [_] => bail!(
            "-v {text:?}: berth has no anonymous volumes: name one (-v NAME:{text}) or bind a \
             host path (-v /host/path:{text})"
        ),
        _ => bail!("-v {text:?}: expected SOURCE:TARGET[:ro]"),
    };
    if source.is_empty() || target.is_empty() {
        bail!("-v {text:?}: expected SOURCE:TARGET[:ro]");
    }
    let mut read_only = false;
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" => read_only = true,
            "rw" => read_only = false,
            other => bail!("-v {text:?}: option {other:?} is unknown (ro or rw)"),
        }
    }
    let kind = if source.starts_with('/') {
        Kind::Bind
    } else {
        Kind::Volume
    };
    Ok(Mount {
        kind: kind as i32,
        source: source.to_string(),
        target: target.to_string(),
        read_only,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(kind: Kind, source: &str, target: &str, read_only: bool) -> Mount {
        Mount {
            kind: kind as i32,
            source: source.into(),
            target: target.into(),
            read_only,
            ..Default::default()
        }
    }

    #[test]
    fn mount_takes_dockers_keys_and_spellings() {
        assert_eq!(
            parse_mount("type=volume,source=data,target=/data").expect("volume"),
            mount(Kind::Volume, "data", "/data", false)
        );
        assert_eq!(
            parse_mount("src=data,dst=/data,ro").expect("default type"),
            mount(Kind::Volume, "data", "/data", true)
        );
        assert_eq!(
            parse_mount("type=bind,source=/srv,destination=/x,readonly=true").expect("bind"),
            mount(Kind::Bind, "/srv", "/x", true)
        );
        assert_eq!(
            parse_mount("type=bind,source=/srv,target=/x,readonly=false").expect("rw bind"),
            mount(Kind::Bind, "/srv", "/x", false)
        );
        let tmpfs =
            parse_mount("type=tmpfs,target=/run,tmpfs-size=64m,tmpfs-mode=1770").expect("tmpfs");
        assert_eq!(tmpfs.kind, Kind::Tmpfs as i32);
        assert_eq!(tmpfs.tmpfs_size_bytes, 64 << 20);
        assert_eq!(tmpfs.tmpfs_mode, Some(0o1770));
        let labelled =
            parse_mount("type=volume,src=d,dst=/d,volume-label=a=1,volume-label=b=2").expect("l");
        assert_eq!(labelled.volume_labels.len(), 2);
        assert_eq!(
            labelled.volume_labels.get("a").map(String::as_str),
            Some("1")
        );
    }

    #[test]
    fn mount_refuses_what_it_cannot_read() {
        for (text, says) in [
            (
                "type=tmpfs,target=/run,tmpfs-size=lots",
                "tmpfs-size \"lots\" is not a size",
            ),
            (
                "type=tmpfs,target=/run,tmpfs-mode=rwx",
                "tmpfs-mode \"rwx\" is not an octal mode",
            ),
            ("type=nfs,target=/x", "type \"nfs\" is unknown"),
            ("type=volume,target=/x", "berth has no anonymous volumes"),
            ("type=volume,source=a", "a target is required"),
            (
                "type=volume,source=a,target=/a,bogus=1",
                "unknown key \"bogus\"",
            ),
            (
                "type=bind,source=/a,target=/a,bind-propagation=shared",
                "does not support",
            ),
            (
                "type=bind,source=/a,target=/a,readonly=maybe",
                "is not true or false",
            ),
            ("type=volume,source=a,target", "target needs a value"),
        ] {
            let err = parse_mount(text).expect_err(text).to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn short_volumes_tell_a_name_from_a_path() {
        assert_eq!(
            parse_volume("data:/data").expect("volume"),
            mount(Kind::Volume, "data", "/data", false)
        );
        assert_eq!(
            parse_volume("/srv/conf:/etc/app:ro").expect("bind"),
            mount(Kind::Bind, "/srv/conf", "/etc/app", true)
        );
        for bad in ["/data", "a:b:c:d", ":/x", "a:/x:z"] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
        let flags = MountFlags {
            mount: vec!["type=tmpfs,target=/t".into()],
            volume: vec!["v:/v".into()],
        };
        let all = flags.mounts().expect("mounts");
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].source, "v");
    }
}
