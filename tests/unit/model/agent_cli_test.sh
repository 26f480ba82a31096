#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ctest model.agent_cli: `nsima-model-agent state --offline FILE` prints the state and
# measurement that python hashlib computes from the same file (docs/model-encoding.md), and
# `serve` refuses a tampered model naming FILE:LINE.
# Usage: agent_cli_test.sh <nsima-model-agent> <work dir>
set -euo pipefail
agent=${1:?nsima-model-agent}
dir=${2:?work dir}
mkdir -p "$dir"
m="$dir/offline.model"
python3 - "$m" <<'PY'
import hashlib, sys
H = lambda b: hashlib.sha256(b).digest()
base, agg = H(b"base"), H(b"aggregate")
pts = [H(b"p%d" % i) for i in (3, 1, 2)]
with open(sys.argv[1], "w") as f:
    f.write("nsima-model 1\ndigest sha256\nbase %s\naggregate %s\n" % (base.hex(), agg.hex()))
    for p in pts:
        f.write("point %s file_open\n" % p.hex())
    f.write("end %d\n" % len(pts))
ext = lambda m, c: H(m + H(base + c))
m = ext(bytes(32), agg)
for p in pts:
    m = ext(m, p)
s = H(bytes(32) + H(base + agg))
for p in sorted(pts):
    s = ext(s, p)
with open(sys.argv[1] + ".want", "w") as f:
    f.write("state %s\nmeasurement %s\npoints 3\n" % (s.hex(), m.hex()))
PY
"$agent" state --offline "$m" > "$dir/got"
diff -u "$m.want" "$dir/got"
# another aggregate gives another state
"$agent" state --offline "$m" --aggregate "$(printf '%064d' 0)" > "$dir/got2"
if diff -q "$m.want" "$dir/got2" >/dev/null; then
  echo "--aggregate was ignored" >&2
  exit 1
fi
# a tampered model is refused with its place
sed 's/^end 3$/end 4/' "$m" > "$dir/bad.model"
if "$agent" state --offline "$dir/bad.model" 2> "$dir/err"; then
  echo "a model with a wrong count was accepted" >&2
  exit 1
fi
grep -q "bad.model:8: end says 4 points, the file has 3" "$dir/err" || { cat "$dir/err" >&2; exit 1; }
echo "ok"
