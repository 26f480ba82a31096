#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The demo workload (see tests/vm/demo): nsimad with a default policy, one namespace for a
# "container" cgroup, a few execs and reads in it, then what nsima saw.
set -eu
DEMO=${TMPDIR:-/tmp}/nsima-demo
CG=/sys/fs/cgroup/nsima-demo
mkdir -p "$DEMO" "$CG"
[ -d /data ] && DEMO=/data/nsima-demo && mkdir -p "$DEMO"
echo "nsima demo: data in $DEMO, container cgroup $CG"

nsimad --log-level info >"$DEMO/nsimad.log" 2>&1 &
NSIMAD=$!
i=0
while [ ! -S /run/nsima/nsimad.sock ]; do
	i=$((i + 1))
	if [ $i -gt 300 ] || ! kill -0 $NSIMAD 2>/dev/null; then
		cat "$DEMO/nsimad.log"
		exit 1
	fi
	sleep 0.1
done

nsimactl watch --cgroup "$CG" >"$DEMO/events.jsonl" 2>/dev/null &
WATCH=$!
sleep 0.5

echo "--- workload (in $CG): exec, read, exec-mmap, a denied file"
printf 'echo hello from a container\n' >"$DEMO/app.sh"
echo "secret" >"$DEMO/secret.txt"
echo "config" >"$DEMO/config.txt"
nsimactl deny --cgroup "$CG" "$DEMO/secret.txt"
sh -c "echo \$\$ > $CG/cgroup.procs; sh $DEMO/app.sh; cat $DEMO/config.txt; cat $DEMO/config.txt; cat $DEMO/secret.txt || echo '(secret.txt: denied, as nsimactl deny asked)'"
sleep 1

echo "--- events nsima reported for the container (one line per first access of each kind):"
sed -n 's/.*"comm":"\([^"]*\)".*"hook":"\([^"]*\)".*"path":"\([^"]*\)".*/  \2  \1  \3/p' "$DEMO/events.jsonl"
echo "--- nsimactl status:"
nsimactl status
kill $WATCH 2>/dev/null || true
kill -TERM $NSIMAD
wait $NSIMAD || true
echo "--- nsimad log:"
cat "$DEMO/nsimad.log"
