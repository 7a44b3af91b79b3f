#!/usr/bin/env bash
# Sets up a fresh Debian machine and builds berth's binaries in release mode, then
# shows them. (Once `berth dev` exists this starts it with a demo service.)
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/install-deps.sh
cargo build --release --locked --bins
for bin in berth berth-controller berth-agent berth-runtime; do
  "target/release/$bin" --version
done
