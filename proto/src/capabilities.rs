//! Linux capability names as services give them (`--cap-add`, `--cap-drop`)
//! and the set a task gets, computed as Docker does (moby's
//! `oci/caps.TweakCapabilities`): the controller validates the names with it,
//! the agent builds the container's capability sets and seccomp profile from it.

use std::collections::BTreeSet;

/// Every capability Linux defines, in kernel order (CAP_CHOWN is 0), as the
/// OCI runtime spec spells them.
pub const ALL: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default set (moby's `oci/caps.DefaultCapabilities`). berth-runtime's
/// `caps::DOCKER_DEFAULT` is the same list for a spec that names no
/// capabilities (the runtime depends on no berth crate).
pub const DOCKER_DEFAULT: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The word that stands for every capability in `--cap-add`/`--cap-drop`.
const EVERY: &str = "ALL";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    #[error(
        "unknown capability {name:?} in {list} (names such as NET_ADMIN or CAP_NET_ADMIN, or ALL)"
    )]
    Unknown { name: String, list: &'static str },
}

/// A name as Docker accepts it (any case, with or without `CAP_`), as the
/// spec spells it; `ALL` stays `ALL`.
fn normalize(name: &str, list: &'static str) -> Result<&'static str, CapabilityError> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == EVERY {
        return Ok(EVERY);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    ALL.iter()
        .copied()
        .find(|c| *c == full)
        .ok_or_else(|| CapabilityError::Unknown {
            name: name.to_string(),
            list,
        })
}

fn normalize_all(
    names: &[String],
    list: &'static str,
) -> Result<BTreeSet<&'static str>, CapabilityError> {
    names.iter().map(|n| normalize(n, list)).collect()
}

/// Checks every name of both lists.
pub fn validate(add: &[String], drop: &[String]) -> Result<(), CapabilityError> {
    effective(add, drop).map(|_| ())
}

/// The task's capabilities, in kernel order: Docker's default set less
/// `drop` plus `add`; `add` ALL is every capability less `drop`, `drop` ALL
/// leaves only `add`.
pub fn effective(add: &[String], drop: &[String]) -> Result<Vec<&'static str>, CapabilityError> {
    let add = normalize_all(add, "cap_add")?;
    let drop = normalize_all(drop, "cap_drop")?;
    let keep = |c: &&str| -> bool {
        if add.contains(EVERY) {
            !drop.contains(c)
        } else if drop.contains(EVERY) {
            add.contains(c)
        } else {
            add.contains(c) || (DOCKER_DEFAULT.contains(c) && !drop.contains(c))
        }
    };
    Ok(ALL.iter().copied().filter(keep).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_default_is_dockers_set() {
        let set = effective(&[], &[]).unwrap();
        assert_eq!(set.len(), DOCKER_DEFAULT.len());
        assert!(DOCKER_DEFAULT.iter().all(|c| set.contains(c)));
        assert!(DOCKER_DEFAULT.iter().all(|c| ALL.contains(c)));
    }

    #[test]
    fn names_take_any_case_and_an_optional_prefix() {
        let set = effective(
            &names(&["sys_admin", "CAP_NET_ADMIN", "Cap_Sys_Ptrace"]),
            &names(&["chown", "CAP_KILL"]),
        )
        .unwrap();
        for c in ["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_PTRACE"] {
            assert!(set.contains(&c), "{c} in {set:?}");
        }
        for c in ["CAP_CHOWN", "CAP_KILL"] {
            assert!(!set.contains(&c), "{c} in {set:?}");
        }
        assert_eq!(set.len(), DOCKER_DEFAULT.len() + 3 - 2);
    }

    #[test]
    fn all_adds_or_drops_everything() {
        let every = effective(&names(&["all"]), &names(&["MKNOD"])).unwrap();
        assert_eq!(every.len(), ALL.len() - 1);
        assert!(!every.contains(&"CAP_MKNOD"));
        let only = effective(&names(&["NET_BIND_SERVICE"]), &names(&["ALL"])).unwrap();
        assert_eq!(only, vec!["CAP_NET_BIND_SERVICE"]);
        assert!(effective(&[], &names(&["ALL"])).unwrap().is_empty());
    }

    #[test]
    fn an_unknown_name_is_named() {
        let err = effective(&names(&["NET_ADMIN", "CAP_FLY"]), &[]).unwrap_err();
        assert_eq!(
            err,
            CapabilityError::Unknown {
                name: "CAP_FLY".into(),
                list: "cap_add"
            }
        );
        assert!(err.to_string().contains("\"CAP_FLY\" in cap_add"), "{err}");
        assert!(validate(&[], &names(&["bogus"])).is_err());
        assert!(validate(&names(&["setfcap"]), &names(&["all"])).is_ok());
    }
}
