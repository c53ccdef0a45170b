#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 in build-fuzz/ and runs each one for SECONDS
# (default 60) on a scratch copy of its seed corpus (tests/fuzz/corpus/<target>/), so the
# repository never gains corpus files. Targets run side by side, at most QVM_FUZZ_JOBS at a
# time (default: the number of CPUs), so the run takes about ceil(targets / jobs) * SECONDS
# plus the build (6 targets on 2 CPUs: three times SECONDS). Prints one summary line per target and exits non-zero if any target found a crash, a
# leak, a timeout (-timeout=10) or ran out of memory (-rss_limit_mb=2048); the input that did
# it is kept and its path printed.
#
#   scripts/fuzz.sh [SECONDS]        CI runs scripts/fuzz.sh 20
#
# The scratch directory (corpora as they grew, logs, crash inputs) is deleted after a clean
# run unless QVM_FUZZ_KEEP=1; after a finding it is always kept. Reproduce a finding with
#   build-fuzz/tests/fuzz/qvm_fuzz_<target> CRASH-FILE
set -euo pipefail

seconds=${1:-60}
if [[ ! $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS]   (SECONDS per target, default 60)" >&2
  exit 2
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build-fuzz"
targets=(qmp profile agent state control terminal)
jobs=${QVM_FUZZ_JOBS:-$(nproc)}
if [[ ! $jobs =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz: QVM_FUZZ_JOBS must be a positive number" >&2
  exit 2
fi

"$root/scripts/install-deps.sh"
# libFuzzer and the sanitizer runtimes ship with clang, which the main (g++) build does not
# need; install-deps.sh installs them, this check is for machines set up some other way.
compiler=clang++-14
runtimes=(/usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a)
if ! command -v "$compiler" >/dev/null || [[ ! -f ${runtimes[0]} ]]; then
  echo "fuzz: needs $compiler and libFuzzer (Debian packages clang-14, libclang-rt-14-dev," \
       "llvm-14 for symbolized stack traces)" >&2
  exit 1
fi

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER="$compiler" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQVM_BUILD_FUZZ=ON -DQVM_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target "${targets[@]/#/qvm_fuzz_}"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/qvm-fuzz.XXXXXX")
if command -v llvm-symbolizer-14 >/dev/null; then
  export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-$(command -v llvm-symbolizer-14)}
fi
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Runs one target in the background; its output goes to $scratch/<target>.log, and the files
# a target makes (the state target's scratch VM folder) to $scratch/tmp.
start() {
  local target=$1
  mkdir -p "$scratch/corpus/$target" "$scratch/findings/$target" "$scratch/tmp"
  cp -R "$root/tests/fuzz/corpus/$target/." "$scratch/corpus/$target/"
  local extra=()
  if [[ -f $root/tests/fuzz/$target.dict ]]; then extra+=(-dict="$root/tests/fuzz/$target.dict"); fi
  TMPDIR="$scratch/tmp" "$build/tests/fuzz/qvm_fuzz_$target" "$scratch/corpus/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$scratch/findings/$target/" "${extra[@]}" \
    >"$scratch/$target.log" 2>&1 &
  running[$!]=$target
}

# Waits for whichever running target ends first and records its exit status.
reap() {
  local pid status=0
  wait -n -p pid "${!running[@]}" || status=$?
  statuses[${running[$pid]}]=$status
  unset "running[$pid]"
}

# One line from the log: executions, speed, coverage, corpus size, and what was found.
summarize() {
  local target=$1 status=$2 log="$scratch/$1.log"
  local execs speed cov ft corpus findings
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  corpus=$(find "$scratch/corpus/$target" -type f | wc -l)
  mapfile -t findings < <(find "$scratch/findings/$target" -type f | sort)
  printf 'fuzz: %-8s %s execs (%s/s), cov %s, ft %s, corpus %s inputs, crashes found = %s\n' \
    "$target" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "$corpus" "${#findings[@]}"
  if ((status != 0 || ${#findings[@]} > 0)); then
    echo "fuzz: $target FAILED (exit $status); log: $log" >&2
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|[a-z]+_fuzz:)' "$log" | head -n 5 >&2 || true
    local finding
    for finding in "${findings[@]}"; do echo "fuzz: $target crash input: $finding" >&2; done
    return 1
  fi
}

declare -A running=() statuses=()
# An interrupted run stops the fuzzers it started (background jobs ignore SIGINT).
trap 'if ((${#running[@]})); then kill "${!running[@]}" 2>/dev/null || true; fi' EXIT
trap 'exit 130' INT TERM
for target in "${targets[@]}"; do
  while ((${#running[@]} >= jobs)); do reap; done
  start "$target"
done
while ((${#running[@]} > 0)); do reap; done
failed=0
for target in "${targets[@]}"; do
  summarize "$target" "${statuses[$target]}" || failed=1
done

if ((failed)); then
  echo "fuzz: findings kept in $scratch" >&2
  exit 1
fi
if [[ ${QVM_FUZZ_KEEP:-0} == 1 ]]; then
  echo "fuzz: corpora and logs kept in $scratch"
else
  rm -rf "$scratch"
fi
