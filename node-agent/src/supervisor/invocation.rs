//! A command that cannot be invoked, told apart as Docker tells it: the OCI
//! runtime refuses the container's process at create (runc and
//! berth-runtime look the executable up before the start), and its message
//! says why. Docker's codes: 127 for a command not found, 126 for one that
//! is there but cannot be run (moby `translateContainerdStartErr`).

/// The exit code Docker gives a create that failed on the executable, if
/// `message` (the runtime's error) says it did.
pub fn exit_code(message: &str) -> Option<i32> {
    let m = message.to_ascii_lowercase();
    if !m.contains("exec") {
        return None;
    }
    if m.contains("not found") || m.contains("no such file or directory") {
        Some(127)
    } else if m.contains("permission denied") || m.contains("is a directory") {
        Some(126)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::exit_code;

    #[test]
    fn runc_and_berth_runtime_messages_map_to_dockers_codes() {
        // runc
        assert_eq!(
            exit_code(r#"exec: "nope": executable file not found in $PATH"#),
            Some(127)
        );
        assert_eq!(
            exit_code(r#"exec: "/nope": stat /nope: no such file or directory"#),
            Some(127)
        );
        assert_eq!(
            exit_code(r#"exec: "/etc/passwd": permission denied"#),
            Some(126)
        );
        // berth-runtime
        assert_eq!(
            exit_code(r#"executable file "nope" not found in $PATH"#),
            Some(127)
        );
        assert_eq!(
            exit_code(r#"executable file "/etc" cannot be run: is a directory"#),
            Some(126)
        );
        assert_eq!(
            exit_code(r#"executable file "/etc/passwd" cannot be run: permission denied"#),
            Some(126)
        );
        // Anything else is berth's own failure.
        assert_eq!(exit_code("mount /data: no such file or directory"), None);
        assert_eq!(exit_code("cgroup: permission denied"), None);
    }
}
