#!/usr/bin/env bash
# Installs the build tree into a scratch prefix and builds the README's embedding example
# against it with find_package(qvm): the package config, exported targets and headers work.
set -euo pipefail
build=$1
source_dir=$2
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cmake --install "$build" --prefix "$scratch/prefix" >/dev/null
test -x "$scratch/prefix/bin/qvm"
test -f "$scratch/prefix/include/qvm/vm.hpp"
# The library an embedder links does not pull in the CLI's parser: the exported package
# names no CLI11, and a consumer on a host without it configures.
if grep -rqi cli11 "$scratch/prefix/lib"*/cmake/qvm; then
  echo "the installed qvm package depends on CLI11:" >&2
  grep -rni cli11 "$scratch/prefix/lib"*/cmake/qvm >&2
  exit 1
fi
cmake -S "$source_dir/tests/install" -B "$scratch/consumer" -G Ninja \
  -DCMAKE_PREFIX_PATH="$scratch/prefix" -DQVM_EXAMPLE="$source_dir/examples/embed.cpp" \
  -DCMAKE_DISABLE_FIND_PACKAGE_CLI11=ON --no-warn-unused-cli >/dev/null
cmake --build "$scratch/consumer" >/dev/null
# Run without arguments: it must start, and answer with its usage line (exit 2).
status=0
usage=$("$scratch/consumer/embed" 2>&1) || status=$?
[[ $status -eq 2 && $usage == "usage: embed STATE_DIR PROFILE" ]]
echo "find_package(qvm) consumer built and ran"
