#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ctest fuzz.model: builds tests/fuzz/model_fuzz.cpp with clang++ and libFuzzer (the project's
# compiler is g++, which has no libFuzzer) from the model sources and the appraise, measure and
# common sources they use, makes a TEST-ONLY RSA key and certificate with openssl and seed model
# files (unsigned, and signed with openssl dgst -sign) in the work directory, then fuzzes for a
# bounded time. Fails if a tool is missing, the build fails, or the fuzzer finds a crash.
# Usage: run_model_fuzz.sh <clang++> <source dir> <work dir> <seconds>
set -euo pipefail
cxx=${1:?clang++}
src=${2:?source dir}
out=${3:?work dir}
secs=${4:-30}

for tool in "$cxx" openssl od; do
  command -v "$tool" >/dev/null || { echo "fuzz: $tool not found (.ci/install-deps)" >&2; exit 1; }
done
mkdir -p "$out/corpus" "$out/keys" "$out/seed"
bin="$out/model_fuzz"
sources=("$src"/daemon/model/*.cpp "$src"/daemon/appraise/ima_xattr.cpp
         "$src"/daemon/appraise/keyring.cpp "$src"/daemon/measure/hash_algo.cpp
         "$src"/daemon/measure/hasher.cpp "$src"/daemon/common/atomic_file.cpp
         "$src"/tests/fuzz/model_fuzz.cpp)

if [[ ! -x $bin ]] || [[ -n $(find "$src/daemon/model" "$src/daemon/appraise" "$src/daemon/measure" \
    "$src/daemon/common" "$src/tests/fuzz/model_fuzz.cpp" -newer "$bin" -print -quit) ]]; then
  echo "fuzz: building $bin"
  "$cxx" -std=c++20 -O1 -g -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$src/daemon" -I"$src/include" "${sources[@]}" -lcrypto -o "$bin.tmp"
  mv "$bin.tmp" "$bin"
fi

# TEST-ONLY key and seeds (regenerated when missing).
k="$out/keys"
s="$out/seed"
if [[ ! -s $k/rsa.der ]]; then
  cat > "$k/x509.cnf" <<'CNF'
[ req ]
distinguished_name = dn
prompt = no
x509_extensions = v3
[ dn ]
CN = nsima model fuzz (TEST ONLY)
[ v3 ]
basicConstraints=critical,CA:FALSE
keyUsage=digitalSignature
subjectKeyIdentifier=hash
CNF
  openssl req -new -nodes -x509 -batch -days 3650 -config "$k/x509.cnf" -newkey rsa:2048 \
    -keyout "$k/rsa.key" -out "$k/rsa.pem" 2>/dev/null
  openssl x509 -in "$k/rsa.pem" -outform DER -out "$k/rsa.der"
  z=0000000000000000000000000000000000000000000000000000000000000000
  {
    printf 'nsima-model 1\ndigest sha256\nbase %s\naggregate %s\n' "$z" "$z"
    printf 'point %s file_open /etc/passwd\n' "$(printf a | openssl dgst -sha256 -r | cut -c1-64)"
    printf 'point %s bprm_committed_creds exec /bin/busybox\n' \
      "$(printf b | openssl dgst -sha256 -r | cut -c1-64)"
    printf 'point %s socket_connect\n' "$(printf c | openssl dgst -sha256 -r | cut -c1-64)"
    printf 'end 3\n'
  } > "$s/unsigned.model"
  printf 'nsima-model 1\ndigest sha256\nbase %s\naggregate %s\nend 0\n' "$z" "$z" > "$s/empty.model"
  for f in unsigned empty; do
    openssl dgst -sha256 -sign "$k/rsa.key" -out "$k/$f.sig" "$s/$f.model"
    { cat "$s/$f.model"; printf 'sig sha256 %s\n' "$(od -An -v -tx1 "$k/$f.sig" | tr -d " \n")"; } > "$s/$f-signed.model"
  done
fi

echo "fuzz: running for ${secs}s"
NSIMA_MODEL_FUZZ_CERT="$k/rsa.der" "$bin" -max_total_time="$secs" -timeout=10 \
  -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 -artifact_prefix="$out/" \
  "$out/corpus" "$s"
