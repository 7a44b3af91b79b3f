//! Local commands (tools the tests and benchmarks drive on the machine itself,
//! not inside a test host): umoci, skopeo, openssl, tar, docker.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Runs `program` to completion and returns its stdout; a non-zero exit fails
/// with both its outputs.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("failed to run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
