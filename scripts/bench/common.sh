# Shared by scripts/bench.sh and its measurements: paths, sample records, timing, VM
# profiles and cleanup. Every VM and QEMU the benchmark starts lives under $bench_out, so
# cleanup can find exactly those and nothing else.
# shellcheck shell=bash

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bench_build="$bench_root/build-release"
bench_out="$bench_build/bench"
bench_tools="$bench_build/tests/bench"
bench_qvm="$bench_build/qvm"
bench_raw="$bench_out/raw.tsv"
bench_log="$bench_out/bench.log"
bench_guest="$bench_build/test-guest"
bench_profiles="$bench_out/profiles"
# Sockets go to a runtime dir inside bench_out (qvm uses $XDG_RUNTIME_DIR/qvm when the
# path is short enough, else /tmp/qvm-UID); either way the hashed dirs are ours alone.
export XDG_RUNTIME_DIR="$bench_out/run"
readonly guest_ready_text="qvm-test-guest: ready"

log() { printf 'bench: %s\n' "$*" >&2; }

# record KIND FIELD... : one tab-separated line of raw.tsv (see tests/bench/bench_report.cpp).
record() {
  local IFS=$'\t'
  printf '%s\n' "$*" >>"$bench_raw"
}

# sample KEY VALUE UNIT
sample() { record sample "$1" "$2" "$3"; }

# spec ID TITLE UNIT QVM_KEY BASELINE_KEY TARGET BASELINE_LABEL
spec() { record spec "$@"; }

note() { record note "$*"; }

# Times are ${EPOCHREALTIME/./}: microseconds, read without forking (LC_ALL=C for the dot).

# qvm_in STATE_DIR ARGS... : qvm with its own state root, output to the log.
qvm_in() {
  local state=$1
  shift
  QVM_STATE_DIR="$state" "$bench_qvm" "$@" >>"$bench_log" 2>&1
}

# timed_qvm STATE_DIR ARGS... : like qvm_in; sets elapsed_us to the wall time of the
# command, from just before bash starts it until it has exited. Fails if qvm fails.
elapsed_us=0
timed_qvm() {
  local state=$1
  shift
  local start end
  start=${EPOCHREALTIME/./}
  if ! QVM_STATE_DIR="$state" "$bench_qvm" "$@" >>"$bench_log" 2>&1; then
    log "qvm $* failed; see $bench_log"
    tail -n 5 "$bench_log" >&2
    return 1
  fi
  end=${EPOCHREALTIME/./}
  elapsed_us=$((end - start))
}

# The supervisor's pid of a running VM, from its state.json.
supervisor_pid() {
  sed -n 's/.*"supervisor_pid": *\([0-9][0-9]*\).*/\1/p' "$1/vms/$2/state.json"
}

# kill_all_vms STATE_DIR : SIGKILL every VM of a state root (in parallel), wait for all.
kill_all_vms() {
  local state=$1 dir
  [[ -d "$state/vms" ]] || return 0
  for dir in "$state"/vms/*/; do
    # Folders without a profile are bare QEMU's logs, not VMs.
    [[ -f "$dir/profile.toml" ]] || continue
    QVM_STATE_DIR="$state" "$bench_qvm" kill "$(basename "$dir")" >>"$bench_log" 2>&1 &
  done
  wait
}

# up_concurrently STATE_DIR PROFILE... : one `qvm up` process per profile, all at once;
# fails if any of them failed.
up_concurrently() {
  local state=$1 profile pid rc=0 pids=()
  shift
  for profile in "$@"; do
    QVM_STATE_DIR="$state" "$bench_qvm" up "$profile" >>"$bench_log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    wait "$pid" || rc=1
  done
  return $rc
}

# Profiles. All run under TCG (this benchmark is about qvm, not about KVM).

# guest_profile FILE NAME MACHINE [READY] [CMDLINE_EXTRA] [SHUTDOWN_TIMEOUT]
# The test guest (direct kernel boot, one user-mode NIC). READY=1 adds the serial readiness wait.
guest_profile() {
  local file=$1 name=$2 machine=$3 ready=${4:-0} extra=${5:-} shutdown=${6:-30}
  {
    printf 'name = "%s"\nmachine = "%s"\nmemory = "256MiB"\naccel = "tcg"\n\n' "$name" "$machine"
    printf '[boot]\nkernel = "%s"\ninitrd = "%s"\ncmdline = "console=ttyS0 quiet %s"\n\n' \
      "$bench_guest/vmlinuz" "$bench_guest/initrd.img" "$extra"
    if ((ready)); then
      printf '[ready]\nserial = "%s"\ntimeout = 180\n\n' "$guest_ready_text"
    fi
    printf '[shutdown]\ntimeout = %s\n' "$shutdown"
  } >"$file"
}

# idle_profile FILE NAME [DISK_PATH DISK_SIZE] : a q35 with no kernel and no NIC, small and
# cheap: SeaBIOS finds nothing to boot and waits. Optionally one virtio qcow2 disk.
idle_profile() {
  local file=$1 name=$2 disk=${3:-} size=${4:-}
  {
    printf 'name = "%s"\nmachine = "q35"\nmemory = "64MiB"\naccel = "tcg"\n\n' "$name"
    printf '[[net]]\nmode = "none"\n'
    if [[ -n "$disk" ]]; then
      printf '\n[[disk]]\npath = "%s"\nsize = "%s"\n' "$disk" "$size"
    fi
  } >"$file"
}

# bare_argv PROFILE NAME : fills bare_words with the QEMU argv qvm would use for PROFILE
# under the name NAME (so its sockets and logs are its own), and creates the folders that
# argv names; bare_runtime and bare_state are those folders.
bare_words=()
bare_runtime=""
bare_state=""
bare_argv() {
  local profile=$1 name=$2 word i
  mapfile -d '' bare_words < <(QVM_STATE_DIR="$bench_out/state/bare" "$bench_qvm" up --dry-run --json \
    --name "$name" "$profile" 2>>"$bench_log" | "$bench_tools/bench_report" argv)
  ((${#bare_words[@]} > 1)) || { log "no dry-run argv for $profile"; return 1; }
  bare_runtime=""
  bare_state=""
  for ((i = 0; i < ${#bare_words[@]}; ++i)); do
    word=${bare_words[i]}
    if [[ "$word" == -pidfile ]]; then bare_runtime=$(dirname "${bare_words[i + 1]}"); fi
    if [[ "$word" == *logfile=* ]]; then
      word=${word#*logfile=}
      bare_state=$(dirname "${word%%,*}")
    fi
  done
  [[ -n "$bare_runtime" && -n "$bare_state" ]] || { log "cannot find the paths in the argv of $profile"; return 1; }
  mkdir -p "$bare_runtime" "$bare_state"
  chmod 0700 "$bare_runtime" "$bare_state"
}

# Every process whose command line names bench_out: QEMUs, supervisors, helpers we started.
our_pids() {
  local pid
  for pid in $(pgrep -f -- "$bench_out/" || true); do
    [[ "$pid" != "$$" && "$pid" != "$BASHPID" ]] && printf '%s\n' "$pid"
  done
}

# Stops everything this benchmark started: qvm kill for every VM of every state root, then
# SIGKILL (by pid) for any process left that names our folders (bare QEMU, helpers).
cleanup_everything() {
  local state pid
  for state in "$bench_out"/state/*/; do
    [[ -d "$state" ]] && kill_all_vms "${state%/}"
  done
  for pid in $(our_pids); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    [[ -z "$(our_pids)" ]] && return 0
    sleep 0.2
  done
  log "warning: processes still running: $(our_pids | tr '\n' ' ')"
}
