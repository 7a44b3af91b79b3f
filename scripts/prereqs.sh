# shellcheck shell=bash
# Sourced by scripts/dev.sh and scripts/test.sh: checks what a fresh machine
# needs before anything is installed or built, and says what is missing and
# how to get it. Usage: check_prereqs SCRIPT-NAME WHY-ROOT

# The minimum Rust version: the workspace's rust-version (what the locked
# crates need).
rust_min_version() {
  sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n1
}

# version_at_least HAVE WANT: true when HAVE >= WANT (dotted numbers).
version_at_least() {
  [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1) == "$2" ]]
}

check_prereqs() {
  local script=$1 why_root=$2 missing=0 want have
  want=$(rust_min_version)
  local get_rust="install Rust >= $want with rustup (https://rustup.rs: curl -sSf https://sh.rustup.rs | sh), then open a new shell or run: . \$HOME/.cargo/env"
  if [[ ! -r /etc/debian_version ]] || ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
    echo "$script: this is not a Debian system (no /etc/debian_version, apt-get or dpkg-query): berth's scripts install their packages with apt-get; use Debian 12 or newer (Ubuntu may work)" >&2
    missing=1
  fi
  if [[ $(id -u) != 0 ]]; then
    echo "$script: not root: run it as root, e.g. sudo $0 ($why_root)" >&2
    missing=1
  fi
  if ! command -v cargo >/dev/null || ! command -v rustc >/dev/null; then
    echo "$script: cargo or rustc not found: $get_rust" >&2
    if [[ -n ${SUDO_USER:-} ]]; then
      echo "$script: (sudo resets PATH: if $SUDO_USER has Rust in ~/.cargo/bin, run: sudo env PATH=\"\$PATH\" $0)" >&2
    fi
    missing=1
  else
    have=$(rustc --version | awk '{print $2}')
    if ! version_at_least "${have%%-*}" "$want"; then
      echo "$script: rustc $have is too old: berth needs Rust >= $want ($get_rust; with rustup: rustup update stable)" >&2
      missing=1
    fi
  fi
  if ((missing)); then
    echo "$script: see \"Prerequisites\" in README.md" >&2
    exit 1
  fi
}
