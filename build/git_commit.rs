// Shared by the build scripts of the crates that print `--version`: exports the
// git commit the binary was built from as BERTH_GIT_COMMIT ("unknown" outside git).
fn emit_git_commit() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=BERTH_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves; the paths are relative to the crate directory.
    if let Ok(out) = std::process::Command::new("git")
        .args(["rev-parse", "--absolute-git-dir"])
        .current_dir(root)
        .output()
    {
        let git_dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !git_dir.is_empty() {
            println!("cargo:rerun-if-changed={git_dir}/HEAD");
            println!("cargo:rerun-if-changed={git_dir}/refs/heads");
            println!("cargo:rerun-if-changed={git_dir}/packed-refs");
        }
    }
}
