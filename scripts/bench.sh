#!/usr/bin/env bash
# Measures qvm against bare QEMU in one run and writes build-release/bench/results.json and
# results.md: every measurement as median and spread over repeated runs, qvm and its
# baseline alternating within the run.
#
# Usage: scripts/bench.sh [MEASUREMENT...]
#   MEASUREMENT: start_qmp guest argv qmp_rtt ls snapshot down_ignored parallel
#                (default: all of them, in that order)
# Environment:
#   REPEAT=N       rounds of each cheap measurement (default 20; QUICK=1: 3)
#   BOOT_REPEAT=N  rounds of the measurements that boot the test guest or start 20 VMs
#                  (default REPEAT/2, at least 2; QUICK=1: 2)
#   QUICK=1        a smoke run of about two minutes: fewer rounds, fewer VMs
#
# Installs what is missing (scripts/install-deps.sh), builds an optimized tree in
# build-release/ (never build/), builds the test guest into build-release/test-guest, and
# stops every VM and QEMU it started when it ends, however it ends.
set -euo pipefail
export LC_ALL=C
# shellcheck source=scripts/bench/common.sh
source "$(dirname "$0")/bench/common.sh"
# shellcheck source=scripts/bench/measurements.sh
source "$(dirname "$0")/bench/measurements.sh"

QUICK=${QUICK:-0}
if ((QUICK)); then
  REPEAT=${REPEAT:-3}
  BOOT_REPEAT=${BOOT_REPEAT:-2}
  LS_COUNTS="1 5 10"
  PARALLEL_VMS=5
  RTT_BLOCKS=4
  GBENCH_MIN_TIME=0.05
else
  REPEAT=${REPEAT:-20}
  BOOT_REPEAT=${BOOT_REPEAT:-$((REPEAT / 2 > 2 ? REPEAT / 2 : 2))}
  LS_COUNTS="1 10 50"
  PARALLEL_VMS=20
  RTT_BLOCKS=$((REPEAT * 2))
  GBENCH_MIN_TIME=0.2
fi
RTT_CALLS=200
LS_TARGET_AT=${LS_COUNTS##* }
MEMORY_AT=$(awk '{print $2}' <<<"$LS_COUNTS")
all_measurements=(start_qmp guest argv qmp_rtt ls snapshot down_ignored parallel)
selected=("$@")
((${#selected[@]})) || selected=("${all_measurements[@]}")

build() {
  "$bench_root/scripts/install-deps.sh"
  # MinSizeRel (-Os): qvm's work is system calls, not computation. Its code is a third
  # smaller than at -O3, and each supervisor faults in less of it (VmRSS 3.2 against
  # 4.5 MiB); starts measured no slower. Configured every time, so that an older tree
  # picks up the build type.
  cmake -S "$bench_root" -B "$bench_build" -G Ninja -DCMAKE_BUILD_TYPE=MinSizeRel \
    -DQVM_BUILD_BENCH=ON -DQVM_BUILD_TESTS=OFF >/dev/null
  cmake --build "$bench_build" --target qvm qvm_argv_bench bare_qmp qmp_round_trip bench_report
  "$bench_root/scripts/make-test-guest.sh" "$bench_guest"
}

describe_machine() {
  # Every profile says accel = "tcg"; what qvm would pick with "auto" is recorded too.
  local kvm="tcg (every profile; no /dev/kvm on this host)"
  if [[ -e /dev/kvm ]]; then
    printf 'name = "kvm-probe"\n[[net]]\nmode = "none"\n' >"$bench_profiles/kvm-probe.toml"
    local argv
    argv=$(QVM_STATE_DIR="$bench_out/state/bare" "$bench_qvm" up --dry-run "$bench_profiles/kvm-probe.toml" 2>/dev/null || true)
    if [[ "$argv" == *"-accel kvm"* ]]; then
      kvm="tcg (every profile; /dev/kvm exists and qvm would use KVM with accel = \"auto\")"
    else
      kvm="tcg (every profile; /dev/kvm exists but is not usable)"
    fi
  fi
  record machine "CPU" "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  record machine "cores" "$(nproc)"
  record machine "memory" "$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  record machine "kernel" "$(uname -sr)"
  record machine "OS" "Debian $(cat /etc/debian_version 2>/dev/null || echo '?')"
  record machine "QEMU" "$(qemu-system-x86_64 --version | head -n 1)"
  record machine "accel" "$kvm"
  record machine "load average at start" "$(cut -d' ' -f1-3 /proc/loadavg)"
  record config "qvm commit" "$(git -C "$bench_root" rev-parse --short HEAD 2>/dev/null || echo '?')$(
    git -C "$bench_root" diff --quiet HEAD -- src include 2>/dev/null || echo ' (src/include modified)')"
  record config "build" "MinSizeRel, -Os (build-release/)"
  record config "date" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  record config "REPEAT / BOOT_REPEAT / QUICK" "$REPEAT / $BOOT_REPEAT / $QUICK"
}

# Runs one measurement in a subshell (errexit on), so that a failure is noted and the others
# still run; whatever it left running is stopped.
run_measurement() {
  local name=$1 fn=$2 started=$SECONDS rc
  log "$name ..."
  set +e
  (
    set -e
    "$fn"
  )
  rc=$?
  set -e
  if ((rc != 0)); then
    log "$name FAILED (exit $rc); see $bench_log"
    note "measurement $name failed (exit $rc); see build-release/bench/bench.log"
    cleanup_everything
  fi
  log "$name done in $((SECONDS - started)) s"
}

main() {
  build
  mkdir -p "$bench_out"
  # Whatever an interrupted earlier run left behind goes first.
  cleanup_everything
  rm -rf "$bench_out/state" "$bench_out/run" "$bench_out/rtt" "$bench_out/memory" "$bench_profiles"
  mkdir -p "$bench_profiles" "$bench_out/state" "$XDG_RUNTIME_DIR"
  chmod 0700 "$XDG_RUNTIME_DIR"
  : >"$bench_raw"
  : >"$bench_log"
  trap 'cleanup_everything' EXIT
  trap 'exit 130' INT TERM
  describe_machine
  local started=$SECONDS what
  for what in "${selected[@]}"; do
    case $what in
      start_qmp) run_measurement "1. start to QMP ready" measure_start_qmp ;;
      guest) run_measurement "2+8. guest ready and qvm down (ACPI)" measure_guest_boot_and_down ;;
      argv) run_measurement "3. profile -> argv" measure_argv ;;
      qmp_rtt) run_measurement "4. QMP round trip" measure_qmp_rtt ;;
      ls) run_measurement "5+6. ls/status and supervisor memory" measure_ls_status ;;
      snapshot) run_measurement "7. snapshot create" measure_snapshots ;;
      down_ignored) run_measurement "8. qvm down, ACPI ignored" measure_down_ignored ;;
      parallel) run_measurement "9. parallel up" measure_parallel_up ;;
      *) log "unknown measurement $what (know: ${all_measurements[*]})"; exit 2 ;;
    esac
  done
  record machine "load average at end" "$(cut -d' ' -f1-3 /proc/loadavg)"
  record config "duration" "$((SECONDS - started)) s"
  cleanup_everything
  "$bench_tools/bench_report" write "$bench_raw" "$bench_out" "$bench_root/tests/bench/peer_figures.json"
  log "results: $bench_out/results.md and results.json"
  cat "$bench_out/results.md"
}

main
