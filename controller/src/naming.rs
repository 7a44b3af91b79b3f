//! What a name of a service, network, config or secret may be: what DNS
//! accepts as a label (the API and stack deploys check the same rule).

/// `Err` says what is wrong with `name` as the name of a `what`.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.'
        })
        && !name.starts_with('-')
        && !name.starts_with('.');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} name {name:?}: use 1-63 lower-case letters, digits, '-', '_' or '.', \
             starting with a letter or digit"
        ))
    }
}
