//! `--secret` and `--config` of `service create`, in Docker's syntax:
//! `NAME` or `source=NAME[,target=T][,uid=U][,gid=G][,mode=0440]` (`src=` for
//! `source=`). The controller checks that the objects exist and the targets.

use anyhow::{Context, Result, bail};
use berth_proto::v1::{ConfigReference, SecretReference};

/// One parsed option.
#[derive(Debug, Default, PartialEq)]
struct FileRef {
    source: String,
    target: String,
    uid: u32,
    gid: u32,
    mode: u32,
}

fn parse(text: &str, what: &str) -> Result<FileRef> {
    let mut out = FileRef::default();
    if !text.contains('=') {
        out.source = text.to_string();
    } else {
        for field in text.split(',') {
            let Some((key, value)) = field.split_once('=') else {
                bail!("--{what} {text:?}: {field:?} is not KEY=VALUE");
            };
            match key {
                "source" | "src" => out.source = value.to_string(),
                "target" => out.target = value.to_string(),
                "uid" => {
                    out.uid = value
                        .parse()
                        .with_context(|| format!("--{what} {text:?}: uid {value:?} is not a number"))?
                }
                "gid" => {
                    out.gid = value
                        .parse()
                        .with_context(|| format!("--{what} {text:?}: gid {value:?} is not a number"))?
                }
                "mode" => {
                    out.mode = u32::from_str_radix(value, 8)
                        .ok()
                        .filter(|m| *m <= 0o777)
                        .with_context(|| {
                            format!("--{what} {text:?}: mode {value:?} is not an octal file mode (0000-0777)")
                        })?
                }
                other => bail!(
                    "--{what} {text:?}: unknown field {other:?} (source, target, uid, gid, mode)"
                ),
            }
        }
    }
    if out.source.is_empty() {
        bail!("--{what} {text:?}: no {what} name (NAME or source=NAME)");
    }
    Ok(out)
}

pub fn secret(text: &str) -> Result<SecretReference> {
    let r = parse(text, "secret")?;
    Ok(SecretReference {
        secret_name: r.source,
        target: r.target,
        uid: r.uid,
        gid: r.gid,
        mode: r.mode,
        ..Default::default()
    })
}

pub fn config(text: &str) -> Result<ConfigReference> {
    let r = parse(text, "config")?;
    Ok(ConfigReference {
        config_name: r.source,
        target: r.target,
        uid: r.uid,
        gid: r.gid,
        mode: r.mode,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_syntax_parses_and_bad_fields_are_named() {
        let bare = secret("db").expect("bare");
        assert_eq!(
            (bare.secret_name.as_str(), bare.target.as_str()),
            ("db", "")
        );
        let full = secret("src=db,target=pw,uid=10,gid=20,mode=0400").expect("full");
        assert_eq!(full.secret_name, "db");
        assert_eq!(full.target, "pw");
        assert_eq!((full.uid, full.gid, full.mode), (10, 20, 0o400));
        let c = config("source=app,target=/etc/app.conf").expect("config");
        assert_eq!(
            (c.config_name.as_str(), c.target.as_str()),
            ("app", "/etc/app.conf")
        );
        for (bad, says) in [
            ("source=db,mode=0999", "not an octal file mode"),
            ("source=db,mode=1777", "not an octal file mode"),
            ("source=db,uid=x", "uid \"x\" is not a number"),
            ("target=x", "no secret name"),
            ("source=db,owner=1", "unknown field \"owner\""),
        ] {
            let err = format!("{:#}", secret(bad).expect_err(bad));
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
