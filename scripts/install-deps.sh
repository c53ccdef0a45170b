#!/usr/bin/env bash
# Installs the Debian 12 packages qvm needs to build, test and run its demo.
# Idempotent: only missing packages are installed; nothing is asked interactively.
set -euo pipefail

packages=(
  # build
  cmake ninja-build g++ pkg-config
  libboost1.81-dev nlohmann-json3-dev libtomlplusplus-dev libcli11-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev linux-libc-dev
  # runtime: QEMU and image tools
  qemu-system-x86 qemu-utils ovmf
  # test guest: busybox initramfs around a Debian kernel
  busybox-static cpio gzip xz-utils zstd
  # tests (python3-jsonschema: the profile schema test validates profiles/ against `qvm schema`)
  procps python3-jsonschema
  # fuzzing (scripts/fuzz.sh): clang with libFuzzer and the sanitizer runtimes, and
  # llvm-symbolizer for readable stack traces
  clang-14 libclang-rt-14-dev llvm-14
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo=()
if ((EUID != 0)); then
  if command -v sudo >/dev/null; then
    sudo=(sudo)
  else
    echo "install-deps: missing packages (${missing[*]}) and not root; run as root" >&2
    exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
