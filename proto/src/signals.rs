//! Stop signals as services give them (`--stop-signal`): "SIGTERM", "TERM",
//! "term" or a number. The controller refuses anything else when a service is
//! created or updated, and the CLI before it sends; the agent hands the name on
//! to the OCI runtime (`berth_runtime::signal::canonical`, which knows the
//! platform's signals through nix).

/// Linux's standard signals by number (1..=31), as `kill -l` names them.
const NAMES: &[&str] = &[
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// Real-time signals go up to this number (SIGRTMAX on Linux).
const MAX_NUMBER: u32 = 64;

/// A stop signal no Linux signal has.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown stop signal {0:?}: give a name such as SIGTERM, TERM or SIGQUIT, or a number from 1 to 64"
)]
pub struct UnknownSignal(pub String);

/// The signal's number: "SIGQUIT", "QUIT", "quit" and "3" are all 3.
pub fn number(signal: &str) -> Result<u32, UnknownSignal> {
    let text = signal.trim();
    let unknown = || UnknownSignal(signal.to_string());
    if let Ok(n) = text.parse::<u32>() {
        return (1..=MAX_NUMBER)
            .contains(&n)
            .then_some(n)
            .ok_or_else(unknown);
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u32 + 1)
        .ok_or_else(unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_taken_as_docker_takes_them() {
        assert_eq!(number("SIGTERM"), Ok(15));
        assert_eq!(number("TERM"), Ok(15));
        assert_eq!(number("sigquit"), Ok(3));
        assert_eq!(number("9"), Ok(9));
        assert_eq!(number("SIGSYS"), Ok(31));
        assert_eq!(number("40"), Ok(40));
    }

    #[test]
    fn unknown_signals_are_refused_with_the_name() {
        for bad in ["SIGNOPE", "0", "65", "", "TERM2"] {
            let err = number(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
