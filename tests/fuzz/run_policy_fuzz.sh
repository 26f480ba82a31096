#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ctest fuzz.policy_parser: builds tests/fuzz/policy_fuzz.cpp with clang++ and libFuzzer (the
# project's compiler is g++, which has no libFuzzer), from the policy sources and the common
# sources they use, then fuzzes for a bounded time from a seed corpus of every policy file in the
# tree. Fails if clang++ is missing, the build fails, or the fuzzer finds a crash.
# Usage: run_policy_fuzz.sh <clang++> <source dir> <work dir> <seconds> <generated include dir>
set -euo pipefail
cxx=${1:?clang++}
src=${2:?source dir}
out=${3:?work dir}
secs=${4:-30}
gen=${5:?generated include dir (builtin_policies.inc)}

command -v "$cxx" >/dev/null || { echo "fuzz: $cxx not found (apt-get install clang)" >&2; exit 1; }
mkdir -p "$out/corpus"
bin="$out/policy_fuzz"
sources=("$src"/daemon/policy/*.cpp "$src/daemon/common/event.cpp" "$src/tests/fuzz/policy_fuzz.cpp")

# Rebuild only when something it is made of changed since the last build.
if [[ ! -x $bin ]] || [[ -n $(find "$src/daemon/policy" "$src/daemon/common" "$src/include" \
    "$src/tests/fuzz" "$gen" -newer "$bin" -print -quit) ]]; then
  echo "fuzz: building $bin"
  "$cxx" -std=c++20 -O1 -g -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$src/daemon" -I"$src/include" -I"$gen" "${sources[@]}" -o "$bin.tmp"
  mv "$bin.tmp" "$bin"
fi

# New inputs go to the work corpus (first directory); the source tree is only read.
echo "fuzz: running for ${secs}s"
"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -dict="$src/tests/fuzz/policy.dict" -artifact_prefix="$out/" \
  "$out/corpus" "$src/policies" "$src/tests/unit/policy/data"
