#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ctest fuzz.NAME: runs the libFuzzer target fuzz_NAME (built in the asan sanitizer tree by
# sanitize.asan_build) for a bounded time from its seed corpus tests/fuzz/corpus/NAME/ (the
# source tree is only read; new inputs go to WORK/corpus). Fails if the binary is missing or the
# fuzzer finds a crash, a sanitizer report, a leak or a timeout; the input is left as
# WORK/crash-* (or leak-*, timeout-*) to add to the corpus with the fix's regression test.
# Usage: run_fuzz.sh NAME BINARY SRC WORK SECONDS
set -euo pipefail
name=${1:?name}
bin=${2:?fuzz binary}
src=${3:?source dir}
work=${4:?work dir}
secs=${5:-30}

[[ -x $bin ]] || { echo "fuzz: $bin not built (ctest -R sanitize.asan_build)" >&2; exit 1; }
seeds=$src/tests/fuzz/corpus/$name
[[ -d $seeds ]] || { echo "fuzz: no seed corpus $seeds" >&2; exit 1; }
mkdir -p "$work/corpus"
# Targets that write files do so below TMPDIR: a tmpfs when there is one (their fsyncs cost
# nothing there), removed afterwards.
if [[ -d /dev/shm && -w /dev/shm ]]; then
  TMPDIR=$(mktemp -d /dev/shm/nsima-fuzz-$name.XXXXXX)
else
  rm -rf "$work/tmp" && mkdir -p "$work/tmp" && TMPDIR=$work/tmp
fi
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
      -artifact_prefix="$work/")
dirs=("$work/corpus" "$seeds")

case $name in
policy)
  args+=(-dict="$src/tests/fuzz/policy.dict")
  dirs+=("$src/policies" "$src/tests/unit/policy/data")
  ;;
appraise)
  # A TEST-ONLY RSA certificate for the fixed keyring, and evmctl-made values signed by it
  # (regenerated when missing).
  for tool in openssl evmctl getfattr; do
    command -v "$tool" >/dev/null || { echo "fuzz: $tool not found (.ci/install-deps)" >&2; exit 1; }
  done
  k=$work/keys s=$work/seed
  mkdir -p "$k" "$s"
  if [[ ! -s $k/rsa.der ]]; then
    printf '%s\n' '[ req ]' 'distinguished_name = dn' 'prompt = no' 'x509_extensions = v3' \
      '[ dn ]' 'CN = nsima appraise fuzz (TEST ONLY)' '[ v3 ]' \
      'basicConstraints=critical,CA:FALSE' 'keyUsage=digitalSignature' \
      'subjectKeyIdentifier=hash' > "$k/x509.cnf"
    openssl req -new -nodes -x509 -batch -days 3650 -config "$k/x509.cnf" -newkey rsa:2048 \
      -keyout "$k/rsa.key" -out "$k/rsa.pem" 2>/dev/null
    openssl x509 -in "$k/rsa.pem" -outform DER -out "$k/rsa.der.tmp"
    cat "$k/rsa.key" "$k/rsa.pem" > "$k/rsa.combined"
    printf 'fuzzed file' > "$s/f"
    n=0
    for a in sha1 sha256 sha512; do
      evmctl ima_sign -a $a --key "$k/rsa.combined" "$s/f" >/dev/null 2>&1
      n=$((n + 1)); getfattr --only-values -n security.ima "$s/f" > "$s/seed-$n"
      evmctl ima_hash -a $a "$s/f" >/dev/null 2>&1
      n=$((n + 1)); getfattr --only-values -n security.ima "$s/f" > "$s/seed-$n"
    done
    rm -f "$s/f"
    mv "$k/rsa.der.tmp" "$k/rsa.der"
  fi
  export NSIMA_APPRAISE_FUZZ_CERT=$k/rsa.der
  args+=(-max_len=70000)
  dirs+=("$s")
  ;;
digest_list) args+=(-max_len=16384) ;;
control) args+=(-max_len=8192 -dict="$src/tests/fuzz/control.dict") ;;
list) args+=(-max_len=65536) ;;
journal) args+=(-max_len=65536) ;;
state) args+=(-max_len=8192 -dict="$src/tests/fuzz/state.dict") ;;
rpm) args+=(-max_len=16384) ;;
*) echo "fuzz: unknown target $name" >&2; exit 2 ;;
esac

echo "fuzz: $name for ${secs}s from ${dirs[*]}"
t0=$SECONDS
# libFuzzer stops itself after max_total_time; the outer timeout is for a hung target.
timeout --kill-after=10 $((secs + 120)) "$bin" "${args[@]}" "${dirs[@]}"
echo "fuzz: $name took $((SECONDS - t0)) s"
