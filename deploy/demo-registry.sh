#!/usr/bin/env bash
# Starts Debian's docker-registry on 127.0.0.1:5000 (unless one answers there
# already) and pushes a busybox image to it as busybox:1, built with umoci from
# busybox-static and pushed with skopeo. Data under $1 (default /var/lib/berth-dev/registry).
# BERTH_REGISTRY_ADDR serves another address (deploy/local-cluster.sh: its own
# registry, started in a host namespace, which this script then only fills).
set -euo pipefail

dir="${1:-/var/lib/berth-dev/registry}"
addr=${BERTH_REGISTRY_ADDR:-127.0.0.1:5000}
mkdir -p "$dir"

if ! curl -fs "http://$addr/v2/" >/dev/null 2>&1; then
  cat >"$dir/config.yml" <<CONF
version: 0.1
storage: {filesystem: {rootdirectory: $dir/storage}, delete: {enabled: true}}
http: {addr: $addr}
log: {level: warn, accesslog: {disabled: true}}
CONF
  setsid docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 < /dev/null &
  for _ in $(seq 50); do
    curl -fs "http://$addr/v2/" >/dev/null 2>&1 && break
    sleep 0.1
  done
fi

if ! skopeo inspect --tls-verify=false "docker://$addr/busybox:1" >/dev/null 2>&1; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  umoci init --layout "$work/layout"
  umoci new --image "$work/layout:1"
  umoci unpack --image "$work/layout:1" "$work/bundle" >/dev/null
  mkdir -p "$work/bundle/rootfs/bin"
  cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [[ $applet == busybox ]] || ln -sf busybox "$work/bundle/rootfs/bin/$applet"
  done
  umoci repack --image "$work/layout:1" "$work/bundle"
  umoci config --image "$work/layout:1" --config.cmd sh
  skopeo copy --dest-tls-verify=false --quiet "oci:$work/layout:1" "docker://$addr/busybox:1"
fi
echo "registry on $addr serves $addr/busybox:1"
