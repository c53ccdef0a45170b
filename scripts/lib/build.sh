# Shared by demo.sh and test.sh: installs what is missing and builds build/ (the binary is
# build/qvm). CI flags: warnings are errors, and the tests run under ASan+UBSan, so both
# scripts configure the same way and never rebuild each other's tree from scratch.
# shellcheck shell=bash

qvm_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

qvm_build() {
  "$qvm_root/scripts/install-deps.sh"
  local build="$qvm_root/build"
  if [[ ! -f "$build/build.ninja" ]]; then
    # -O0 -g1: sanitizers need no optimisation, and it compiles four times faster than
    # -O2 -g, which keeps a fresh CI build within its budget; -g1 keeps line numbers.
    cmake -S "$qvm_root" -B "$build" -G Ninja \
      -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O0 -g1" \
      -DQVM_WERROR=ON \
      -DQVM_SANITIZE=address,undefined \
      -DQVM_TEST_GUEST_DIR="$build/test-guest"
  fi
  cmake --build "$build" -j "$(nproc)"
}

# build-tsan/: -fsanitize=thread, only the qvm_thread_tests binary (see tests/CMakeLists.txt).
qvm_build_tsan() {
  local build="$qvm_root/build-tsan"
  if [[ ! -f "$build/build.ninja" ]]; then
    cmake -S "$qvm_root" -B "$build" -G Ninja \
      -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" \
      -DQVM_WERROR=ON -DQVM_SANITIZE=thread
  fi
  cmake --build "$build" -j "$(nproc)" --target qvm_thread_tests
}

qvm_guest() {
  "$qvm_root/scripts/make-test-guest.sh" "$qvm_root/build/test-guest"
}
