#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Attestation never sees a partial state: with a consumer that reads the ring buffer late
# (--consumer-delay-ms), `nsimactl log` and `nsimactl pcr` issued right after a workload cover
# every access that completed before them, as kernel IMA's list would.
# vm-run-args: --tpm
. /usr/share/nsima-test/nsima.sh
set -eu
set -o pipefail

N=40
D=/data/barrier
mkdir -p $D /sys/fs/cgroup/w
i=0
while [ $i -lt $N ]; do
	echo "file $i" >$D/f$i
	i=$((i + 1))
done
cat >/tmp/p.policy <<'POL'
measure func=FILE_CHECK mask=^MAY_READ fsmagic=0xef53
POL

nsima_start --policy /tmp/p.policy --consumer-delay-ms 700
for round in 1 2 3; do
	cg_exec /sys/fs/cgroup/w /bin/sh -c "i=0; while [ \$i -lt $N ]; do cat $D/f\$i >/dev/null; i=\$((i + 1)); done; echo round$round >$D/r$round; cat $D/r$round >/dev/null"
	# no sleep: the request races the consumer
	nsimactl log --ns host >/tmp/log.$round
	n=$(grep -c " $D/" /tmp/log.$round)
	nsima_check_eq "$n" $((N + round)) "entries in the list right after round $round"
	grep -q " $D/r$round\$" /tmp/log.$round || nsima_fail "the last file read in round $round is missing"
	nsimactl pcr --ns host >/tmp/pcr.$round
	grep -q "list replays to" /tmp/pcr.$round && nsima_fail "PCR and list differ right after round $round: $(cat /tmp/pcr.$round)"
done
nsima_stop
echo "measure_barrier_test: OK"
