#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# A stalled file never stops measurement: a container reads a FUSE file whose reads never
# answer; nsimad records an nsima:unreadable:timeout violation for it in that container's list
# after --hash-timeout-ms, while another container's files are measured at once meanwhile (its
# `nsimactl log` right after its workload holds them), and nsimad keeps serving.
# vm-run-args: --module fuse --add @BUILD@/tests/unit/access/access_fuse_stall
. /usr/share/nsima-test/nsima.sh
set -eu
set -o pipefail

A=/sys/fs/cgroup/stalled B=/sys/fs/cgroup/healthy
mkdir -p $A $B /tmp/fuse /data/b
SERVER=$(find / /tmp /run -xdev -name access_fuse_stall -type f 2>/dev/null | head -n 1)
[ -x "$SERVER" ] || nsima_fail "access_fuse_stall not in the guest (vm-run-args --add)"
"$SERVER" /tmp/fuse >/tmp/fuse.out 2>&1 &
FUSE=$!
nsima_wait_for /tmp/fuse.out ready 10
cat >/tmp/p.policy <<'POL'
measure func=FILE_CHECK mask=^MAY_READ
POL
i=0
while [ $i -lt 20 ]; do
	echo "healthy $i" >/data/b/f$i
	i=$((i + 1))
done

nsima_start --hash-timeout-ms 3000
a=$(nsimactl ns create --cgroup $A --policy /tmp/p.policy)
b=$(nsimactl ns create --cgroup $B --policy /tmp/p.policy)
# the stalled reader: its own read never returns either
cg_exec $A /bin/cat /tmp/fuse/stall >/dev/null 2>&1 &
READER=$!
sleep 0.5
t0=$(date +%s)
cg_exec $B /bin/sh -c 'i=0; while [ $i -lt 20 ]; do cat /data/b/f$i >/dev/null; i=$((i + 1)); done'
nsimactl log --ns "$b" >/tmp/b.list
t1=$(date +%s)
n=$(grep -c " /data/b/f" /tmp/b.list)
nsima_check_eq "$n" 20 "the healthy namespace's files, right after its workload"
[ $((t1 - t0)) -lt 3 ] || nsima_fail "the healthy namespace waited $((t1 - t0)) s behind the stalled file"

# the stalled namespace: its log waits for the read's deadline, then shows why
nsimactl log --ns "$a" >/tmp/a.list
grep -q " nsima:unreadable:timeout:/tmp/fuse/stall\$" /tmp/a.list ||
	nsima_fail "no timeout violation for the stalled file: $(cat /tmp/a.list)"
nsima_status | sed 's/.*"access"://' | grep -q '"timeouts":[1-9]' ||
	nsima_fail "status counts no access timeout: $(nsimactl status)"
# nsimad still serves, and measures a new file in the stalled namespace
echo late >/data/b/late
cg_exec $A /bin/cat /data/b/late >/dev/null
nsimactl log --ns "$a" | grep -q " /data/b/late\$" || nsima_fail "the stalled namespace measures nothing any more"

kill $FUSE
wait $READER 2>/dev/null || true
nsima_stop
echo "measure_stall_test: OK"
