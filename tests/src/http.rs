//! A plain HTTP/1.0 GET for tests that ask a published port or a task: a
//! shell line with busybox's nc (Debian's busybox-static wget crashes), and
//! the body of the answer.

use std::fmt::Display;

/// The shell line that asks `host:port` for `path` with `nc` (the command
/// that runs nc where the line runs: `nc` in a busybox container, `busybox nc`
/// on a test host).
pub fn get_script(nc: &str, host: impl Display, port: u16, path: &str) -> String {
    format!("printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | {nc} -w 2 {host} {port}")
}

/// The body of an HTTP answer, trimmed; None when there is none.
pub fn body_of(stdout: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stdout);
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.trim().to_string())
        .filter(|b| !b.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_what_follows_the_headers() {
        assert_eq!(
            body_of(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello\n"),
            Some("hello".to_string())
        );
        assert_eq!(body_of(b"HTTP/1.0 200 OK\r\n\r\n"), None);
        assert_eq!(body_of(b""), None);
        assert_eq!(
            get_script("nc", "10.0.0.1", 80, "/x"),
            "printf 'GET /x HTTP/1.0\\r\\n\\r\\n' | nc -w 2 10.0.0.1 80"
        );
    }
}
