#!/usr/bin/env bash
# Sets up a fresh Debian machine, builds berth, and runs the main job: `berth dev`
# (a single-host cluster: controller + agent in one process) with a demo service
# whose image comes from a local registry. Ctrl-C stops berth dev; the demo's
# containers keep running and are re-adopted by the next `berth dev`.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/prereqs.sh
. scripts/prereqs.sh
check_prereqs scripts/dev.sh "containers need namespaces and cgroups"

# For the newcomer test (tests/tests/newcomer.rs), which runs this script in
# a test host: binaries already built (no build), an install prefix and a data
# dir of its own, more `berth dev` arguments. Unset for everyone else.
bin=${BERTH_DEV_BIN_DIR:-}
prefix=${BERTH_DEV_PREFIX:-/usr/local/bin}
data=${BERTH_DEV_DATA_DIR:-/var/lib/berth-dev}
read -r -a dev_args <<<"${BERTH_DEV_ARGS:-}"

deploy/install-deps.sh
if [[ -z $bin ]]; then
  scripts/build-release.sh --locked
  bin=${CARGO_TARGET_DIR:-$PWD/target}/release
fi
binaries=(berth berth-controller berth-agent berth-shim berth-runtime)
for b in "${binaries[@]}"; do "$bin/$b" --version; done

# On PATH, so that `berth ...` works in any terminal. Undo: see README.md.
mkdir -p "$prefix"
for b in "${binaries[@]}"; do install -m 0755 "$bin/$b" "$prefix/$b"; done
echo "installed ${binaries[*]} in $prefix (remove them with: rm ${binaries[*]/#/$prefix/})"

deploy/demo-registry.sh "$data/registry"

"$prefix/berth" dev --data-dir "$data" --insecure-registry 127.0.0.1:5000 "${dev_args[@]}" &
dev=$!
trap 'kill -INT $dev 2>/dev/null || true' INT TERM

berth() { "$prefix/berth" "$@"; }
for _ in $(seq 100); do
  berth node ls --format json 2>/dev/null | grep -q '"ready"' && break
  sleep 0.2
done
# shellcheck disable=SC2016 # $(hostname) is for the container's shell
berth service inspect demo >/dev/null 2>&1 ||
  berth service create demo --image 127.0.0.1:5000/busybox:1 --replicas 3 --publish 8080:80 \
    -- sh -c 'mkdir -p /www && echo "hello from $(hostname)" >/www/index.html && httpd -p 80 -h /www &&
              while true; do echo "hello from $(hostname)"; sleep 5; done'
for _ in $(seq 100); do
  [[ $(berth service ps demo --format json | grep -c '"state": "running"') -ge 3 ]] && break
  sleep 0.2
done
berth service ls
berth service ps demo
berth service logs demo --tail 1
for _ in $(seq 50); do
  curl -fsS localhost:8080 2>/dev/null && break
  sleep 0.2
done
echo
echo "berth dev is running (pid $dev); in another terminal: berth service ps demo, curl localhost:8080"
wait $dev
