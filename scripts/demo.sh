#!/usr/bin/env bash
# The demo: installs what is missing, builds qvm and the test guest, boots the bundled demo
# profile (profiles/demo.toml), shows it running, and shuts it down gracefully.
set -euo pipefail
source "$(dirname "$0")/lib/build.sh"

qvm_build
qvm_guest

qvm="$qvm_root/build/qvm"
# The demo keeps its state apart from any real VMs of this user.
export QVM_STATE_DIR="$qvm_root/build/demo/state"
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

if "$qvm" status demo --json 2>/dev/null | grep -q '"state": "running"'; then
  "$qvm" down demo >/dev/null
fi

say qvm validate profiles/demo.toml
"$qvm" validate "$qvm_root/profiles/demo.toml"
say qvm up profiles/demo.toml
"$qvm" up "$qvm_root/profiles/demo.toml"
say qvm ls
"$qvm" ls
say qvm status demo
"$qvm" status demo
say qvm qmp demo query-status
"$qvm" qmp demo query-status
say qvm logs demo
"$qvm" logs demo | tail -n 5
say qvm down demo
"$qvm" down demo
say qvm status demo
"$qvm" status demo | head -n 4
