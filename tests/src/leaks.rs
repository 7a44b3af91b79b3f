//! Where a secret must not be: searches of files, and of the environments
//! and command lines of processes, for tests that prove a value stayed where
//! it belongs.

use std::path::Path;

/// Regular files under `dir` (not following links; FIFOs and sockets skipped)
/// whose bytes hold `needle`.
pub fn files_holding(dir: &Path, needle: &[u8], found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            files_holding(&path, needle, found);
        } else if meta.is_file()
            && let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            found.push(path.display().to_string());
        }
    }
}

/// berth processes (controllers, agents, shims, runtimes) whose environment
/// or command line holds `needle`.
pub fn processes_holding(needle: &[u8]) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return (0, found);
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains("berth") {
            continue;
        }
        checked += 1;
        for file in ["cmdline", "environ"] {
            let bytes = std::fs::read(dir.join(file)).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(format!("{}/{file}", dir.display()));
            }
        }
    }
    (checked, found)
}
