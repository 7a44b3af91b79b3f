//! Finding the berth binaries the suites start.

use std::path::PathBuf;

/// Path of a berth binary (`berth`, `berth-controller`, ...): from BERTH_BIN_DIR if
/// set, else the target directory the test binary itself was built into.
pub fn bin_path(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    // Test binaries live in target/<profile>/deps; binaries in target/<profile>.
    let exe = std::env::current_exe().expect("the test binary has a path");
    let mut dir = exe
        .parent()
        .expect("the test binary is in a directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}
