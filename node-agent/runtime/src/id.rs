//! Container ids. An id names the container's state directory (and, by
//! default, its cgroup), so it must be one plain path component; the rule is
//! runc's (letters, digits, `-`, `_`, `.`, `+`), capped at the length of a file
//! name. berth-agent checks task ids with the same rule before it uses them as
//! container ids.

/// An id that is not a plain, valid file name.
#[derive(Debug, thiserror::Error)]
#[error("invalid container id {0:?}: use 1-255 letters, digits, '-', '_', '.', '+'")]
pub struct InvalidId(pub String);

/// The longest id: NAME_MAX, as the id is a directory name.
pub const MAX_LEN: usize = 255;

/// Checks that `id` can name a container.
pub fn validate(id: &str) -> Result<(), InvalidId> {
    let ok = !id.is_empty()
        && id.len() <= MAX_LEN
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(InvalidId(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(validate("web-1.task_2").is_ok());
        assert!(validate("../etc").is_err());
        assert!(validate("a/b").is_err());
        assert!(validate("").is_err());
        assert!(validate("..").is_err());
        assert!(validate(&"a".repeat(MAX_LEN)).is_ok());
        assert!(validate(&"a".repeat(MAX_LEN + 1)).is_err());
    }
}
