#!/usr/bin/env bash
# Builds berth's release binaries into ${CARGO_TARGET_DIR:-target}/release:
# everything with `cargo build --release --bins`, then the per-container shim
# again, statically linked. A running container keeps one berth-shim, so its
# resident memory is per container: linked statically it maps only the libc
# code it uses, 1.7 MB resident instead of 2.3 MB with the shared libc and the
# dynamic loader (docs/design/agent.md, "Per-container processes"). The other
# binaries stay dynamic (the agent and controller resolve names through NSS).
# Extra arguments go to the first cargo build (e.g. --locked).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bins "$@"
# `cargo rustc` passes the flag to the final crate only: the shim's own
# link, against the same rlibs. (A plain `cargo build --release` afterwards
# links the shim dynamically again; run this script instead.)
cargo rustc --release --locked -q -p berth-agent --bin berth-shim -- -C target-feature=+crt-static
