#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# A flood of opens larger than the ring buffer is counted as drops, per hook and per namespace,
# never lost silently: emitted + dropped equals the number of accesses exactly, every emitted
# event reaches the daemon, and the namespace's measurement list records the loss as violation
# entries (zero digest, as kernel IMA's violations) that add up to the drops.
. /usr/share/nsima-test/nsima.sh
set -eu

N=3000
D=/data/flood
mkdir -p "$D" /sys/fs/cgroup/flood
i=0
while [ $i -lt $N ]; do
	: >"$D/f$i"
	i=$((i + 1))
done
cp "$(command -v open_flood)" /tmp/open_flood

# 16 KiB ring buffer (about 55 events) and a consumer that sleeps 300 ms after each poll.
nsima_start --ringbuf-size 16384 --consumer-delay-ms 300
echo "measure func=FILE_CHECK mask=^MAY_READ" >/tmp/reads.policy
ns=$(nsimactl ns create --cgroup /sys/fs/cgroup/flood --policy /tmp/reads.policy)
emitted0=$(nsima_hook_stat file_open emitted)
dropped0=$(nsima_hook_stat file_open dropped)

failed=$(cd "$D" && /tmp/open_flood /sys/fs/cgroup/flood $(i=0; while [ $i -lt $N ]; do echo f$i; i=$((i + 1)); done))
nsima_check_eq "$failed" 0 "failed opens in the flood"

sleep 2
emitted=$(($(nsima_hook_stat file_open emitted) - emitted0))
dropped=$(($(nsima_hook_stat file_open dropped) - dropped0))
echo "flood of $N opens: emitted $emitted, dropped $dropped"
[ "$dropped" -gt 0 ] || nsima_fail "a flood of $N opens into a 16 KiB ring buffer dropped nothing"
nsima_check_eq $((emitted + dropped)) $N "emitted + dropped file_open events"

# the namespace's lost-event counter (what becomes violation entries) saw every drop
status=$(nsima_status)
ns_dropped=$(printf '%s' "$status" | sed -n "s/.*\"ns_drops\":{[^}]*\"$ns\":\([0-9]*\).*/\1/p")
nsima_check_eq "$ns_dropped" "$dropped" "lost events counted for namespace $ns"

# every emitted event is decoded and processed (the consumer drains the ring buffer)
i=0
while :; do
	processed=$(nsima_status | sed -n 's/.*"pipeline":{[^}]*"processed":\([0-9]*\).*/\1/p')
	total=$(nsima_stat emitted)
	[ "$processed" = "$total" ] && break
	i=$((i + 1))
	[ $i -lt 100 ] || nsima_fail "pipeline processed $processed of $total emitted events"
	sleep 0.2
done
errors=$(nsima_status | sed -n 's/.*"consumer":{[^}]*"errors":\([0-9]*\).*/\1/p')
nsima_check_eq "$errors" 0 "undecodable records"

# the loss is in the list: violation entries whose counts add up to the drops
sleep 1
nsimactl log --ns "$ns" >/tmp/flood.list
grep " nsima:lost-events:" /tmp/flood.list | head -n 3
lost=$(sed -n 's/.* sha256:0\{64\} nsima:lost-events:\([0-9]*\)$/\1/p' /tmp/flood.list | awk '{ s += $1 } END { print s + 0 }')
nsima_check_eq "$lost" "$dropped" "events lost according to the list's violation entries"
measured=$(grep -c " $D/f" /tmp/flood.list || true)
nsima_check_eq "$measured" "$emitted" "files measured (one per delivered event)"
nsima_stop
echo "capture_drops_test: OK"
