# Shared by demo.sh and test.sh: installs what is missing and builds build/ (the binary is
# build/qvm). CI flags: warnings are errors, and the tests run under ASan+UBSan, so both
# scripts configure the same way and never rebuild each other's tree from scratch.
# shellcheck shell=bash

qvm_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# qvm_configure BUILD -DNAME=VALUE...: configures BUILD (Ninja) with those cache entries
# unless it is configured already and its CMakeCache.txt has every one with that value, so
# a build/ made by hand with other flags is brought in line rather than used as it is, and
# a right one costs no cmake run. Re-configuring keeps the other entries of the cache (a
# CMAKE_CXX_COMPILER_LAUNCHER=ccache, say).
qvm_configure() {
  local build=$1
  shift
  if [[ -f "$build/build.ninja" && -f "$build/CMakeCache.txt" ]]; then
    local flag name value configured=1
    for flag in "$@"; do
      name=${flag#-D}
      value=${name#*=}
      name=${name%%=*}
      name=${name%%:*}
      # A cache line is NAME:TYPE=VALUE; names are [A-Z0-9_], so safe inside the pattern.
      if ! grep -qxF -- "$value" <(sed -n "s/^$name:[A-Z]*=//p" "$build/CMakeCache.txt"); then
        configured=0
        break
      fi
    done
    ((configured)) && return 0
  fi
  cmake -S "$qvm_root" -B "$build" -G Ninja "$@"
}

qvm_build() {
  "$qvm_root/scripts/install-deps.sh"
  local build="$qvm_root/build"
  # -O0 -g1: sanitizers need no optimisation, and it compiles four times faster than
  # -O2 -g, which keeps a fresh CI build within its budget; -g1 keeps line numbers.
  qvm_configure "$build" \
    -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O0 -g1" \
    -DQVM_WERROR=ON \
    -DQVM_SANITIZE=address,undefined \
    -DQVM_TEST_GUEST_DIR="$build/test-guest"
  cmake --build "$build" -j "$(nproc)"
}

# build-tsan/: -fsanitize=thread, only the qvm_thread_tests binary (see tests/CMakeLists.txt).
qvm_build_tsan() {
  local build="$qvm_root/build-tsan"
  qvm_configure "$build" \
    -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" \
    -DQVM_WERROR=ON -DQVM_SANITIZE=thread
  cmake --build "$build" -j "$(nproc)" --target qvm_thread_tests
}

qvm_guest() {
  "$qvm_root/scripts/make-test-guest.sh" "$qvm_root/build/test-guest"
}
