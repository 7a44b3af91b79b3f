#!/usr/bin/env bash
# Several berth hosts on one machine, to try multi-host on one box.
#
#   deploy/local-cluster.sh up N     N hosts (1-50), a controller on the first,
#                                    agents on all, the webapp demo stack
#   deploy/local-cluster.sh down     removes everything `up` made
#
# Each host is a network namespace PREFIX-hI (eth0, NET.I/24) whose veth hI
# is a port of the bridge br0 in the namespace PREFIX-fabric; the machine
# reaches the hosts through one veth PREFIXg (NET.254) into that bridge, so
# nothing but that link is added to the machine's own network. Each daemon
# runs in its host's network namespace with a mount namespace and /run of
# its own (as the test harness's hosts do), in the cgroup PREFIX/hI/daemons
# (of cgroup v2, else of the v1 pids hierarchy); containers go below
# PREFIX/hI/containers.
# The registry (busybox:1 for the demo) runs on h1 at NET.1:5000.
#
# `up` first removes what a crashed earlier run left. `down` kills every
# process of those cgroups (daemons, shims, containers), removes the cgroups,
# the namespaces with their links and bridge, any mount under the data and
# run directories, and the data directory.
#
# Settings (environment):
#   BERTH_LC_PREFIX  names of namespaces, cgroups, links (default berthlc; at most 12 characters)
#   BERTH_LC_NET     first three octets of the hosts' /24 (default 10.213.0)
#   BERTH_LC_DIR     data directory (default /var/lib/PREFIX)
#   BERTH_LC_BIN     where berth, berth-controller, berth-agent, berth-shim and berth-runtime are
#                    (default: the directory of berth-agent on PATH, else target/release)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
prefix=${BERTH_LC_PREFIX:-berthlc}
net=${BERTH_LC_NET:-10.213.0}
dir=${BERTH_LC_DIR:-/var/lib/$prefix}
fabric=$prefix-fabric
gw_link=${prefix}g
controller=$net.1:7400
registry=$net.1:5000

say() { echo "local-cluster: $*"; }
die() {
  echo "local-cluster: $*" >&2
  exit 1
}

# Internal: the first command in a daemon's namespaces (see `start`): joins
# its cgroup, mounts its own /run, then becomes the daemon.
if [[ ${1:-} == _exec ]]; then
  echo $$ >"$2/cgroup.procs"
  mount -t tmpfs -o mode=755 tmpfs /run
  shift 2
  exec "$@"
fi

find_bin() {
  if [[ -n ${BERTH_LC_BIN:-} ]]; then
    echo "$BERTH_LC_BIN"
  elif command -v berth-agent >/dev/null; then
    dirname "$(command -v berth-agent)"
  else
    echo "${CARGO_TARGET_DIR:-$here/../target}/release"
  fi
}

check() {
  ((EUID == 0)) || die "run as root (namespaces, cgroups and mounts)"
  [[ ${#prefix} -le 12 && $prefix =~ ^[a-z][a-z0-9]*$ ]] ||
    die "BERTH_LC_PREFIX=$prefix: 1-12 lower-case letters and digits, a letter first"
  [[ $net =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "BERTH_LC_NET=$net is not three octets (e.g. 10.213.0)"
  [[ -n $(track_root) ]] || die "no cgroup v2 at /sys/fs/cgroup and no v1 pids hierarchy"
  local t missing=()
  for t in ip nsenter unshare docker-registry skopeo umoci curl; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  ((${#missing[@]} == 0)) || die "missing ${missing[*]}: run deploy/install-deps.sh"
}

# Mount points of every cgroup hierarchy (v1 controllers, v2).
hierarchies() {
  awk '{ split($0, p, " - "); split(p[2], r, " "); split(p[1], l, " ");
         if (r[1] == "cgroup" || r[1] == "cgroup2") print l[5] }' /proc/self/mountinfo | sort -u
}

# The hierarchy the daemons join, to find their processes again: cgroup v2
# if /sys/fs/cgroup is one, else the v1 pids controller's.
track_root() {
  if [[ $(stat -fc %T /sys/fs/cgroup) == cgroup2fs ]]; then
    echo /sys/fs/cgroup
  else
    awk '{ split($0, p, " - "); split(p[2], r, " "); split(p[1], l, " ");
           if (r[1] == "cgroup" && r[3] ~ /(^|,)pids(,|$)/) print l[5] }' /proc/self/mountinfo | head -1
  fi
}

# Every mount point under the data and run directories, deepest first.
our_mounts() {
  awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

down() {
  local removed=()
  # 1. Every process: daemons, shims, containers, in every hierarchy.
  local root cg i left
  for root in $(hierarchies); do
    cg=$root/$prefix
    [[ -d $cg ]] || continue
    [[ -e $cg/cgroup.kill ]] && echo 1 >"$cg/cgroup.kill"
    for i in $(seq 100); do
      left=$(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
      [[ -z $left ]] && break
      # shellcheck disable=SC2086 # one pid a word
      kill -9 $left 2>/dev/null || true
      sleep 0.1
    done
    for i in $(seq 50); do
      find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [[ -d $cg ]] || break
      sleep 0.1
    done
    [[ -d $cg ]] && die "cannot remove the cgroup $cg (processes left in it?)"
    removed+=("processes and cgroups under $cg")
  done
  # 2. Mounts a daemon made outside its own mount namespace (none, normally).
  local m n=0
  while read -r m; do
    [[ -n $m ]] || continue
    umount -l "$m" && n=$((n + 1))
  done < <(our_mounts)
  ((n)) && removed+=("$n mounts under $dir")
  # 3. The machine's link (first: deleting the fabric would take it away
  # asynchronously), then the namespaces with their links and bridge.
  if ip link show "$gw_link" >/dev/null 2>&1; then
    ip link delete "$gw_link" 2>/dev/null || true
    removed+=("link $gw_link")
  fi
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$prefix-(h[0-9]+|fabric)\$" || true); do
    ip netns delete "$ns"
    removed+=("netns $ns")
  done
  # 4. Data.
  if [[ -d $dir ]]; then
    rm -rf "$dir"
    removed+=("$dir")
  fi
  if ((${#removed[@]})); then
    local r
    for r in "${removed[@]}"; do say "removed $r"; done
  else
    say "nothing to remove for prefix $prefix"
  fi
}

# start HOST NAME PROGRAM ARGS...: runs PROGRAM in host HOST's network
# namespace, a mount namespace of its own and its daemons cgroup; logs to
# $dir/hHOST/NAME.log.
start() {
  local host=$1 name=$2
  shift 2
  local cg
  cg=$(track_root)/$prefix/h$host/daemons
  mkdir -p "$cg" "$dir/h$host"
  setsid nsenter --net="/run/netns/$prefix-h$host" -- \
    unshare --mount --propagation private -- \
    "$here/local-cluster.sh" _exec "$cg" "$@" \
    >"$dir/h$host/$name.log" 2>&1 </dev/null &
}

# wait_for WHAT COMMAND...: until COMMAND succeeds (60 s).
wait_for() {
  local what=$1 i
  shift
  for i in $(seq 300); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "timed out waiting for $what (logs: $dir/h*/*.log)"
}

berth() { "$bin/berth" --controller "$controller" --tls-dir "$dir/h1/controller/admin" "$@"; }

ready_nodes() {
  berth node ls --format json 2>/dev/null | grep -cE '"status": *"ready"' || true
}

web_running() {
  [[ $(berth service ps demo_web --format json | grep -cE '"state": *"running"') -ge 1 ]]
}

up() {
  local n=$1 i
  if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 1 || n > 50)); then
    die "up N: N is 1 to 50, not $n"
  fi
  bin=$(find_bin)
  for b in berth berth-controller berth-agent berth-shim berth-runtime; do
    [[ -x $bin/$b ]] || die "no $bin/$b: build berth (scripts/build-release.sh) or set BERTH_LC_BIN"
  done
  down >/dev/null
  mkdir -p "$dir"
  say "$n hosts, prefix $prefix, network $net.0/24, data in $dir, binaries from $bin"

  # The fabric: a bridge in a namespace of its own, and the machine's way in.
  ip netns add "$fabric"
  ip -n "$fabric" link set lo up
  ip -n "$fabric" link add br0 type bridge
  ip -n "$fabric" link set br0 up
  ip link add "$gw_link" type veth peer name gw netns "$fabric"
  ip -n "$fabric" link set gw master br0 up
  ip addr add "$net.254/24" dev "$gw_link"
  ip link set "$gw_link" up
  for i in $(seq "$n"); do
    local ns=$prefix-h$i
    ip netns add "$ns"
    ip -n "$fabric" link add "h$i" type veth peer name eth0 netns "$ns"
    ip -n "$fabric" link set "h$i" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$net.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
  say "network: bridge br0 in netns $fabric, hosts $prefix-h1..$prefix-h$n, $gw_link on this machine"

  # The registry on h1, with busybox:1 (built and pushed from the machine).
  mkdir -p "$dir/registry"
  cat >"$dir/registry/config.yml" <<CONF
version: 0.1
storage: {filesystem: {rootdirectory: $dir/registry/storage}, delete: {enabled: true}}
http: {addr: $registry}
log: {level: warn, accesslog: {disabled: true}}
CONF
  start 1 registry docker-registry serve "$dir/registry/config.yml"
  wait_for "the registry on $registry" curl -fs "http://$registry/v2/"
  BERTH_REGISTRY_ADDR=$registry "$here/demo-registry.sh" "$dir/registry" >/dev/null

  # The controller on h1; its admin bundle is the CLI's.
  start 1 controller "$bin/berth-controller" --data-dir "$dir/h1/controller" \
    --listen "$controller" --advertise "$controller" --init --insecure-registry "$registry"
  wait_for "the controller on $controller" berth cluster status
  berth cluster join-token agent -q >"$dir/agent.token"
  chmod 600 "$dir/agent.token"
  for i in $(seq "$n"); do
    start "$i" agent "$bin/berth-agent" --data-dir "$dir/h$i/agent" --controller "$controller" \
      --name "h$i" --advertise "$net.$i" --api-listen "$net.$i:7401" \
      --token-file "$dir/agent.token" --insecure-registry "$registry" \
      --cgroup-parent "$prefix/h$i/containers"
  done
  wait_for "$n ready nodes" test_ready "$n"
  say "controller on h1, agents on h1..h$n: $n nodes ready"

  # The demo stack.
  REGISTRY=$registry berth stack deploy -c "$here/examples/webapp/compose.yaml" demo >/dev/null
  wait_for "the demo stack's web service" web_running
  wait_for "http://$net.1:8088/" curl -fs "http://$net.1:8088/"

  cat >"$dir/env" <<EOF
export BERTH_CONTROLLER=$controller
export BERTH_TLS_DIR=$dir/h1/controller/admin
EOF
  cat <<EOF

berth runs on $n hosts. Use it from this machine:

  . $dir/env        # BERTH_CONTROLLER and BERTH_TLS_DIR for the berth CLI
  $bin/berth node ls
  $bin/berth stack services demo
  $bin/berth service ps demo_web
  curl http://$net.1:8088/            (any host: $net.1 .. $net.$n)
  ip netns exec $prefix-h2 sh         (a shell on host h2)

Logs: $dir/h*/*.log. Remove everything: $0 down
EOF
}

test_ready() { [[ $(ready_nodes) -ge $1 ]]; }

case ${1:-} in
  up)
    check
    up "${2:?up N: how many hosts}"
    ;;
  down)
    check
    down
    ;;
  *)
    sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
