#!/usr/bin/env bash
# The OCI runtime conformance suite: the validation programs of
# opencontainers/runtime-tools, run against berth-runtime and runc side by
# side on this machine, as a pass/skip/fail table.
#
# Usage: scripts/oci-conformance.sh [PATTERN...]
#   PATTERN: only programs whose name contains one of them (e.g. linux_ns hooks).
# Environment:
#   RUNTIME_TOOLS_DIR  where the suite's sources are kept (default /var/cache/berth/runtime-tools)
#   BERTH_RUNTIME      the berth-runtime binary (default: built here, release)
#   OUT                where each program's output goes (default target/oci-conformance)
#
# The suite is built offline from its vendored sources with Debian's golang-go,
# at the last commit that builds with Debian 12's Go 1.19 (e931285, March 2023).
# Counting rule: a program passes when it prints at least one `ok` line, no
# `not ok` line and no "error" diagnostic, and exits 0; it skips when it
# asserts nothing and exits 0; anything else fails.
# Exit status: 1 when a program passes under runc and not under berth-runtime,
# or runc skips it cleanly and berth-runtime fails it; else 0.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/prereqs.sh
. scripts/prereqs.sh
check_prereqs scripts/oci-conformance.sh "runtimes need namespaces, cgroups and mounts"

commit=e931285f4b699ed577fca8327cbb3c51954aac2a
src=${RUNTIME_TOOLS_DIR:-/var/cache/berth/runtime-tools}
out=${OUT:-$PWD/target/oci-conformance}

missing=()
for p in golang-go git runc make; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [[ ! -d $src/.git ]]; then
  mkdir -p "$(dirname "$src")"
  git clone -q https://github.com/opencontainers/runtime-tools "$src"
fi
if [[ $(git -C "$src" rev-parse HEAD) != "$commit" ]]; then
  git -C "$src" fetch -q origin 2>/dev/null || true
  git -C "$src" checkout -q "$commit"
fi
echo "building the validation programs of runtime-tools ${commit:0:7} (Go $(go version | awk '{print $3}'))"
(cd "$src" && GOFLAGS=-mod=vendor GOTOOLCHAIN=local make -s runtimetest validation-executables >/dev/null)

if [[ -z ${BERTH_RUNTIME:-} ]]; then
  cargo build -q --release --locked -p berth-runtime
  BERTH_RUNTIME=${CARGO_TARGET_DIR:-$PWD/target}/release/berth-runtime
fi
runc=$(command -v runc)
declare -A runtimes=([berth-runtime]=$BERTH_RUNTIME [runc]=$runc)
order=(berth-runtime runc)

# classify LOG STATUS: pass, skip or fail (the counting rule above).
classify() {
  local log=$1 status=$2 oks nots
  oks=$(grep -c '^ok ' "$log" || true)
  nots=$(grep -c '^not ok ' "$log" || true)
  if [[ $status == 0 && $nots == 0 ]] && ! grep -q '"error"' "$log"; then
    if ((oks > 0)); then echo pass; else echo skip; fi
  else
    echo fail
  fi
}

mapfile -t programs < <(cd "$src" && find validation -name '*.t' -type f | sort)
declare -A result
for program in "${programs[@]}"; do
  name=$(basename "$program" .t)
  if (($# > 0)); then
    wanted=0
    for pattern in "$@"; do [[ $name == *"$pattern"* ]] && wanted=1; done
    ((wanted)) || continue
  fi
  for rt in "${order[@]}"; do
    mkdir -p "$out/$rt"
    log=$out/$rt/$name.log
    status=0
    (cd "$src" && RUNTIME=${runtimes[$rt]} timeout 120 "./$program") >"$log" 2>&1 || status=$?
    result[$rt/$name]=$(classify "$log" "$status")
  done
done

printf '%-40s %-14s %-14s\n' program berth-runtime runc
declare -A totals
regressions=()
for program in "${programs[@]}"; do
  name=$(basename "$program" .t)
  [[ -n ${result[berth-runtime/$name]:-} ]] || continue
  b=${result[berth-runtime/$name]} r=${result[runc/$name]}
  printf '%-40s %-14s %-14s\n' "$name" "$b" "$r"
  totals[berth-runtime/$b]=$((${totals[berth-runtime/$b]:-0} + 1))
  totals[runc/$r]=$((${totals[runc/$r]:-0} + 1))
  if [[ ($r == pass && $b != pass) || ($r == skip && $b == fail) ]]; then
    regressions+=("$name")
  fi
done
for rt in "${order[@]}"; do
  printf '%s: %d passed, %d skipped, %d failed\n' "$rt" \
    "${totals[$rt/pass]:-0}" "${totals[$rt/skip]:-0}" "${totals[$rt/fail]:-0}"
done
echo "outputs: $out/<runtime>/<program>.log"
if ((${#regressions[@]})); then
  echo "runc passes (or skips) and berth-runtime does not: ${regressions[*]}"
  exit 1
fi
