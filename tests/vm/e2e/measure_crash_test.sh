#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# SIGKILL nsimad three times while two workloads run, restarting it each time, and never run the
# workloads again: every file read (once) by a workload is in each list that measures it exactly
# once (nothing lost across the kills, nothing doubled), and the lists replay to their PCRs
# (host TPM PCR 23 with evmctl against the TPM driver's values; a vTPM's PCR 10 with nsimactl
# pcr). Files read while nsimad is dead must be measured too: the capture has to outlive nsimad.
# vm-run-args: --tpm --add /usr/bin/evmctl --add /usr/bin/swtpm --add /usr/bin/swtpm_ioctl
. /usr/share/nsima-test/nsima.sh
set -eu
set -o pipefail

N=400
D=/data/crash
mkdir -p $D /sys/fs/cgroup/vt
i=0
while [ $i -lt $N ]; do
	echo "host content $i" >$D/h$i
	echo "vt content $i" >$D/v$i
	i=$((i + 1))
done
cat >/tmp/p.policy <<'POL'
measure func=FILE_CHECK mask=^MAY_READ uid=0 fsmagic=0xef53
POL

# flood NAME CGROUP PREFIX: reads $D/PREFIX0 .. $D/PREFIX<N-1> once each, in order, from CGROUP
# (paced, so that it runs across every kill and restart below); /tmp/prog.NAME is its progress.
flood() {
	cg_exec "$2" /bin/sh -c "i=0; while [ \$i -lt $N ]; do cat $D/$3\$i >/dev/null || exit 1; \
		echo \$i >/tmp/prog.$1; i=\$((i + 1)); usleep 20000; done"
}
progress() { cat /tmp/prog.host /tmp/prog.vt 2>/dev/null | tr '\n' ' '; }
# entries NS: the entry count nsimad reports for a namespace's list.
entries() {
	nsima_json_field "$(nsimactl ns list --json | grep "\"id\":\"$1\"")" entries
}

nsima_start --policy /tmp/p.policy
vt=$(nsimactl ns create --cgroup /sys/fs/cgroup/vt --policy /tmp/p.policy --vtpm)
flood host /sys/fs/cgroup h &
FH=$!
flood vt /sys/fs/cgroup/vt v &
FV=$!
for round in 1 2 3; do
	sleep "0.$((2 + round * 2))"
	for f in $FH $FV; do
		kill -0 $f 2>/dev/null ||
			nsima_fail "a workload ended before kill $round (progress $(progress)): it must run across all kills"
	done
	kill -9 "$NSIMAD_PID"
	rc=0
	wait "$NSIMAD_PID" || rc=$?
	nsima_check_eq "$rc" 137 "exit status of nsimad after SIGKILL $round"
	NSIMAD_PID=
	echo "round $round: nsimad killed at workload progress $(progress)"
	rm -f /run/nsima/nsimad.sock
	nsima_start --policy /tmp/p.policy
	echo "round $round: nsimad ready again at workload progress $(progress)"
	if grep -q "stops measuring" "$NSIMAD_LOG"; then
		nsima_fail "a list disagreed with its PCR after SIGKILL $round"
	fi
done
for f in $FH $FV; do
	rc=0
	wait $f || rc=$?
	nsima_check_eq "$rc" 0 "exit status of a workload"
done
echo "workloads done: $(progress)"

# Let the last nsimad finish what it has (lists stop growing for 3 s; at most 60 s).
last= same=0 i=0
while [ $same -lt 30 ]; do
	now="$(entries host) $(entries "$vt")"
	[ "$now" = "$last" ] && same=$((same + 1)) || same=0
	last=$now
	i=$((i + 1))
	[ $i -lt 600 ] || nsima_fail "the lists kept growing for 60 s after the workloads ended"
	sleep 0.1
done
echo "entries (host vt): $last"

# ---- integrity: each list replays to its PCR, one boot_aggregate each
nsimactl pcr --ns host >/tmp/pcr.host
nsimactl pcr --ns "$vt" >/tmp/pcr.vt
cat /tmp/pcr.host /tmp/pcr.vt
if grep -q "list replays to" /tmp/pcr.host /tmp/pcr.vt; then nsima_fail "a PCR differs from its list"; fi
for ns in host $vt; do
	nsimactl log --ns $ns >/tmp/$ns.ascii
	nsima_check_eq "$(awk '$5 == "boot_aggregate"' /tmp/$ns.ascii | wc -l)" 1 "boot_aggregate entries of list $ns"
done
nsimactl log --ns host --format binary >/tmp/host.bin
nsima_pcr_file sha1 /tmp/pcr-sha1
nsima_pcr_file sha256 /tmp/pcr-sha256
nsima_evmctl_check /tmp/host.bin /tmp/pcr-sha1 /tmp/pcr-sha256 "$(wc -l </tmp/host.ascii)"

# ---- completeness: every file read by a workload, exactly once in each list that measures it
# (the host's policy judges the child namespace's reads too; the child's list has only its own)
# count LIST PREFIX: "<missing> <doubled> <first missing names>" for $D/PREFIX0..N-1 in LIST.
count() {
	awk -v d="$D/$2" -v n=$N '
		index($5, d) == 1 && substr($5, length(d) + 1) ~ /^[0-9]+$/ { c[$5]++ }
		END {
			for (i = 0; i < n; i++) {
				f = d i
				if (!(f in c)) { miss++; if (miss <= 5) names = names " " f }
				else if (c[f] > 1) dup++
			}
			printf "%d %d%s\n", miss, dup, names
		}' "$1"
}
bad=
for check in "host h" "host v" "$vt v"; do
	set -- $check
	r=$(count /tmp/$1.ascii $2)
	echo "list $1, files $D/$2*: missing, doubled, first missing: $r"
	[ "${r%% *}" = 0 ] || bad="$bad; list $1 lacks ${r%% *} of the $N files $D/$2* read by the workload"
	r=${r#* }
	[ "${r%% *}" = 0 ] || bad="$bad; list $1 has ${r%% *} files $D/$2* more than once"
done
others=$(awk -v d="$D/h" 'index($5, d) == 1' /tmp/$vt.ascii | wc -l)
[ "$others" = 0 ] || bad="$bad; the vTPM namespace's list has $others files of the host's workload"
[ -z "$bad" ] || nsima_fail "${bad#; }"
nsima_stop
echo "measure_crash_test: OK"
