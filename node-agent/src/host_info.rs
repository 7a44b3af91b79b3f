//! What `berth info` says of a node's host: kernel, operating system,
//! architecture, cgroup version, and the OCI runtime's own `--version`.

use std::path::Path;
use std::time::Duration;

/// How long the runtime's `--version` may take.
const RUNTIME_VERSION_TIMEOUT: Duration = Duration::from_secs(5);

/// Facts about the host, read when asked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// `uname -r`.
    pub kernel: String,
    /// `uname -m` (the agent's build target, which runs on it).
    pub architecture: String,
    /// PRETTY_NAME of /etc/os-release.
    pub operating_system: String,
    /// "v2" or "v1", as the runtime finds the cgroup hierarchy.
    pub cgroup_version: String,
    pub hostname: String,
}

impl HostFacts {
    pub fn read() -> HostFacts {
        HostFacts {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            architecture: std::env::consts::ARCH.to_string(),
            operating_system: std::fs::read_to_string("/etc/os-release")
                .ok()
                .and_then(|text| pretty_name(&text))
                .unwrap_or_else(|| std::env::consts::OS.to_string()),
            cgroup_version: cgroup_version(),
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// PRETTY_NAME (else NAME) of an os-release file, unquoted.
pub fn pretty_name(os_release: &str) -> Option<String> {
    let value = |key: &str| {
        os_release.lines().find_map(|line| {
            let v = line.trim().strip_prefix(key)?.strip_prefix('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (!v.is_empty()).then(|| v.to_string())
        })
    };
    value("PRETTY_NAME").or_else(|| value("NAME"))
}

fn cgroup_version() -> String {
    match berth_runtime::cgroups::Cgroup::for_container(Path::new("berth")) {
        Ok(berth_runtime::cgroups::Cgroup::V2(_)) => "v2".to_string(),
        Ok(berth_runtime::cgroups::Cgroup::V1(_)) => "v1".to_string(),
        Err(e) => format!("unknown ({e})"),
    }
}

/// The first line of `RUNTIME --version` ("runc version 1.1.12",
/// "berth-runtime 0.1.0 (commit …)"), or why there is none.
pub async fn runtime_version(runtime: &Path) -> String {
    let run = tokio::process::Command::new(runtime)
        .arg("--version")
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(RUNTIME_VERSION_TIMEOUT, run).await {
        Ok(Ok(out)) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
        Ok(Ok(out)) => format!("unknown ({} --version: {})", runtime.display(), out.status),
        Ok(Err(e)) => format!("unknown (cannot run {}: {e})", runtime.display()),
        Err(_) => format!(
            "unknown ({} --version gave no answer within {}s)",
            runtime.display(),
            RUNTIME_VERSION_TIMEOUT.as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_gives_its_pretty_name() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n";
        assert_eq!(
            pretty_name(debian).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(pretty_name("NAME=Alpine\n").as_deref(), Some("Alpine"));
        assert_eq!(pretty_name("ID=x\nPRETTY_NAME=\n"), None);
    }

    #[tokio::test]
    async fn the_runtime_version_is_its_first_line_or_why_not() {
        let dir = tempfile::tempdir().unwrap();
        let rt = dir.path().join("rt");
        std::fs::write(
            &rt,
            "#!/bin/sh\necho 'runc version 1.1.12'\necho 'spec: 1.0.2'\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(runtime_version(&rt).await, "runc version 1.1.12");
        let missing = runtime_version(&dir.path().join("nope")).await;
        assert!(missing.starts_with("unknown (cannot run"), "{missing}");
    }
}
