include!("../../build/git_commit.rs");

use std::path::PathBuf;
use std::process::Command;

fn main() {
    emit_git_commit();
    build_init();
}

/// Compiles `init/berth_init.rs`, the container's minimal init, into
/// `$OUT_DIR/berth-init`: a static `no_std` executable of a few KB that
/// `src/init_image.rs` embeds and execs from a sealed memfd. On a target it
/// does not support (only x86_64 and aarch64 Linux), the file is empty and the
/// runtime falls back to its in-process init.
fn build_init() {
    let source = "init/berth_init.rs";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=RUSTC");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("berth-init");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os != "linux" || !matches!(arch.as_str(), "x86_64" | "aarch64") {
        println!(
            "cargo:warning=berth-init is not built for {arch}-{os}: the runtime's in-process init is used"
        );
        std::fs::write(&out, b"").expect("write an empty berth-init");
        return;
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").expect("TARGET");
    let mut cmd = Command::new(rustc);
    cmd.args([
        "--edition",
        "2021",
        "--crate-type",
        "bin",
        "--crate-name",
        "berth_init",
    ])
    .args(["--target", &target])
    .args(["-C", "panic=abort"])
    .args(["-C", "opt-level=s"])
    .args(["-C", "codegen-units=1"])
    .args(["-C", "debuginfo=0"])
    .args(["-C", "strip=symbols"])
    // A static executable with no libc and no start files: `_start` is ours.
    .args(["-C", "relocation-model=static"])
    .args(["-C", "target-feature=+crt-static"])
    .args(["-C", "link-arg=-nostartfiles"])
    .args(["-C", "link-arg=-nostdlib"])
    .args(["-C", "link-arg=-static"]);
    // The same linker cargo uses for the target, when one is configured.
    let key = format!(
        "CARGO_TARGET_{}_LINKER",
        target.to_uppercase().replace(['-', '.'], "_")
    );
    println!("cargo:rerun-if-env-changed={key}");
    if let Some(linker) = std::env::var_os(&key) {
        let mut arg = std::ffi::OsString::from("linker=");
        arg.push(linker);
        cmd.arg("-C").arg(arg);
    }
    cmd.arg("-o").arg(&out).arg(source);
    let status = cmd.status().expect("run rustc for berth-init");
    assert!(status.success(), "compiling {source} failed: {status}");
}
