#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# SIGKILL nsimad during a flood of measurements, three times at different moments, restart it:
# the lists and their PCRs (host TPM PCR 23, a vTPM's PCR 10) agree, and once the workload ran
# again every file is in each list exactly once: nothing lost, nothing doubled.
# vm-run-args: --tpm --add /usr/bin/evmctl --add /usr/bin/swtpm --add /usr/bin/swtpm_ioctl
. /usr/share/nsima-test/nsima.sh
set -eu

N=300
D=/data/crash
mkdir -p $D /sys/fs/cgroup/vt
i=0
while [ $i -lt $N ]; do
	echo "content $i" >$D/f$i
	i=$((i + 1))
done
cat >/tmp/p.policy <<'POL'
measure func=FILE_CHECK mask=^MAY_READ uid=0 fsmagic=0xef53
POL
flood() { # CGROUP: read every file once, from that cgroup
	cg_exec "$1" /bin/sh -c "i=0; while [ \$i -lt $N ]; do cat $D/f\$i >/dev/null; i=\$((i + 1)); done"
}

nsima_start --policy /tmp/p.policy
vt=$(nsimactl ns create --cgroup /sys/fs/cgroup/vt --policy /tmp/p.policy --vtpm)
for round in 1 2 3; do
	flood /sys/fs/cgroup/vt &
	F1=$!
	flood /sys/fs/cgroup &
	F2=$!
	sleep "0.$((round * 3))"
	kill -9 "$NSIMAD_PID"
	wait "$NSIMAD_PID" 2>/dev/null || true
	NSIMAD_PID=
	wait $F1 $F2
	echo "round $round: killed; list sizes: host $(($(wc -c </var/lib/nsima/ns/host/binary_runtime_measurements))) bytes"
	rm -f /run/nsima/nsimad.sock
	nsima_start --policy /tmp/p.policy
	grep -E "unextended|replay|disagree|stops measuring" "$NSIMAD_LOG" || true
	grep -q "stops measuring" "$NSIMAD_LOG" && nsima_fail "a list disagreed with its PCR after SIGKILL"
done
# the workload once more: whatever the kills interrupted is measured now
flood /sys/fs/cgroup/vt
flood /sys/fs/cgroup
nsimactl pcr --ns host | tee /tmp/pcr.host
nsimactl pcr --ns "$vt" | tee /tmp/pcr.vt
grep -q "list replays to" /tmp/pcr.host /tmp/pcr.vt && nsima_fail "a PCR differs from its list"

for ns in host $vt; do
	nsimactl log --ns $ns >/tmp/$ns.ascii
	nsimactl log --ns $ns --format binary >/tmp/$ns.bin
	n=$(grep -c " $D/f" /tmp/$ns.ascii)
	u=$(grep " $D/f" /tmp/$ns.ascii | awk '{ print $5 }' | sort -u | wc -l)
	nsima_check_eq "$n" $N "entries of the workload files in list $ns"
	nsima_check_eq "$u" $N "distinct workload files in list $ns"
	grep -c "boot_aggregate" /tmp/$ns.ascii | grep -qx 1 || nsima_fail "list $ns has not exactly one boot_aggregate"
done
nsima_pcr_file sha1 /tmp/pcr-sha1
nsima_pcr_file sha256 /tmp/pcr-sha256
nsima_evmctl_check /tmp/host.bin /tmp/pcr-sha1 /tmp/pcr-sha256 "$(wc -l </tmp/host.ascii)"
nsima_stop
echo "measure_crash_test: OK"
