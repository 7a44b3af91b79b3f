//! Resource limits of a task's processes as services give them (`--ulimit
//! nofile=1024:2048`, Compose `ulimits`): the names Linux has, Docker's
//! `NAME=SOFT[:HARD]` text, and the checks the CLI and the controller share
//! (the agent turns them into OCI `process.rlimits`, `RLIMIT_<NAME>`).

use crate::v1::Ulimit;

/// The limits Linux has, as Docker names them (the RLIMIT_ name without the
/// prefix, lower case).
pub const NAMES: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// -1: no limit (RLIM_INFINITY), as Docker takes it.
pub const UNLIMITED: i64 = -1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UlimitError {
    #[error("ulimit {text:?} is not NAME=SOFT[:HARD] (nofile=1024:2048)")]
    Syntax { text: String },
    #[error("ulimit {name}: unknown name (known: {})", NAMES.join(", "))]
    UnknownName { name: String },
    #[error("ulimit {name}: {value:?} is not a number (-1 for no limit)")]
    NotANumber { name: String, value: String },
    #[error("ulimit {name}: {value} is below -1 (-1 means no limit)")]
    Negative { name: String, value: i64 },
    #[error("ulimit {name}: the soft limit {soft} is above the hard limit {hard}")]
    SoftAboveHard { name: String, soft: i64, hard: i64 },
    #[error("ulimit {name} is given twice")]
    Twice { name: String },
}

/// `NAME=N` (soft = hard = N) or `NAME=SOFT:HARD`, checked.
pub fn parse(text: &str) -> Result<Ulimit, UlimitError> {
    let syntax = || UlimitError::Syntax {
        text: text.to_string(),
    };
    let (name, values) = text.split_once('=').ok_or_else(syntax)?;
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() || values.trim().is_empty() {
        return Err(syntax());
    }
    let number = |value: &str| {
        value
            .trim()
            .parse::<i64>()
            .map_err(|_| UlimitError::NotANumber {
                name: name.clone(),
                value: value.to_string(),
            })
    };
    let (soft, hard) = match values.split_once(':') {
        Some((soft, hard)) => (number(soft)?, number(hard)?),
        None => {
            let n = number(values)?;
            (n, n)
        }
    };
    let ulimit = Ulimit { name, soft, hard };
    check(&ulimit)?;
    Ok(ulimit)
}

/// A known name, values of -1 (no limit) or more, soft not above hard.
pub fn check(ulimit: &Ulimit) -> Result<(), UlimitError> {
    let name = ulimit.name.clone();
    if !NAMES.contains(&name.as_str()) {
        return Err(UlimitError::UnknownName { name });
    }
    for value in [ulimit.soft, ulimit.hard] {
        if value < UNLIMITED {
            return Err(UlimitError::Negative { name, value });
        }
    }
    if as_rlim(ulimit.soft) > as_rlim(ulimit.hard) {
        return Err(UlimitError::SoftAboveHard {
            name,
            soft: ulimit.soft,
            hard: ulimit.hard,
        });
    }
    Ok(())
}

/// Every limit checked, and each name once.
pub fn check_all(ulimits: &[Ulimit]) -> Result<(), UlimitError> {
    let mut seen = std::collections::BTreeSet::new();
    for ulimit in ulimits {
        check(ulimit)?;
        if !seen.insert(ulimit.name.as_str()) {
            return Err(UlimitError::Twice {
                name: ulimit.name.clone(),
            });
        }
    }
    Ok(())
}

/// The value as setrlimit takes it: -1 is RLIM_INFINITY.
pub fn as_rlim(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// The OCI name: `RLIMIT_NOFILE`.
pub fn oci_name(name: &str) -> String {
    format!("RLIMIT_{}", name.to_ascii_uppercase())
}

/// As the flag writes it: `nofile=1024:2048`.
pub fn display(ulimit: &Ulimit) -> String {
    format!("{}={}:{}", ulimit.name, ulimit.soft, ulimit.hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(name: &str, soft: i64, hard: i64) -> Ulimit {
        Ulimit {
            name: name.into(),
            soft,
            hard,
        }
    }

    #[test]
    fn dockers_forms_parse() {
        assert_eq!(parse("nofile=1024:2048"), Ok(limit("nofile", 1024, 2048)));
        assert_eq!(parse("NPROC=50"), Ok(limit("nproc", 50, 50)));
        assert_eq!(parse("core=0:-1"), Ok(limit("core", 0, -1)));
        assert_eq!(parse("memlock=-1"), Ok(limit("memlock", -1, -1)));
        assert_eq!(display(&limit("nofile", 1, 2)), "nofile=1:2");
        assert_eq!(oci_name("nofile"), "RLIMIT_NOFILE");
    }

    #[test]
    fn bad_ones_are_named() {
        let err = |text: &str| parse(text).expect_err(text).to_string();
        assert_eq!(
            err("nofile=2048:1024"),
            "ulimit nofile: the soft limit 2048 is above the hard limit 1024"
        );
        assert!(
            err("files=10").starts_with("ulimit files: unknown name (known: as, core,"),
            "{}",
            err("files=10")
        );
        assert_eq!(
            err("nofile=many"),
            "ulimit nofile: \"many\" is not a number (-1 for no limit)"
        );
        assert_eq!(
            err("nofile"),
            "ulimit \"nofile\" is not NAME=SOFT[:HARD] (nofile=1024:2048)"
        );
        assert_eq!(
            err("nofile=-2"),
            "ulimit nofile: -2 is below -1 (-1 means no limit)"
        );
        assert_eq!(
            err("nofile=-1:10"),
            "ulimit nofile: the soft limit -1 is above the hard limit 10"
        );
        assert_eq!(
            check_all(&[limit("nofile", 1, 1), limit("nofile", 2, 2)])
                .expect_err("twice")
                .to_string(),
            "ulimit nofile is given twice"
        );
    }

    #[test]
    fn every_name_is_known_to_check() {
        for name in NAMES {
            check(&limit(name, 1, 2)).expect(name);
        }
    }
}
