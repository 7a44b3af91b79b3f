#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs everything CI checks: formatting, clippy,
# and all tests (unit, harness, end-to-end). Must run as root: the tests create
# network namespaces, cgroups and mounts (all inside their own sandboxes).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/prereqs.sh
. scripts/prereqs.sh
check_prereqs scripts/test.sh "the tests create namespaces and cgroups"

deploy/install-deps.sh

# A fresh VM here once had /dev/null turned into a regular file (born while
# packages were installed, before any test ran). berth-runtime rightly refuses
# to mask paths with a /dev/null that is not the null device, and a user
# namespace binds the host's: put the device back, and say so.
if [[ ! -c /dev/null ]]; then
  echo "test.sh: /dev/null is not a character device on this machine; recreating it (c 1 3)" >&2
  rm -f /dev/null
  mknod -m 666 /dev/null c 1 3
fi

export CARGO_TERM_COLOR=never
# Incremental state is useless on a one-shot CI build and doubles the disk it needs.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# One target dir for the whole run: build once, test from the same artifacts.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --all-targets --locked

# One crypto provider for the whole workspace: ring. aws-lc would be a second
# one (rustls then refuses to pick) and builds all of AWS-LC from C.
if cargo tree --workspace --locked --prefix none | grep -q '^aws-lc'; then
  echo "aws-lc is in the dependency tree; berth uses ring only:" >&2
  cargo tree --workspace --locked -i aws-lc-rs >&2 || true
  exit 1
fi

if cargo nextest --version >/dev/null 2>&1; then
  # One process per test: a crashing test cannot take others' namespaces along.
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi

# Nothing of ours may be left on the machine.
if ip netns list | grep -q berth; then
  echo "leftover network namespaces:" >&2
  ip netns list >&2
  exit 1
fi
echo "all checks passed"
