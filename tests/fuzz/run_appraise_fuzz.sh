#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ctest fuzz.appraise: builds tests/fuzz/appraise_fuzz.cpp with clang++ and libFuzzer (the
# project's compiler is g++, which has no libFuzzer) from the appraise, measure and common
# sources it uses, makes a TEST-ONLY RSA key and certificate with openssl and seed values with
# evmctl (RSA and EC signatures, hashes) in the work directory, then fuzzes for a bounded time.
# Fails if a tool is missing, the build fails, or the fuzzer finds a crash.
# Usage: run_appraise_fuzz.sh <clang++> <source dir> <work dir> <seconds>
set -euo pipefail
cxx=${1:?clang++}
src=${2:?source dir}
out=${3:?work dir}
secs=${4:-30}

for tool in "$cxx" openssl evmctl getfattr; do
  command -v "$tool" >/dev/null || { echo "fuzz: $tool not found (.ci/install-deps)" >&2; exit 1; }
done
mkdir -p "$out/corpus" "$out/keys" "$out/seed"
bin="$out/appraise_fuzz"
sources=("$src"/daemon/appraise/ima_xattr.cpp "$src"/daemon/appraise/keyring.cpp
         "$src"/daemon/appraise/appraiser.cpp "$src"/daemon/appraise/digest_list.cpp
         "$src"/daemon/measure/hash_algo.cpp "$src"/daemon/measure/hasher.cpp
         "$src"/daemon/common/atomic_file.cpp "$src"/tests/fuzz/appraise_fuzz.cpp)

if [[ ! -x $bin ]] || [[ -n $(find "$src/daemon/appraise" "$src/daemon/measure" "$src/daemon/common" \
    "$src/tests/fuzz/appraise_fuzz.cpp" -newer "$bin" -print -quit) ]]; then
  echo "fuzz: building $bin"
  "$cxx" -std=c++20 -O1 -g -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$src/daemon" -I"$src/include" "${sources[@]}" -lcrypto -o "$bin.tmp"
  mv "$bin.tmp" "$bin"
fi

# TEST-ONLY keys and evmctl-made seeds (regenerated when missing).
k="$out/keys"
if [[ ! -s $k/rsa.der ]]; then
  cat > "$k/x509.cnf" <<'CNF'
[ req ]
distinguished_name = dn
prompt = no
x509_extensions = v3
[ dn ]
CN = nsima appraise fuzz (TEST ONLY)
[ v3 ]
basicConstraints=critical,CA:FALSE
keyUsage=digitalSignature
subjectKeyIdentifier=hash
CNF
  openssl req -new -nodes -x509 -batch -days 3650 -config "$k/x509.cnf" -newkey rsa:2048 \
    -keyout "$k/rsa.key" -out "$k/rsa.pem" 2>/dev/null
  openssl x509 -in "$k/rsa.pem" -outform DER -out "$k/rsa.der"
  cat "$k/rsa.key" "$k/rsa.pem" > "$k/rsa.combined"
  openssl req -new -nodes -x509 -batch -days 3650 -config "$k/x509.cnf" -newkey ec \
    -pkeyopt ec_paramgen_curve:prime256v1 -keyout "$k/ec.key" -out "$k/ec.pem" 2>/dev/null
  cat "$k/ec.key" "$k/ec.pem" > "$k/ec.combined"
  s="$out/seed"
  printf 'fuzzed file' > "$s/f"
  n=0
  # (n is incremented apart: a redirection of an external command is expanded in the child)
  seed() { n=$((n + 1)); getfattr --only-values -n security.ima "$s/f" > "$s/seed-$n" 2>/dev/null; }
  for a in sha1 sha256 sha512; do
    evmctl ima_sign -a $a --key "$k/rsa.combined" "$s/f" >/dev/null 2>&1; seed
    evmctl ima_sign -a $a --key "$k/ec.combined" "$s/f" >/dev/null 2>&1; seed
    evmctl ima_hash -a $a "$s/f" >/dev/null 2>&1; seed
  done
  rm -f "$s/f"
  sha256sum /dev/null > "$s/manifest-0"
fi

echo "fuzz: running for ${secs}s"
NSIMA_APPRAISE_FUZZ_CERT="$k/rsa.der" "$bin" -max_total_time="$secs" -timeout=10 \
  -rss_limit_mb=2048 -max_len=70000 -print_final_stats=1 -artifact_prefix="$out/" \
  "$out/corpus" "$out/seed"
