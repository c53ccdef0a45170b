#!/usr/bin/env bash
# Installs what is missing, builds (-Werror, ASan+UBSan), builds the test guest, and runs
# every test: unit tests first (no QEMU), then the integration tests that boot the real
# test guest under TCG. Extra arguments go to ctest (e.g. -L unit, -R Lifecycle).
set -euo pipefail
source "$(dirname "$0")/lib/build.sh"

qvm_build
qvm_guest

# LeakSanitizer cannot follow the detached supervisors' exits reliably; leaks are checked
# by the unit tests' own process. halt_on_error keeps a sanitizer finding fatal.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

cd "$qvm_root/build"
ctest --output-on-failure -L unit -j "$(nproc)" "$@"
ctest --output-on-failure -L integration -j 2 "$@"

# ThreadSanitizer: the tests of the threaded parts (QMP and agent clients, supervisor,
# live snapshots) in a second build that compiles only what they need. Skipped when the
# caller picked tests with ctest arguments.
if (($# == 0)); then
  qvm_build_tsan
  TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1} \
    "$qvm_root/build-tsan/tests/qvm_thread_tests" --gtest_brief=1
  # The four libFuzzer targets (clang, ASan+UBSan), 20 s each on their seed corpora.
  "$qvm_root/scripts/fuzz.sh" 20
fi
