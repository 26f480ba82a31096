#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The demo workload (see tests/vm/demo): nsimad with the kernel's tcb policy for the host, a
# "container" cgroup with its own namespace (builtin container-default policy, its own vTPM),
# a few execs and reads in it, then what nsima saw, measured and extended.
set -eu
DEMO=/tmp/nsima-demo
[ -d /data ] && DEMO=/data/nsima-demo
CG=/sys/fs/cgroup/nsima-demo
mkdir -p "$DEMO" "$CG"
echo "nsima demo: workload files in $DEMO, container cgroup $CG"
TPM=none
[ -c /dev/tpmrm0 ] && TPM=device:/dev/tpmrm0

nsimad --log-level info --host-tcti "$TPM" --builtin tcb >"$DEMO.nsimad.log" 2>&1 &
NSIMAD=$!
i=0
while [ ! -S /run/nsima/nsimad.sock ]; do
	i=$((i + 1))
	if [ $i -gt 300 ] || ! kill -0 $NSIMAD 2>/dev/null; then
		cat "$DEMO.nsimad.log"
		exit 1
	fi
	sleep 0.1
done
VTPM=
command -v swtpm >/dev/null && VTPM=--vtpm
ns=$(nsimactl ns create --cgroup "$CG" --builtin container-default $VTPM)
nsimactl watch --cgroup "$CG" >"$DEMO.events.jsonl" 2>/dev/null &
WATCH=$!
sleep 0.5

echo "--- workload in the container: an app script, a library mapped executable, a denied file"
printf '#!/bin/sh\necho hello from the container\n' >"$DEMO/app.sh"
chmod +x "$DEMO/app.sh"
echo "config" >"$DEMO/config.txt"
echo "secret" >"$DEMO/secret.txt"
nsimactl deny --cgroup "$CG" --root / "$DEMO/secret.txt"
sh -c "echo \$\$ > $CG/cgroup.procs; $DEMO/app.sh; cat $DEMO/config.txt;
       cat $DEMO/secret.txt 2>/dev/null || echo '(secret.txt: permission denied, as nsimactl deny asked)'"
sleep 1

echo "--- namespaces:"
nsimactl ns list
echo "--- what the hooks reported for the container (first access of each kind per file):"
sed -n 's/.*"comm":"\([^"]*\)".*"hook":"\([^"]*\)".*"path":"\([^"]*\)".*/  \2  \1  \3/p' "$DEMO.events.jsonl"
echo "--- the container's measurement list (ima-ng, as /sys/kernel/security/ima/ascii_runtime_measurements):"
nsimactl log --ns "$ns"
echo "--- its PCR, read from its TPM, against the list's replay:"
nsimactl pcr --ns "$ns" || true
echo "--- the host list (tcb policy; the container's files too, as the host judges every namespace), last 5 entries:"
nsimactl log --ns host | tail -n 5
kill $WATCH 2>/dev/null || true
kill -TERM $NSIMAD
wait $NSIMAD || true
echo "--- nsimad log:"
cat "$DEMO.nsimad.log"
