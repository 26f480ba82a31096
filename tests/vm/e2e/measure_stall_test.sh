#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# A stalled file never stops measurement: a container reads a FUSE file whose reads never
# answer; nsimad records an nsima:unreadable:timeout violation for it in that container's list
# after --hash-timeout-ms, while another container's files are measured at once meanwhile (its
# `nsimactl log` right after its workload holds them), and nsimad keeps serving. The same for a
# 10 GiB sparse file (with nsimad's RSS bounded); a FIFO is no event at all.
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

# A 10 GiB sparse file reaches the hash pool (a regular file: the hook reports its open): nsimad
# gives up on it at the read deadline (nsima:unreadable:timeout in its namespace's list), its
# memory stays bounded meanwhile, and the other namespace is served while it is being read.
# A FIFO never reaches it: the hooks report regular files only, as kernel IMA measures them
# (process_measurement: !S_ISREG), so its open is no event and no entry.
truncate -s 10G /data/big
cp "$(command -v open_flood)" /tmp/open_flood
rss() { sed -n 's/^VmRSS:[^0-9]*\([0-9]*\).*/\1/p' /proc/"$NSIMAD_PID"/status; }
rss0=$(rss)
nsima_check_eq "$(/tmp/open_flood $A /data/big)" 0 "failed opens of the sparse file"
sleep 1
echo "healthy while hashing" >/data/b/during
t0=$(date +%s)
cg_exec $B /bin/cat /data/b/during >/dev/null
nsimactl log --ns "$b" | grep -q " /data/b/during\$" || nsima_fail "the healthy namespace was not served while the sparse file was hashed"
t1=$(date +%s)
rss_during=$(rss)
[ $((t1 - t0)) -lt 3 ] || nsima_fail "the healthy namespace waited $((t1 - t0)) s behind the sparse file"
nsimactl log --ns "$a" >/tmp/a.list
grep -q " nsima:unreadable:timeout:/data/big\$" /tmp/a.list ||
	nsima_fail "no timeout violation for the 10 GiB sparse file: $(tail -n 3 /tmp/a.list)"
rss1=$(rss)
echo "10 GiB sparse file: RSS ${rss0} kB before, ${rss_during} kB while it was read, ${rss1} kB after"
[ $((rss_during - rss0)) -lt 16384 ] && [ $((rss1 - rss0)) -lt 16384 ] ||
	nsima_fail "nsimad grew by more than 16 MiB reading a sparse file (${rss0} -> ${rss_during} -> ${rss1} kB)"
mkfifo /tmp/fifo
emitted0=$(nsima_hook_stat file_open emitted)
(echo through-the-fifo >/tmp/fifo) &
nsima_check_eq "$(/tmp/open_flood $A /tmp/fifo)" 0 "failed opens of the FIFO"
wait $! 2>/dev/null || true
nsima_check_eq "$(nsima_hook_stat file_open emitted)" "$emitted0" "file_open events of a FIFO"
nsimactl log --ns "$a" | grep -q "/tmp/fifo" && nsima_fail "the FIFO is in a list: $(nsimactl log --ns "$a" | grep /tmp/fifo)"

kill $FUSE
wait $READER 2>/dev/null || true
nsima_stop
echo "measure_stall_test: OK"
