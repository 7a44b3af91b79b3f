#!/usr/bin/env bash
# Installs the Debian packages berth and its tests use. Safe to run again.
set -euo pipefail

packages=(
  iproute2       # ip: links, addresses, routes, namespaces
  nftables       # service VIPs, published ports; test-host cuts
  conntrack      # the agent forgets UDP flows of removed backends
  runc           # reference runtime for differential tests and benchmarks
  busybox-static # a tiny rootfs for test images
  docker-registry # a real OCI registry on loopback for pull tests
  docker.io      # a real one-node Docker Swarm beside berth (tests), bench-services
  umoci          # builds OCI image layouts (images made by tools we did not write)
  skopeo         # pushes them to the registry, writes docker-save archives
  util-linux     # unshare, nsenter, mount
  procps         # ps, for tests that look at processes
  tini           # /usr/bin/tini-static: the init of `--init` tasks
  ca-certificates
  curl           # demo scripts: is the registry up?
  git
  openssl        # image tests: a test CA and certificate for an HTTPS registry
  prometheus     # promtool: the metrics tests check every /metrics endpoint with it
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
