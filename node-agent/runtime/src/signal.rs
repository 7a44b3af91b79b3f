//! Signal names as runc's `kill` takes them (`SIGTERM`, `TERM`, `term`, `15`),
//! shared with berth-agent, which passes an image's `StopSignal` on to
//! whichever runtime it drives.

use std::str::FromStr;

use nix::sys::signal::Signal;

/// A signal name or number no signal of this platform has.
#[derive(Debug, thiserror::Error)]
#[error("unknown signal {0:?}")]
pub struct UnknownSignal(pub String);

/// `SIGTERM`, `TERM`, `term` or `15` → the signal.
pub fn parse(s: &str) -> Result<Signal, UnknownSignal> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| UnknownSignal(s.into()));
    }
    Signal::from_str(&sig_name(s)).map_err(|_| UnknownSignal(s.into()))
}

/// The spelling every runtime's `kill` accepts: a name as `SIGQUIT` (from
/// `SIGQUIT`, `QUIT` or `quit`), a number as it is; checked to be a signal.
pub fn canonical(s: &str) -> Result<String, UnknownSignal> {
    parse(s)?;
    let s = s.trim();
    Ok(if s.parse::<i32>().is_ok() {
        s.to_string()
    } else {
        sig_name(s)
    })
}

fn sig_name(s: &str) -> String {
    let upper = s.to_ascii_uppercase();
    if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse() {
        assert_eq!(parse("SIGKILL").expect("kill"), Signal::SIGKILL);
        assert_eq!(parse("term").expect("term"), Signal::SIGTERM);
        assert_eq!(parse("9").expect("9"), Signal::SIGKILL);
        assert!(parse("SIGNOPE").is_err());
        assert!(parse("99").is_err());
    }

    #[test]
    fn stop_signals_are_runtime_names() {
        assert_eq!(canonical("SIGQUIT").expect("SIGQUIT"), "SIGQUIT");
        assert_eq!(canonical("quit").expect("quit"), "SIGQUIT");
        assert_eq!(canonical("9").expect("9"), "9");
        assert!(canonical("bogus").is_err());
    }
}
