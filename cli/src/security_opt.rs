//! `--security-opt` as Docker spells it, for the seccomp choice:
//! `seccomp=unconfined`, `seccomp=builtin` (the default profile) or
//! `seccomp=PATH` of a profile in Docker's JSON format, read here and sent
//! inline (the nodes need not have the file).

use anyhow::{Context, Result, bail};
use berth_agent::supervisor::seccomp_profile::Profile;
use berth_proto::v1::{Seccomp, seccomp::Mode};

/// The seccomp choice of `opts` (the last one wins, as in Docker); `None`
/// when no option names seccomp.
pub fn seccomp_of(opts: &[String]) -> Result<Option<Seccomp>> {
    let mut choice = None;
    for opt in opts {
        // Docker also takes the older "key:value" form.
        let Some((key, value)) = opt.split_once('=').or_else(|| opt.split_once(':')) else {
            bail!("security option {opt:?} is not KEY=VALUE (seccomp=unconfined or seccomp=PATH)");
        };
        if key != "seccomp" {
            bail!(
                "security option {key:?} is not supported (only seccomp=unconfined|builtin|PATH)"
            );
        }
        choice = Some(match value {
            "unconfined" => Seccomp {
                mode: Mode::Unconfined as i32,
                profile_json: String::new(),
            },
            "builtin" => Seccomp::default(),
            "" => bail!("security option seccomp= needs unconfined, builtin or a profile's path"),
            path => {
                let json = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read seccomp profile {path}"))?;
                Profile::parse(&json).with_context(|| format!("seccomp profile {path}"))?;
                Seccomp {
                    mode: Mode::Custom as i32,
                    profile_json: json,
                }
            }
        });
    }
    Ok(choice)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unconfined_builtin_and_none() {
        assert_eq!(seccomp_of(&[]).unwrap(), None);
        let off = seccomp_of(&opts(&["seccomp=unconfined"])).unwrap().unwrap();
        assert_eq!(off.mode, Mode::Unconfined as i32);
        let old_form = seccomp_of(&opts(&["seccomp:unconfined"])).unwrap().unwrap();
        assert_eq!(old_form, off);
        let back = seccomp_of(&opts(&["seccomp=unconfined", "seccomp=builtin"]))
            .unwrap()
            .unwrap();
        assert_eq!(back.mode, Mode::Default as i32);
    }

    #[test]
    fn a_profile_file_is_sent_inline_and_a_bad_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        let json = r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO"}]}"#;
        std::fs::write(&good, json).unwrap();
        let custom = seccomp_of(&[format!("seccomp={}", good.display())])
            .unwrap()
            .unwrap();
        assert_eq!(custom.mode, Mode::Custom as i32);
        assert_eq!(custom.profile_json, json);
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#).unwrap();
        let err = seccomp_of(&[format!("seccomp={}", bad.display())]).unwrap_err();
        assert!(format!("{err:#}").contains("bad.json"), "{err:#}");
        let missing = seccomp_of(&opts(&["seccomp=/no/such/profile.json"])).unwrap_err();
        assert!(
            format!("{missing:#}").contains("cannot read"),
            "{missing:#}"
        );
    }

    #[test]
    fn other_options_are_refused_by_name() {
        let err = seccomp_of(&opts(&["apparmor=unconfined"])).unwrap_err();
        assert!(
            err.to_string().contains("\"apparmor\" is not supported"),
            "{err}"
        );
        assert!(seccomp_of(&opts(&["no-new-privileges"])).is_err());
        assert!(seccomp_of(&opts(&["seccomp="])).is_err());
    }
}
