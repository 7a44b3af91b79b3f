//! `berth ... | head` ends quietly when the reader goes away, as other
//! command-line tools do, instead of panicking on the closed pipe.
//!
//! Not by restoring SIGPIPE's default action: that also kills the CLI,
//! silently, when a peer closes a TCP connection during a vectored write
//! (`writev` has no MSG_NOSIGNAL). A controller that ends its unlock server
//! right after answering did exactly that to `berth cluster unlock`. SIGPIPE
//! stays ignored (Rust's default), sockets see EPIPE as an error, and only a
//! failed print to stdout ends the process, with the shell's SIGPIPE status.

/// The exit status a shell reports for a process killed by SIGPIPE.
const CLOSED_PIPE_STATUS: i32 = 128 + 13;

/// Installs a panic hook that turns std's "failed printing to stdout:
/// Broken pipe" into a quiet exit; every other panic goes to the default hook.
pub fn exit_quietly_when_closed() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if is_closed_stdout(panic_text(info.payload())) {
            std::process::exit(CLOSED_PIPE_STATUS);
        }
        default(info);
    }));
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("")
}

fn is_closed_stdout(text: &str) -> bool {
    text.starts_with("failed printing to stdout") && text.contains("Broken pipe")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_broken_stdout_is_quiet() {
        assert!(is_closed_stdout(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(!is_closed_stdout(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
        assert!(!is_closed_stdout("Broken pipe"));
        let text: Box<dyn std::any::Any + Send> = Box::new(String::from("x"));
        assert_eq!(panic_text(text.as_ref()), "x");
    }
}
