#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Load through the real hooks, at a CI scale (tests/bench/load_pipeline.cpp runs the full 64
# namespaces / 1M events on the host): 8 namespaces (2 with a vTPM) read their files at once,
# three passes, while the files are rewritten, into a 16 KiB ring buffer drained by a slowed
# consumer. Afterwards: emitted + dropped + quiet (a version judged before, unchanged) equals
# the opens exactly; each namespace's dropped
# events are nsima:lost-events violations in that namespace's list; every list replays to its
# PCR (vTPM or host TPM); the workload never waited on nsimad (what did not fit was dropped);
# nsimad's RSS per namespace, per list entry and per measured file.
# vm-run-args: --tpm --add /usr/bin/swtpm --add /usr/bin/swtpm_ioctl
. /usr/share/nsima-test/nsima.sh
set -eu
set -o pipefail

NS=8 VTPMS=2 FILES=150 PASSES=3
echo "measure func=FILE_CHECK mask=^MAY_READ" >/tmp/load.policy
cp "$(command -v open_flood)" /tmp/open_flood
i=0
while [ $i -lt $NS ]; do
	mkdir -p /sys/fs/cgroup/load$i /data/l$i
	j=0
	while [ $j -lt $FILES ]; do
		echo "ns $i file $j" >/data/l$i/f$j
		j=$((j + 1))
	done
	i=$((i + 1))
done

rss() { sed -n 's/^VmRSS:[^0-9]*\([0-9]*\).*/\1/p' /proc/"$NSIMAD_PID"/status; }

nsima_start --ringbuf-size 16384 --consumer-delay-ms 100 --host-tcti device:/dev/tpmrm0
rss0=$(rss)
ids=
i=0
while [ $i -lt $NS ]; do
	if [ $i -lt $VTPMS ]; then vt=--vtpm; else vt=; fi
	id=$(nsimactl ns create --cgroup /sys/fs/cgroup/load$i --policy /tmp/load.policy $vt)
	ids="$ids $id"
	i=$((i + 1))
done
rss1=$(rss)
emitted0=$(nsima_hook_stat file_open emitted)
dropped0=$(nsima_hook_stat file_open dropped)
quiet0=$(nsima_hook_stat file_open quiet)

# The files change while nsimad reads them.
(
	k=0
	while :; do
		i=$((k % NS)) j=$((k % FILES))
		echo "ns $i file $j version $k" >/data/l$i/f$j
		k=$((k + 1))
	done
) &
REWRITER=$!
t0=$(date +%s)
p=0
while [ $p -lt $PASSES ]; do
	i=0 pids=
	while [ $i -lt $NS ]; do
		(cd /data/l$i && /tmp/open_flood /sys/fs/cgroup/load$i $(j=0; while [ $j -lt $FILES ]; do echo f$j; j=$((j + 1)); done) >/tmp/flood.$i) &
		pids="$pids $!"
		i=$((i + 1))
	done
	for f in $pids; do wait "$f"; done
	p=$((p + 1))
done
t1=$(date +%s)
kill $REWRITER
wait $REWRITER 2>/dev/null || true
processed_at_end=$(nsima_status | sed -n 's/.*"pipeline":{[^}]*"processed":\([0-9]*\).*/\1/p')
opens=$((NS * FILES * PASSES))
for i in $(seq 0 $((NS - 1))); do nsima_check_eq "$(cat /tmp/flood.$i)" 0 "failed opens of namespace $i"; done

emitted=$(($(nsima_hook_stat file_open emitted) - emitted0))
dropped=$(($(nsima_hook_stat file_open dropped) - dropped0))
quiet=$(($(nsima_hook_stat file_open quiet) - quiet0))
echo "load: $opens opens in $((t1 - t0)) s: emitted $emitted, dropped $dropped, quiet $quiet (judged before, unchanged); nsimad had processed $processed_at_end when the workload ended"
nsima_check_eq $((emitted + dropped + quiet)) $opens "emitted + dropped + quiet file_open events"
# The workload never waited on nsimad: what did not fit was dropped instead (a hook that waited
# for the consumer, sleeping 100 ms per wake-up, would have dropped nothing).
[ "$dropped" -gt 0 ] || nsima_fail "the 16 KiB ring buffer was not too small for the burst"

# Everything consumed and recorded, then the lists and PCRs (log and pcr pass the barrier).
i=0
while :; do
	processed=$(nsima_status | sed -n 's/.*"pipeline":{[^}]*"processed":\([0-9]*\).*/\1/p')
	[ "$processed" -ge "$(nsima_stat emitted)" ] && break
	i=$((i + 1))
	[ $i -lt 600 ] || nsima_fail "pipeline processed $processed of $(nsima_stat emitted) emitted events"
	sleep 0.2
done
sleep 1.5 # the pipeline's tick turns the drop counters into violations
status=$(nsima_status)
entries=0 files=0 lost_all=0
for id in $ids; do
	nsimactl log --ns "$id" >/tmp/list.$id
	lost=$(sed -n 's/.* sha256:0\{64\} nsima:lost-events:\([0-9]*\)$/\1/p' /tmp/list.$id | awk '{ s += $1 } END { print s + 0 }')
	want=$(printf '%s' "$status" | sed -n "s/.*\"ns_drops\":{[^}]*\"$id\":\([0-9]*\).*/\1/p")
	nsima_check_eq "$lost" "${want:-0}" "lost-events in namespace $id's list vs its drops"
	lost_all=$((lost_all + lost))
	pcr=$(nsimactl pcr --ns "$id")
	nsima_check_contains "$pcr" "matches the list" "namespace $id's PCR"
	entries=$((entries + $(wc -l </tmp/list.$id)))
	files=$((files + $(grep -c " /data/l" /tmp/list.$id || true)))
done
nsima_check_eq "$lost_all" "$dropped" "lost-events over all lists"
nsimactl pcr --ns host | grep -q "matches the list" || nsima_fail "host PCR 23 differs from the host list"
host_entries=$(nsimactl log --ns host | wc -l)
rss2=$(rss)
echo "rss: ${rss0} kB, ${rss1} kB after $NS namespaces, ${rss2} kB after the load"
echo "per namespace: $(((rss1 - rss0) * 1024 / NS)) B; per list entry ($((entries + host_entries)) in all lists): $(((rss2 - rss1) * 1024 / (entries + host_entries))) B; per measured file version ($files): $(((rss2 - rss1) * 1024 / files)) B"
nsima_stop
echo "load_test: OK"
