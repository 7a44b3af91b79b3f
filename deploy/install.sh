#!/usr/bin/env bash
# Installs berth on this host: the binaries into /usr/local/bin and the
# systemd units (deploy/systemd/) into /etc/systemd/system, plus
# /etc/default/berth (only if absent: it holds this host's addresses).
# Running it again changes only what differs; --uninstall removes what it
# installs (not the data in /var/lib/berth, nor /etc/default/berth if edited).
#
#   deploy/install.sh [--from DIR] [--prefix DIR] [--units DIR]   install
#   deploy/install.sh --uninstall [--prefix DIR] [--units DIR]    remove
#   (--defaults FILE: another place for /etc/default/berth)
#
# DIR of --from holds berth, berth-controller, berth-agent, berth-shim (the
# per-container shim the agent starts, found beside it) and berth-runtime
# (default: target/release of this checkout). It does not enable or start
# the units: which ones a host runs is the operator's choice (see README.md,
# "Install on hosts").
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
from=${CARGO_TARGET_DIR:-$here/../target}/release
prefix=/usr/local/bin
units=/etc/systemd/system
defaults=/etc/default/berth
uninstall=false
binaries=(berth berth-controller berth-agent berth-shim berth-runtime)
unit_files=(berth-controller.service berth-agent.service)

usage() {
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

while (($#)); do
  case $1 in
    --from) from=${2:?--from needs a directory}; shift 2 ;;
    --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
    --units) units=${2:?--units needs a directory}; shift 2 ;;
    --defaults) defaults=${2:?--defaults needs a file}; shift 2 ;;
    --uninstall) uninstall=true; shift ;;
    -h | --help) usage 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; usage 2 >&2 ;;
  esac
done

if ((EUID != 0)); then
  echo "install.sh: run as root (it writes to $prefix and $units)" >&2
  exit 1
fi

changed=false
reload() {
  if $changed && [[ $units == /etc/systemd/system ]] && command -v systemctl >/dev/null &&
    [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
    echo "systemctl daemon-reload"
  fi
}

# Copies $1 to $2 with mode $3 unless $2 has the same content already.
put() {
  local src=$1 dst=$2 mode=$3
  if [[ -f $dst ]] && cmp -s "$src" "$dst"; then
    echo "unchanged  $dst"
    return
  fi
  local verb=installed
  [[ -e $dst ]] && verb=updated
  install -D -m "$mode" "$src" "$dst"
  echo "$verb  $dst"
  changed=true
}

# Removes $1 if it is there.
drop() {
  if [[ -e $1 ]]; then
    rm -f "$1"
    echo "removed    $1"
    changed=true
  else
    echo "absent     $1"
  fi
}

if $uninstall; then
  for u in "${unit_files[@]}"; do
    if [[ $units == /etc/systemd/system ]] && command -v systemctl >/dev/null &&
      systemctl is-active --quiet "$u" 2>/dev/null; then
      echo "note: $u is running; stop it first (systemctl disable --now $u) to stop berth" >&2
    fi
    drop "$units/$u"
  done
  for b in "${binaries[@]}"; do drop "$prefix/$b"; done
  if [[ -f $defaults ]] && cmp -s "$here/systemd/berth.default" "$defaults"; then
    drop "$defaults"
  elif [[ -f $defaults ]]; then
    echo "kept       $defaults (edited for this host)"
  fi
  reload
  echo "berth uninstalled (data in /var/lib/berth kept)"
  exit 0
fi

missing=()
for b in "${binaries[@]}"; do [[ -x $from/$b ]] || missing+=("$from/$b"); done
if ((${#missing[@]})); then
  echo "install.sh: missing ${missing[*]}: build them (scripts/build-release.sh) or pass --from DIR" >&2
  exit 1
fi
for b in "${binaries[@]}"; do put "$from/$b" "$prefix/$b" 0755; done
for u in "${unit_files[@]}"; do
  # The units name /usr/local/bin; another --prefix is written into them.
  tmp=$(mktemp)
  sed "s#/usr/local/bin/#$prefix/#g" "$here/systemd/$u" >"$tmp"
  put "$tmp" "$units/$u" 0644
  rm -f "$tmp"
done
if [[ -e $defaults ]]; then
  echo "kept       $defaults"
else
  put "$here/systemd/berth.default" "$defaults" 0644
  echo "           edit $defaults: this host's address and the controllers'"
fi
reload
cat <<EOF
berth installed. Next, on a controller host:
  systemctl enable --now berth-controller   (the first one once with --init: see README.md)
on every agent host (the join token in /etc/berth/agent.token, mode 0600):
  systemctl enable --now berth-agent
EOF
